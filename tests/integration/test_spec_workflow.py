"""upsample_spec_dir on real spec folders and real videos, with the scripted fake engine."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from cosmos_workflow.config import RunOptions
from cosmos_workflow.engines import EncodedRequest, EngineConfig, Generation, SamplingParams
from cosmos_workflow.engines.fake import FakeEngine
from cosmos_workflow.errors import InputFileError
from cosmos_workflow.executors import LocalExecutor
from cosmos_workflow.journal import read_records
from cosmos_workflow.specs.prompt_spec import Modality, UpsampleFrom, new_spec
from cosmos_workflow.specs.store import StoredSpec, load_spec
from cosmos_workflow.workflow import PromptSpecManager
from cosmos_workflow.workflow.spec_runs import upsample_spec_dir
from tests.videos import make_video

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = RunOptions(engine=EngineConfig(engine="fake", model="tiny-random"), batch_size=4)
#: each kind of video has its own width, so the frames that reached the model show which was used
WIDTHS = {"input": 320, "depth": 288, "seg": 256, "edge": 224}


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("videos")
    made = {kind: str(make_video(folder / f"{kind}.mp4", width, 144)) for kind, width in WIDTHS.items()}
    return {**made, "missing": str(folder / "missing.mp4")}


Layout = tuple[dict[Modality, str | None], UpsampleFrom, str, str]  # controls, override, video, expected


def layout(i: int, v: dict[str, str]) -> Layout:
    """Spec ``i``'s controls and the source whose frames the model must see."""
    if i % 10 == 9:
        return {}, "auto", v["missing"], "none"
    return [
        ({}, "auto", v["input"], "input"),
        ({"depth": v["depth"]}, "auto", v["input"], "depth"),
        ({"seg": v["seg"], "vis": None}, "auto", v["input"], "seg"),
        ({"vis": None}, "auto", v["input"], "input"),
        ({"edge": v["edge"]}, "auto", v["input"], "edge"),
        ({"vis": None, "depth": v["depth"]}, "depth", v["input"], "depth"),
    ][i % 6]


def make_folder(root: Path, videos: dict[str, str], count: int = 50) -> dict[str, str]:
    """``count`` specs (name -> expected source), plus a corrupt file."""
    manager = PromptSpecManager(root)
    expected = {}
    for i in range(count):
        controls, override, video, source = layout(i, videos)
        manager.create(
            f"shot{i:02d}",
            f"Shot {i}: a car drives through the city",
            input_video_path=video,
            control_inputs=controls,
            upsample_from=override,
        )
        expected[f"shot{i:02d}"] = source
    (root / "broken.json").write_text('{"id": "ps_x", "name": "broken", "prompt": "tor')
    return expected


def specs_by_name(root: Path) -> dict[str, StoredSpec]:
    return {s.spec.name: s for s in PromptSpecManager(root).scan().specs}


@pytest.mark.slow
def test_folder_of_fifty_mixed_specs(tmp_path: Path, videos: dict[str, str]) -> None:
    root = tmp_path / "prompts"
    expected = make_folder(root, videos)
    manager = PromptSpecManager(root)
    blank_spec = new_spec("blank", "   ", input_video_path=videos["input"])  # hand-made: create() refuses
    blank = StoredSpec(manager.save(blank_spec), blank_spec)
    done = manager.create("done", "Already done", input_video_path=videos["input"])
    manager.update(done.path, lambda s: s.model_copy(update={"upsampled_prompt": "kept as it is"}))
    untouched = {p: p.read_bytes() for p in (blank.path, done.path, root / "broken.json")}

    engine = FakeEngine()
    summary = upsample_spec_dir(root, OPTIONS, executor=LocalExecutor(engine))

    assert [len(summary.of(s)) for s in ("updated", "skipped", "failed", "invalid")] == [50, 1, 1, 1]
    assert summary.failed == 1
    assert len(engine.received) == 50 and max(len(b) for b in engine.batches) <= 4
    sent = {r.key: r for r in engine.received}
    specs = specs_by_name(root)
    for name, source in expected.items():
        spec = specs[name].spec
        params = spec.upsampling_params
        assert spec.prompt == f"Shot {int(name[4:])}: a car drives through the city"
        assert spec.upsampled_prompt is not None and spec.upsampled_prompt.startswith(
            "A detailed scene: Shot"
        )
        assert spec.upsampled_at is not None and params is not None
        request = sent[params.request_key]
        if source == "none":
            assert params.status == "text_only" and params.frames == 0 and request.frames == []
            assert params.video_note is not None and "not found" in params.video_note
        else:
            assert params.status == "ok" and params.frames == 2
            assert params.video_source == ("input" if source == "input" else f"control:{source}")
            assert [f.shape[1] for f in request.frames] == [WIDTHS[source]] * 2
            assert params.width == WIDTHS[source] and params.source_height == 144
        assert params.engine == "fake" and params.tool_version and params.max_resolution == 480
    assert {p: p.read_bytes() for p in untouched} == untouched
    text = summary.describe()
    assert "50 updated, 1 skipped (already upsampled), 1 failed, 1 invalid files" in text
    assert "failed   blank: prompt is empty" in text
    assert "invalid  " in text and "broken.json: is not valid JSON" in text
    assert text.count("(text only: ") == 5

    again = FakeEngine()
    rerun = upsample_spec_dir(root, OPTIONS, executor=LocalExecutor(again))
    assert again.received == [] and len(rerun.of("skipped")) == 51
    assert rerun.describe().startswith(f"specs in {root}: 0 updated, 51 skipped")
    assert rerun.failed == 1  # the blank prompt is tried (and fails) on every run until fixed

    forced = FakeEngine()
    redo = upsample_spec_dir(root, OPTIONS.model_copy(update={"force": True}), executor=LocalExecutor(forced))
    assert len(forced.received) == 51 and len(redo.of("updated")) == 51


