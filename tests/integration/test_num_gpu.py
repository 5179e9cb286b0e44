"""``num_gpu > 1`` from one process: torchrun started as a child (2 CPU processes here), the same
shards, journals and merge as a hand-started torchrun, progress from the ranks' journals, and
errors as one line with the run's exit code.

The processes started here load engines registered by a ``sitecustomize`` on their PYTHONPATH
(``envprobe``: the fake engine plus a record of the environment it started in).
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
from cosmos_workflow.config import CONFIG_FILE, options_from_keywords
from cosmos_workflow.engines.environment import is_torchrun_variable
from cosmos_workflow.executors.torchrun import CRASH_HOOK_ENV
from cosmos_workflow.specs.prompt_spec import new_spec
from cosmos_workflow.workflow import WorkflowOrchestrator
from tests.probe_engines import PROBE_DIR_ENV, SITECUSTOMIZE

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["clip0", "clip1", "clip2", "clip3", "words"]


@pytest.fixture
def prompts(tmp_path: Path, video_factory: Callable[..., Path]) -> Path:
    """Five items (an uneven split for two ranks), videos as paths relative to the file."""
    sizes = [(320, 180), (640, 360), (160, 96), (480, 272)]
    items: list[dict[str, str]] = []
    for n, (w, h) in enumerate(sizes):
        video = video_factory(f"v{n}.mp4", w, h)
        items.append({"name": f"clip{n}", "prompt": f"a scene number {n}", "video_path": video.name})
    items.append({"name": "words", "prompt": "a red kite over a beach"})
    path = video.parent / "prompts.json"
    path.write_text(json.dumps(items))
    return path


@pytest.fixture
def probe_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment whose Python processes register the ``envprobe`` engine."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    probes = tmp_path / "probes"
    probes.mkdir()
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), PROBE_DIR_ENV: str(probes)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


def cli(*args: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cosmos_workflow", "upsample-prompts", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def records(path: Path) -> list[dict[str, object]]:
    data: list[dict[str, object]] = json.loads(path.read_text())
    return data


def journal_names(output: Path, rank: int) -> list[str]:
    path = output.with_name(f"{output.name}.rank{rank}.journal.jsonl")
    return [json.loads(line)["name"] for line in path.read_text().splitlines()] if path.exists() else []


def probes(env: dict[str, str]) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted(Path(env[PROBE_DIR_ENV]).glob("probe-*.json"))]


def test_cli_num_gpu_starts_torchrun_on_the_listed_gpus(
    tmp_path: Path, prompts: Path, probe_env: dict[str, str]
) -> None:
    output = tmp_path / "out" / "up.json"

    common = ["--engine", "envprobe", "--model", "m", "--batch-size", "2"]

    run = cli(
        str(prompts), "-o", str(output), *common, "--num-gpu", "2", "--cuda-devices", "0,1", env=probe_env
    )

    assert run.returncode == 0, run.stderr[-3000:]
    assert "starting 2 processes (torchrun)" in run.stderr and "5 items (0 already done)" in run.stderr
    ranks = [journal_names(output, 0), journal_names(output, 1)]
    assert all(ranks) and sorted(ranks[0] + ranks[1]) == sorted(NAMES)  # two shards, each item once
    seen = probes(probe_env)
    assert len(seen) == 2  # one engine per rank, none in this process
    for probe in seen:
        env = probe["env"]
        assert isinstance(env, dict) and env["CUDA_VISIBLE_DEVICES"] == "0,1"
        assert env["COSMOS_WORKERS"] == "2" and not [name for name in env if is_torchrun_variable(name)]
    clips = str(tmp_path / "out" / "up_clips")  # where the run above put them: the same clip paths
    single = cli(str(prompts), "-o", str(tmp_path / "one.json"), *common, "--clips-dir", clips, env=probe_env)
    assert single.returncode == 0, single.stderr[-3000:]
    same = ("name", "upsampled_prompt", "video_path", "preprocessed_video", "status", "prompt_tokens")
    one = [{k: r[k] for k in same} for r in records(tmp_path / "one.json")]
    assert [{k: r[k] for k in same} for r in records(output)] == one


def test_config_file_num_gpu_with_progress_from_the_journals(
    tmp_path: Path, prompts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(
        '[upsample]\nengine = "fake"\nnum_gpu = 2\nbatch_size = 1\nclips = false\n'
    )
    options = options_from_keywords()
    calls: list[tuple[int, int | None]] = []

    result, _ = api.upsample_file(
        prompts, tmp_path / "up.json", options, progress=lambda n, total=None: calls.append((n, total))
    )

    assert [r.name for r in result.records] == NAMES and result.counts["ok"] + result.counts["text_only"] == 5
    assert calls[0] == (0, 5) and sum(n for n, _ in calls) == 5  # then one or more steps as ranks wrote
    assert journal_names(tmp_path / "up.json", 0) and journal_names(tmp_path / "up.json", 1)
    assert [r["name"] for r in records(tmp_path / "up.json")] == NAMES


def test_orchestrator_num_gpu_runs_the_specs_in_two_processes(tmp_path: Path, prompts: Path) -> None:
    videos = sorted(prompts.parent.glob("v*.mp4"))
    specs = [new_spec(f"s{n}", f"A street, take {n}", input_video_path=str(v)) for n, v in enumerate(videos)]
    work = tmp_path / "work"

    out = WorkflowOrchestrator(work_dir=work).upsample_prompts_batch(
        specs, engine="fake", num_gpu=2, cuda_devices="0,1", batch_size=1
    )

    assert [s.name for s in out] == ["s0", "s1", "s2", "s3"] and all(s.upsampled_prompt for s in out)
    assert [s.upsampling_params.video_path for s in out if s.upsampling_params] == [str(v) for v in videos]
    ranks = journal_names(work / "results.json", 0) + journal_names(work / "results.json", 1)
    assert sorted(ranks) == sorted(s.id for s in specs)
    assert not list(work.glob(".*.items.json"))  # the items file handed to the ranks is gone


def test_a_failing_child_is_one_line_and_exit_1(tmp_path: Path, prompts: Path) -> None:
    env = dict(os.environ)
    output = tmp_path / "up.json"

    run = cli(str(prompts), "-o", str(output), "--engine", "bogus", "--model", "m", "--num-gpu", "2", env=env)

    assert run.returncode == 1
    [line] = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    ended = "torchrun (2 processes) ended with exit code 1 and 5 of 5 items not done: unknown engine 'bogus'"
    assert ended in line
    assert f"(the processes' output: {output}.torchrun.log)" in line and "Traceback" not in run.stderr


def test_a_killed_rank_fails_the_run_and_a_rerun_finishes_it(tmp_path: Path, prompts: Path) -> None:
    output = tmp_path / "up.json"
    args = (str(prompts), "-o", str(output), "--engine", "fake", "--batch-size", "1", "--num-gpu", "2", "-q")

    crashed = cli(*args, env=os.environ | {CRASH_HOOK_ENV: "1:1"})

    assert crashed.returncode == 1 and not output.exists()
    assert "items not done: rank 1 exited with code 17" in crashed.stderr
    assert "rerun the same command to resume" in crashed.stderr
    first = journal_names(output, 1)
    assert len(first) == 1

    rerun = cli(*args, env=dict(os.environ))

    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert [r["name"] for r in records(output)] == NAMES
    assert journal_names(output, 1)[:1] == first  # resumed, not redone
    assert sorted(journal_names(output, 0) + journal_names(output, 1)) == sorted(NAMES)
