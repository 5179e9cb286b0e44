"""PromptSpecManager: file layout, corrupt files, atomic locked updates across real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cosmos_workflow.config import RunOptions
from cosmos_workflow.engines import EngineConfig
from cosmos_workflow.engines.fake import FakeEngine
from cosmos_workflow.errors import ItemError, SpecError
from cosmos_workflow.executors import LocalExecutor
from cosmos_workflow.specs.prompt_spec import new_spec
from cosmos_workflow.specs.store import file_stem, load_spec
from cosmos_workflow.workflow import PromptSpecManager
from tests.videos import make_video

FAKE = RunOptions(engine=EngineConfig(engine="fake", model="fake"))

ROOT = Path(__file__).resolve().parents[2]
WHEN = datetime(2025, 7, 4, 12, 30, tzinfo=UTC)


def test_create_writes_dated_file_named_after_spec(tmp_path: Path) -> None:
    manager = PromptSpecManager(tmp_path / "prompts")
    stored = manager.create("my shot/1", "A city", input_video_path="c.mp4", timestamp=WHEN)
    assert stored.path == tmp_path / "prompts" / "2025-07-04" / f"my_shot_1_{stored.spec.id}.json"
    assert load_spec(stored.path) == stored.spec
    assert "is_upsampled" not in json.loads(stored.path.read_text())
    assert [s.spec for s in manager.list()] == [stored.spec]
    assert manager.find(stored.spec.id) == stored


def test_same_inputs_twice_is_refused_with_the_existing_file(tmp_path: Path) -> None:
    manager = PromptSpecManager(tmp_path)
    first = manager.create("a", "A city", input_video_path="c.mp4")
    with pytest.raises(SpecError, match=f"already exists: {first.path}"):
        manager.create("b", "A city", input_video_path="c.mp4")
    with pytest.raises(SpecError, match="invalid spec"):
        manager.create("", "A city")


def test_scan_lists_bad_files_and_skips_hidden_ones(tmp_path: Path) -> None:
    manager = PromptSpecManager(tmp_path)
    good = manager.create("good", "A city")
    (tmp_path / "torn.json").write_text('{"id": "ps_1", "name": "x", "pro')
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "wrong.json").write_text(json.dumps({"id": "ps_2", "name": "w"}))
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    (tmp_path / ".upsampling").mkdir()
    (tmp_path / ".upsampling" / "results.json").write_text("[]")
    scan = manager.scan()
    assert [s.path for s in scan.specs] == [good.path]
    problems = {p.path.name: p.message for p in scan.problems}
    assert set(problems) == {"torn.json", "list.json", "wrong.json", "binary.json"}
    assert "not valid JSON (line 1" in problems["torn.json"]
    assert "not a spec object" in problems["list.json"]
    assert "missing 'prompt'" in problems["wrong.json"]
    assert "fix or delete" in problems["wrong.json"]


def test_missing_folder_lists_nothing(tmp_path: Path) -> None:
    assert PromptSpecManager(tmp_path / "nowhere").scan().specs == []
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "nowhere.json")


def test_update_returning_none_leaves_the_file_alone(tmp_path: Path) -> None:
    stored = PromptSpecManager(tmp_path).create("a", "A city")
    before = stored.path.read_bytes()
    assert PromptSpecManager(tmp_path).update(stored.path, lambda spec: None) == stored.spec
    assert stored.path.read_bytes() == before


WRITER = """
import sys
from pathlib import Path
from cosmos_workflow.workflow import PromptSpecManager
path, tag, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
manager = PromptSpecManager(path.parent)
for i in range(count):
    manager.update(path, lambda s: s.model_copy(update={"negative_prompt": s.negative_prompt + f"{tag}{i};"}))
"""


@pytest.mark.slow
def test_concurrent_processes_lose_no_update(tmp_path: Path) -> None:
    stored = PromptSpecManager(tmp_path).create("shared", "A city")
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(stored.path), tag, "40"], cwd=ROOT)
        for tag in ("a", "b", "c")
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0]
    tokens = load_spec(stored.path).negative_prompt.rstrip(";").split(";")
    assert sorted(tokens) == sorted(f"{tag}{i}" for tag in "abc" for i in range(40))
    for tag in "abc":  # each process's own updates stay in its order
        mine = [t for t in tokens if t.startswith(tag)]
        assert mine == [f"{tag}{i}" for i in range(40)]
    assert not list(tmp_path.rglob("*.tmp"))


def test_upsample_prompt_keeps_the_original_and_saves(tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.mp4", 320, 180)
    manager = PromptSpecManager(tmp_path / "prompts")
    stored = manager.create("city", "A city at night", input_video_path=str(video))
    engine = FakeEngine(answers=["A sprawling neon city at night, seen from a rooftop."])
    options = RunOptions(engine=EngineConfig(engine="fake", model="tiny-random"))
    updated = manager.upsample_prompt(stored.spec, options, path=stored.path, executor=LocalExecutor(engine))
    assert updated.prompt == "A city at night"
    assert updated.upsampled_prompt == "A sprawling neon city at night, seen from a rooftop."
    assert updated.upsampling_params is not None and updated.upsampling_params.frames == 2
    assert load_spec(stored.path) == updated
    assert len(engine.received) == 1 and engine.received[0].prompt == "A city at night"


def test_upsample_prompt_failure_raises_and_keeps_the_file(tmp_path: Path) -> None:
    manager = PromptSpecManager(tmp_path)
    spec = new_spec("blank", " ")  # create() refuses it; a hand-edited file may still hold one
    path = manager.save(spec)
    before = path.read_bytes()
    with pytest.raises(ItemError, match="prompt is empty"):
        manager.upsample_prompt(spec, FAKE, path=path, executor=LocalExecutor(FakeEngine()))
    assert path.read_bytes() == before


def test_file_stem() -> None:
    assert file_stem("a b/c") == "a_b_c"
    assert file_stem("..") == "spec"
