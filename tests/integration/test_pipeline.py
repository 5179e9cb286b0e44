"""The one flow: each item planned exactly once per process, resume from the journals, one writer
per output (a live second run is refused; a killed run never blocks its rerun)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cosmos_workflow import api
from cosmos_workflow.config import RunOptions
from cosmos_workflow.engines import EngineConfig
from cosmos_workflow.engines.fake import FakeEngine
from cosmos_workflow.errors import OutputBusyError
from cosmos_workflow.executors import LocalExecutor
from cosmos_workflow.executors.torchrun import RankInfo, TorchrunExecutor
from cosmos_workflow.files import exclusive_lock, lock_path_for
from cosmos_workflow.specs.batch import BatchItem
from tests.videos import make_video

ROOT = Path(__file__).resolve().parents[2]
FAKE = RunOptions(engine=EngineConfig(engine="fake", model="fake"), batch_size=2)


@pytest.fixture
def items(tmp_path: Path) -> list[BatchItem]:
    video = make_video(tmp_path / "v.mp4", 640, 360)
    return [
        BatchItem(name=f"item{n}", prompt=f"A scene number {n}", video_path=video if n % 2 else None)
        for n in range(7)
    ]


@pytest.fixture
def planner_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts calls of the planner (``budget.plan_item``) per item name, wherever they come from."""
    calls: Counter[str] = Counter()
    real = api.plan_item

    def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return real(name, *args, **kwargs)

    monkeypatch.setattr(api, "plan_item", counting)
    monkeypatch.setattr("cosmos_workflow.planner.plan_item", counting)
    return calls


def test_local_run_plans_each_item_exactly_once(
    tmp_path: Path, items: list[BatchItem], planner_calls: Counter[str]
) -> None:
    result = api.upsample(items, FAKE, output=tmp_path / "o.json", executor=LocalExecutor(FakeEngine()))
    assert result.wrote_output and len(result.records) == 7
    assert planner_calls == Counter({item.name: 1 for item in items})
    planner_calls.clear()
    again = api.upsample(items, FAKE, output=tmp_path / "o.json", executor=LocalExecutor(FakeEngine()))
    assert again.resumed == 7 and not planner_calls  # resumed items are not planned again


def test_each_torchrun_rank_plans_only_its_own_items_once(
    tmp_path: Path, items: list[BatchItem], planner_calls: Counter[str]
) -> None:
    output = tmp_path / "o.json"
    seen: list[Counter[str]] = []
    results = []
    for rank in range(2):
        planner_calls.clear()
        executor = TorchrunExecutor(RankInfo(rank=rank, world_size=2, local_rank=rank))
        executor.engine = FakeEngine()
        results.append(api.upsample(items, FAKE, output=output, executor=executor))
        seen.append(Counter(planner_calls))
    assert all(set(calls.values()) == {1} for calls in seen)
    assert not set(seen[0]) & set(seen[1]) and set(seen[0]) | set(seen[1]) == {i.name for i in items}
    assert not results[0].wrote_output and results[1].wrote_output  # the last rank writes the output
    written = json.loads(output.read_text())
    assert [r["name"] for r in written] == [i.name for i in items]


def test_a_local_rerun_resumes_from_the_rank_journals(tmp_path: Path, items: list[BatchItem]) -> None:
    output = tmp_path / "o.json"
    executor = TorchrunExecutor(RankInfo(rank=0, world_size=2, local_rank=0))
    executor.engine = FakeEngine()
    first = api.upsample(items, FAKE, output=output, executor=executor)  # rank 1 never ran
    rank0 = len(first.records)
    engine = FakeEngine()
    result = api.upsample(items, FAKE, output=output, executor=LocalExecutor(engine))
    assert 0 < rank0 < 7 and result.resumed == rank0 and len(engine.received) == 7 - rank0
    assert [r.name for r in result.records] == [i.name for i in items]


def test_a_second_writer_of_the_same_output_is_refused_at_once(
    tmp_path: Path, items: list[BatchItem]
) -> None:
    output = tmp_path / "o.json"
    journal = output.with_name(f"{output.name}.journal.jsonl")
    refusal = rf"another run \(pid {os.getpid()}\) is writing {output}"
    with exclusive_lock(journal, owner_of=output), pytest.raises(OutputBusyError, match=refusal):
        api.upsample(items, FAKE, output=output, executor=LocalExecutor(FakeEngine()))
    assert not output.exists()
    api.upsample(items, FAKE, output=output, executor=LocalExecutor(FakeEngine()))  # free again


SLOW_RUN = """
import sys, time
from pathlib import Path
from cosmos_workflow import api
from cosmos_workflow.config import RunOptions
from cosmos_workflow.engines import EngineConfig
from cosmos_workflow.engines.fake import FakeEngine
from cosmos_workflow.executors import LocalExecutor
from cosmos_workflow.specs.batch import load_batch

class Slow(FakeEngine):
    def generate(self, requests, sampling):
        time.sleep(60)
        return super().generate(requests, sampling)

options = RunOptions(engine=EngineConfig(engine="fake", model="fake"))
items = load_batch(Path(sys.argv[1])).items
api.upsample(items, options, output=Path(sys.argv[2]), executor=LocalExecutor(Slow()))
"""


def _start_slow_run(tmp_path: Path, prompts: Path, output: Path) -> subprocess.Popen[bytes]:
    script = tmp_path / "slow.py"
    script.write_text(SLOW_RUN)
    child = subprocess.Popen([sys.executable, str(script), str(prompts), str(output)], cwd=ROOT)
    lock = lock_path_for(output.with_name(f"{output.name}.journal.jsonl"))
    deadline = time.monotonic() + 60
    while not (lock.exists() and lock.read_text().strip() == str(child.pid)):
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.05)
    return child


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cosmos_workflow", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_concurrent_cli_run_exits_1_naming_the_pid_then_a_sigkill_leaves_no_stale_lock(
    tmp_path: Path,
) -> None:
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps([{"name": f"n{i}", "prompt": f"prompt {i}"} for i in range(12)]))
    output = tmp_path / "out.json"
    child = _start_slow_run(tmp_path, prompts, output)
    try:
        second = _cli("upsample-prompts", str(prompts), "-o", str(output), "--engine", "fake", "--quiet")
        assert second.returncode == 1
        assert f"another run (pid {child.pid}) is writing {output}" in second.stderr
        assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    rerun = _cli("upsample-prompts", str(prompts), "-o", str(output), "--engine", "fake", "--quiet")
    assert rerun.returncode == 0, rerun.stderr
    journal = output.with_name(f"{output.name}.journal.jsonl").read_text().splitlines()
    assert len(json.loads(output.read_text())) == 12 and len(journal) == 12  # nothing done twice
