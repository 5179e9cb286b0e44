"""Real ``torchrun --nproc_per_node=2`` on CPU: shards, per-rank journals, the file-step merge.

The ranks run :func:`run_distributed_if_needed` from a small entry script (written per test), which
also registers an ``envprobe`` engine: the fake engine, plus a file recording which environment
variables the engine saw when it was loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cosmos_workflow import api
from cosmos_workflow.config import RunOptions
from cosmos_workflow.engines import EngineConfig
from cosmos_workflow.engines.environment import TORCHRUN_VARIABLES
from cosmos_workflow.executors.torchrun import CRASH_HOOK_ENV

pytestmark = pytest.mark.slow

ENTRY = """
import json, os, sys
from pathlib import Path

from cosmos_workflow.cli.app import setup_logging
from cosmos_workflow.engines import ENGINES
from cosmos_workflow.engines.fake import FakeEngine
from cosmos_workflow import api
from cosmos_workflow.config import RunOptions
from cosmos_workflow.executors.torchrun import rank_info


def envprobe(config):
    seen = {"env": sorted(os.environ), "device": config.device}
    Path(os.environ["PROBE_DIR"], f"probe-{os.getpid()}.json").write_text(json.dumps(seen))
    return FakeEngine(config)


ENGINES["envprobe"] = "__main__:envprobe"
setup_logging()
options = RunOptions.model_validate_json(Path(sys.argv[3]).read_text())
if rank_info() is None:
    sys.exit("not under torchrun")