def test_legacy_upsampled_spec_is_skipped_and_forced_from_its_parent_prompt(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(Path(__file__).resolve().parents[1] / "data" / "specs_v0", tmp_path / "specs")
    engine = FakeEngine()
    summary = upsample_spec_dir(tmp_path / "specs", OPTIONS, executor=LocalExecutor(engine))
    assert [o.name for o in summary.of("skipped")] == ["forest_upsampled"]
    assert [r.prompt for r in engine.received] == ["A futuristic city at night"]  # videos missing: text only
    forced = FakeEngine()
    upsample_spec_dir(
        tmp_path / "specs", OPTIONS.model_copy(update={"force": True}), executor=LocalExecutor(forced)
    )
    assert sorted(r.prompt for r in forced.received) == [
        "A futuristic city at night",
        "Serene forest landscape",
    ]


def test_failed_specs_keep_their_content_and_are_listed(tmp_path: Path, videos: dict[str, str]) -> None:
    manager = PromptSpecManager(tmp_path)
    paths = [manager.create(f"s{i}", f"Prompt {i}", input_video_path=videos["input"]).path for i in range(3)]
    before = [p.read_bytes() for p in paths]
    engine = FakeEngine(answers=[Generation.failed("CUDA error: device lost", prompt_tokens=1)] * 3)
    summary = upsample_spec_dir(tmp_path, OPTIONS, executor=LocalExecutor(engine))
    assert summary.failed == 3 and [p.read_bytes() for p in paths] == before
    assert summary.describe().count("CUDA error: device lost (file unchanged: ") == 3
    fixed = upsample_spec_dir(tmp_path, OPTIONS, executor=LocalExecutor(FakeEngine()))
    assert len(fixed.of("updated")) == 3  # failures are retried by the next run


class Interrupted(FakeEngine):
    """Answers ``calls`` batches, then the user presses Ctrl-C."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.calls = calls

    def generate(self, requests: Sequence[EncodedRequest], sampling: SamplingParams) -> list[Generation]:
        if len(self.batches) == self.calls:
            raise KeyboardInterrupt
        return super().generate(requests, sampling)


def test_interrupted_run_leaves_finished_specs_written_and_resumes_the_rest(
    tmp_path: Path, videos: dict[str, str]
) -> None:
    make_folder(tmp_path, videos, count=12)
    with pytest.raises(KeyboardInterrupt):
        upsample_spec_dir(tmp_path, OPTIONS, executor=LocalExecutor(Interrupted(calls=2)))
    journal = list(read_records(tmp_path / ".upsampling" / "results.json.journal.jsonl", clips_dir=tmp_path))
    assert len(journal) == 8
    # each spec was written as its batch was saved, before the Ctrl-C: the 8 done, the 4 not
    written = {s.spec.id: s.spec.upsampled_prompt for s in specs_by_name(tmp_path).values()}
    assert {r.name: r.upsampled_prompt for r in journal} == {n: p for n, p in written.items() if p}
    assert sum(p is None for p in written.values()) == 4

    engine = FakeEngine()
    summary = upsample_spec_dir(tmp_path, OPTIONS, executor=LocalExecutor(engine))
    assert len(engine.received) == 4 and not {r.key for r in engine.received} & {r.key for r in journal}
    assert (len(summary.of("updated")), len(summary.of("skipped"))) == (4, 8)
    assert all(s.spec.upsampled for s in specs_by_name(tmp_path).values())
    results = json.loads((tmp_path / ".upsampling" / "results.json").read_text())
    assert len(results) == 4 and all(r["status"] in ("ok", "text_only") for r in results)


def test_each_spec_is_written_when_its_batch_is_saved_not_at_the_end(
    tmp_path: Path, videos: dict[str, str]
) -> None:
    make_folder(tmp_path, videos, count=8)
    seen_written: list[int] = []

    class Watching(FakeEngine):
        """Before each batch, counts the spec files already holding a result."""

        def generate(self, requests: Sequence[EncodedRequest], sampling: SamplingParams) -> list[Generation]:
            seen_written.append(sum(s.spec.upsampled for s in specs_by_name(tmp_path).values()))
            return super().generate(requests, sampling)

    summary = upsample_spec_dir(tmp_path, OPTIONS, executor=LocalExecutor(Watching()))
    assert seen_written == [0, 4]
    assert len(summary.of("updated")) == 8 and summary.failed == 0


def test_a_spec_file_that_cannot_be_written_fails_alone(tmp_path: Path, videos: dict[str, str]) -> None:
    make_folder(tmp_path, videos, count=8)
    stuck = specs_by_name(tmp_path)["shot01"].path
    lock = stuck.with_name(f".{stuck.name}.lock")
    lock.unlink()
    lock.mkdir()  # a folder where its lock file goes: it cannot be opened, even by root
    summary = upsample_spec_dir(tmp_path, OPTIONS, executor=LocalExecutor(FakeEngine()))
    [failed] = summary.of("failed")
    assert failed.path == stuck and failed.reason.startswith(f"could not write the result: {stuck.parent}")
    assert len(summary.of("updated")) == 7
    assert not specs_by_name(tmp_path)["shot01"].spec.upsampled


def test_spec_edited_during_the_run_is_not_overwritten(tmp_path: Path, videos: dict[str, str]) -> None:
    manager = PromptSpecManager(tmp_path)
    edited = manager.create("edited", "A city", input_video_path=videos["input"])
    other = manager.create("other", "A town", input_video_path=videos["input"])

    class EditMeanwhile(LocalExecutor):
        def execute(self, *args: Any, **kwargs: Any) -> None:  # the folder was read; no result yet
            manager.update(edited.path, lambda s: s.model_copy(update={"prompt": "A city in the rain"}))
            super().execute(*args, **kwargs)

    summary = upsample_spec_dir(tmp_path, OPTIONS, executor=EditMeanwhile(FakeEngine()))
    assert [o.name for o in summary.of("failed")] == ["edited"]
    assert "edited during the run" in summary.describe()
    now = load_spec(edited.path)
    assert now.prompt == "A city in the rain" and now.upsampled_prompt is None
    assert load_spec(other.path).upsampled_prompt is not None


def test_missing_folder_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="run create-spec first"):
        upsample_spec_dir(tmp_path / "nowhere", OPTIONS, executor=LocalExecutor(FakeEngine()))


def _wait_for(paths: list[Path], text: str, deadline_s: float = 120) -> None:
    end = time.monotonic() + deadline_s
    while not all(text in p.read_text() for p in paths):
        assert time.monotonic() < end, [p.read_text() for p in paths]
        time.sleep(0.1)


@pytest.mark.slow
def test_two_concurrent_runs_upsample_every_spec_exactly_once(tmp_path: Path, videos: dict[str, str]) -> None:
    root = tmp_path / "prompts"
    make_folder(root, videos, count=20)
    lock_path = root / ".upsampling" / "run.lock"
    lock_path.parent.mkdir(parents=True)
    command = [sys.executable, "-m", "cosmos_workflow", "upsample-prompts", "--input-dir", str(root)]
    command += ["--engine", "fake", "--batch-size", "4", "-q"]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # hold both runs at the door so they really overlap
    with logs[0].open("w") as first, logs[1].open("w") as second:
        try:
            runs = [subprocess.Popen(command, cwd=ROOT, stderr=log) for log in (first, second)]
            _wait_for(logs, "another run is upsampling")
        finally:
            os.close(fd)
        # both report the corrupt broken.json: an invalid spec file makes a run exit 3 (issue 23, case 10)
        assert [run.wait(timeout=300) for run in runs] == [3, 3]
    outputs = [log.read_text() for log in logs]
    assert sorted(o.count("updated  shot") for o in outputs) == [0, 20]
    journal = list(
        read_records(
            root / ".upsampling" / "results.json.journal.jsonl",
            clips_dir=root / ".upsampling" / "results_clips",
        )
    )
    assert len(journal) == 20 and set(Counter(r.key for r in journal).values()) == {1}
    specs = specs_by_name(root)
    assert len(specs) == 20 and all(s.spec.upsampled_prompt for s in specs.values())
    keys = {s.spec.upsampling_params.request_key for s in specs.values() if s.spec.upsampling_params}
    assert keys == {r.key for r in journal}
    assert not list(root.rglob("*.tmp"))