result, problems = api.upsample_file(Path(sys.argv[1]), Path(sys.argv[2]), options)
print("RESULT", json.dumps({"items": len(result.records), "resumed": result.resumed}))
sys.exit(3 if result.failed and result.wrote_output else 0)
"""


def torchrun(
    tmp_path: Path, prompts: Path, output: Path, options: RunOptions, **env: str
) -> subprocess.CompletedProcess[str]:
    entry = tmp_path / "entry.py"
    entry.write_text(ENTRY)
    options_file = tmp_path / "options.json"
    options_file.write_text(options.model_dump_json())
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += [str(entry), str(prompts), str(output), str(options_file)]
    environment = os.environ | {"PROBE_DIR": str(tmp_path)} | env
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)


def fake_options(**update: object) -> RunOptions:
    return RunOptions(engine=EngineConfig(engine="fake", model="fake"), clips_dir=None).model_copy(
        update=update
    )


@pytest.fixture
def prompts(tmp_path: Path, video_factory: Callable[..., Path]) -> Path:
    """Five items (an uneven split for two ranks): videos of different sizes and a text-only one."""
    sizes = [(320, 180), (640, 360), (160, 96), (480, 272)]
    items = [
        {
            "name": f"clip{n}",
            "prompt": f"a scene number {n}",
            "video_path": str(video_factory(f"v{n}.mp4", w, h)),
        }
        for n, (w, h) in enumerate(sizes)
    ]
    items.append({"name": "words", "prompt": "a red kite over a beach"})
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(items))
    return path


def names_in(path: Path) -> list[str]:
    return [record["name"] for record in json.loads(path.read_text())]


def journal_names(output: Path, rank: int) -> list[str]:
    path = output.with_name(f"{output.name}.rank{rank}.journal.jsonl")
    return [json.loads(line)["name"] for line in path.read_text().splitlines()] if path.exists() else []


def test_two_ranks_give_the_same_items_as_one_process(tmp_path: Path, prompts: Path) -> None:
    output = tmp_path / "out" / "two.json"
    options = fake_options(batch_size=2)

    run = torchrun(tmp_path, prompts, output, options)

    assert run.returncode == 0, run.stderr[-3000:]
    single, _ = api.upsample_file(prompts, tmp_path / "one.json", options)
    assert names_in(output) == [r.name for r in single.records]
    two = {r["name"]: r["upsampled_prompt"] for r in json.loads(output.read_text())}
    assert two == {r.name: r.upsampled_prompt for r in single.records}
    shards = [journal_names(output, 0), journal_names(output, 1)]
    assert sorted(shards[0] + shards[1]) == sorted(two)
    assert all(shards)


def test_engine_starts_without_torchrun_variables_on_its_own_rank(tmp_path: Path, prompts: Path) -> None:
    output = tmp_path / "out.json"
    options = RunOptions(engine=EngineConfig(engine="envprobe", model="fake"), clips_dir=None)

    run = torchrun(tmp_path, prompts, output, options)

    assert run.returncode == 0, run.stderr[-3000:]
    probes = [json.loads(p.read_text()) for p in tmp_path.glob("probe-*.json")]
    assert len(probes) == 2
    for probe in probes:
        assert not set(probe["env"]) & TORCHRUN_VARIABLES
        assert not [name for name in probe["env"] if name.startswith("TORCHELASTIC_")]
        assert probe["device"] is None  # no GPU here; on GPUs it is cuda:LOCAL_RANK


def test_a_killed_rank_is_recovered_by_a_rerun(tmp_path: Path, prompts: Path) -> None:
    output = tmp_path / "out.json"
    options = fake_options(batch_size=1)

    crashed = torchrun(tmp_path, prompts, output, options, **{CRASH_HOOK_ENV: "1:1"})

    assert crashed.returncode != 0
    assert "exitcode  : 17" in crashed.stderr
    assert not output.exists()  # no rank merged: rank 1 never finished
    assert len(journal_names(output, 1)) == 1
    first_done = journal_names(output, 1)

    rerun = torchrun(tmp_path, prompts, output, options)

    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert names_in(output) == ["clip0", "clip1", "clip2", "clip3", "words"]
    assert journal_names(output, 1)[:1] == first_done  # resumed, not redone
    every_record = journal_names(output, 0) + journal_names(output, 1)
    assert sorted(every_record) == sorted(names_in(output))  # each item done exactly once


def test_items_done_by_an_earlier_single_process_run_are_not_redone(tmp_path: Path, prompts: Path) -> None:
    output = tmp_path / "out.json"
    options = fake_options()
    api.upsample_file(prompts, output, options)
    output.unlink()

    run = torchrun(tmp_path, prompts, output, options)

    assert run.returncode == 0, run.stderr[-3000:]
    assert names_in(output) == ["clip0", "clip1", "clip2", "clip3", "words"]
    assert journal_names(output, 0) == journal_names(output, 1) == []
    assert '"resumed": 5' in run.stdout  # the merging rank counts them as already done


def test_tiny_model_on_two_cpu_ranks(tmp_path: Path, prompts: Path, tiny_model: Path) -> None:
    output = tmp_path / "out.json"
    options = RunOptions(
        engine=EngineConfig(engine="hf", model="tiny-random", device="cpu"),
        sampling={"max_tokens": 8, "temperature": 0.0},
        plan={"max_tokens": 8, "max_resolution": 160},
        clips_dir=None,
        batch_size=2,
        on_error="original",  # random weights rarely stop before max_tokens: 'fallback' records
    )

    run = torchrun(tmp_path, prompts, output, options)

    single, _ = api.upsample_file(prompts, tmp_path / "one.json", options)
    # a merged run with failed items exits 3 on its rank, which torchrun reports as its own failure
    assert (run.returncode != 0) == bool(single.failed), run.stderr[-3000:]
    records = json.loads(output.read_text())
    assert [r["name"] for r in records] == [r.name for r in single.records]
    assert [r["status"] for r in records] == [r.status for r in single.records]
    assert {r["engine"] for r in records} == {"hf"}
    assert all(r["upsampled_prompt"] for r in records)


def test_tiny_qwen_checkpoint_on_two_cpu_ranks(tmp_path: Path, prompts: Path, cache_dir: Path) -> None:
    """A Qwen2.5-VL (Cosmos-Reason1) checkpoint under torchrun: each rank plans with the family's
    own arithmetic and runs the hf engine's Qwen path; the merged records are a single process's."""
    from cosmos_workflow.engines.tiny_qwen import tiny_qwen_dir

    output = tmp_path / "out.json"
    options = RunOptions(
        engine=EngineConfig(engine="hf", model=str(tiny_qwen_dir(cache_dir)), device="cpu"),
        sampling={"max_tokens": 8, "temperature": 0.0},
        plan={"max_tokens": 8, "max_resolution": 160},
        clips_dir=None,
        batch_size=2,
        on_error="original",
    )

    run = torchrun(tmp_path, prompts, output, options)

    single, _ = api.upsample_file(prompts, tmp_path / "one.json", options)
    assert (run.returncode != 0) == bool(single.failed), run.stderr[-3000:]
    records = json.loads(output.read_text())
    assert [r["name"] for r in records] == [r.name for r in single.records]
    assert [(r["status"], r["prompt_tokens"]) for r in records] == [
        (r.status, r.prompt_tokens) for r in single.records
    ]
    # Qwen2.5-VL's 28-pixel grid, not Pixtral's 16
    sides = [side for r in records if r["width"] for side in (r["width"], r["height"])]
    assert sides and all(side % 28 == 0 for side in sides) and any(side % 16 for side in sides)
    assert {r["engine"] for r in records} == {"hf"}


def test_cli_upsample_prompts_runs_as_torchrun_ranks(tmp_path: Path, prompts: Path) -> None:
    output = tmp_path / "out.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "cosmos_workflow", "upsample-prompts", str(prompts), "-o", str(output)]
    command += ["--engine", "fake", "--no-clips"]

    run = subprocess.run(command, capture_output=True, text=True, timeout=300)

    assert run.returncode == 0, run.stderr[-3000:]
    assert names_in(output) == ["clip0", "clip1", "clip2", "clip3", "words"]
    assert journal_names(output, 0) and journal_names(output, 1)


def test_a_spec_folder_under_a_hand_started_torchrun_is_done_once_and_the_way_to_split_it_is_named(
    tmp_path: Path, video_factory: Callable[..., Path]
) -> None:
    from cosmos_workflow.workflow import PromptSpecManager

    specs = tmp_path / "specs"
    manager = PromptSpecManager(specs)
    for n in range(4):
        manager.create(
            f"shot{n}", f"a scene number {n}", input_video_path=str(video_factory(f"v{n}.mp4", 64, 48))
        )
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += [
        "-m",
        "cosmos_workflow",
        "upsample-prompts",
        "--input-dir",
        str(specs),
        "--engine",
        "fake",
        "--no-clips",
    ]

    run = subprocess.run(command, capture_output=True, text=True, timeout=300)

    assert run.returncode == 0, run.stderr[-3000:]
    said = " ".join(run.stderr.split())  # the log lines are wrapped to the terminal's width
    assert said.count("not split over the 2 ranks of this torchrun") == 1
    assert "pass --num-gpu 2 to use 2 GPUs" in said
    assert all(s.spec.upsampled for s in PromptSpecManager(specs).scan().specs)
