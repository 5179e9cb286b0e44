"""``--executor ray`` on a real local Ray cluster (2 CPUs, started once for the module).

The engines are the fake one (with a log of the batches each actor served, and a way to die
like a killed process) and the tiny model. The driver-killed test runs the driver as a separate
process joined to the same cluster, and kills it with SIGKILL.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from cosmos_workflow import api
from cosmos_workflow.config import RunOptions
from cosmos_workflow.engines import EncodedRequest, EngineConfig, Generation, SamplingParams
from cosmos_workflow.engines.fake import FakeEngine
from cosmos_workflow.executors import LocalExecutor
from cosmos_workflow.executors.ray import RayExecutor
from cosmos_workflow.specs.batch import load_batch
from cosmos_workflow.specs.results import UpsampleRecord

# one local Ray cluster at a time: a second one beside it starves both on a 2-CPU machine
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]


class Logged(FakeEngine):
    """The fake engine; appends each batch it serves (its pid, the keys) to ``folder``. Prompts
    containing "engine-fails" get a failed generation. With ``crash_marker``, the first engine
    to reach its second batch creates the marker and dies by SIGKILL (one death in the run).
    With ``rendezvous`` N, an engine holds its first batch until N engines hold one (or 60 s
    pass): Ray gives a batch to the least busy actor, so the others get the next ones."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        folder: str,
        delay: float = 0.0,
        crash_marker: str | None = None,
        rendezvous: int = 0,
    ) -> None:
        super().__init__(config)
        self.folder = Path(folder)
        self.delay = delay
        self.crash_marker = crash_marker
        self.rendezvous = rendezvous
        self.served = 0
        (self.folder / f"load-{os.getpid()}-{time.monotonic_ns()}").touch()

    def generate(self, requests: Sequence[EncodedRequest], sampling: SamplingParams) -> list[Generation]:
        self.served += 1
        if self.served == 1 and self.rendezvous:
            (self.folder / f"serving-{os.getpid()}").touch()
            deadline = time.monotonic() + 60
            while len(list(self.folder.glob("serving-*"))) < self.rendezvous and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.crash_marker and self.served == 2 and _first_to_create(Path(self.crash_marker)):
            os.kill(os.getpid(), signal.SIGKILL)
        if any("kills-its-engine" in r.prompt for r in requests):  # every time
            (self.folder / f"killed-{os.getpid()}").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(self.delay)
        results = [
            Generation.failed("the fake engine refused it", prompt_tokens=r.num_tokens)
            if "engine-fails" in r.prompt
            else generation
            for r, generation in zip(requests, super().generate(requests, sampling), strict=True)
        ]
        with (self.folder / f"batches-{os.getpid()}.jsonl").open("a") as log:
            log.write(json.dumps([r.key for r in requests]) + "\n")
        return results


def _first_to_create(path: Path) -> bool:
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


@pytest.fixture(scope="module")
def cluster(cache_dir: Path) -> Iterator[str]:
    """A local Ray cluster of 2 CPUs for the module; its address, for drivers in other processes.
    (After ``cache_dir``: the workers inherit the tiny model's cache folder.)"""
    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def prompts(tmp_path: Path, video_factory: Callable[..., Path]) -> Path:
    """Five items (batches of 2 make 2 + 2 + 1): videos of four sizes and a text-only one."""
    sizes = [(320, 180), (640, 360), (160, 96), (480, 272)]
    items: list[dict[str, Any]] = [
        {
            "name": f"clip{n}",
            "prompt": f"a scene number {n}",
            "video_path": str(video_factory(f"v{n}.mp4", w, h)),
        }
        for n, (w, h) in enumerate(sizes)
    ]
    items.append({"name": "words", "prompt": "a red kite over a beach"})
    return write_prompts(tmp_path / "prompts.json", items)


def write_prompts(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(items))
    return path


def fake_options(**update: Any) -> RunOptions:
    options = RunOptions(engine=EngineConfig(engine="fake", model="fake"), clips_dir=None, executor="ray")
    return options.model_copy(update={"ray_actors": 2, **update})


def without_timestamps(records: Sequence[Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.model_dump(mode="json").items() if k != "timestamp"} for r in records]


def served_batches(folder: Path) -> dict[str, list[list[str]]]:
    """pid -> the batches (keys) that engine served."""
    return {
        path.stem.removeprefix("batches-"): [json.loads(line) for line in path.read_text().splitlines()]
        for path in folder.glob("batches-*.jsonl")
    }


def journal_keys(output: Path) -> list[str]:
    path = output.with_name(output.name + ".journal.jsonl")
    return [json.loads(line)["key"] for line in path.read_text().splitlines()]


def test_two_actors_serve_uneven_batches_and_give_a_local_runs_records(
    cluster: str, prompts: Path, tmp_path: Path
) -> None:
    log_dir = tmp_path / "engines"
    log_dir.mkdir()
    items = load_batch(prompts).items
    items[1] = items[1].model_copy(update={"prompt": "engine-fails on this one"})
    items[2] = items[2].model_copy(update={"video_path": tmp_path / "missing.mp4"})
    options = fake_options(batch_size=2)
    engine = functools.partial(Logged, folder=str(log_dir), delay=0.2, rendezvous=2)

    ray_run = api.upsample(items, options, output=tmp_path / "ray.json", executor=RayExecutor(engine))
    local_engine = Logged(options.engine, folder=str(tmp_path))
    local = api.upsample(items, options, output=tmp_path / "local.json", executor=LocalExecutor(local_engine))

    assert without_timestamps(ray_run.records) == without_timestamps(local.records)
    assert [r.status for r in ray_run.records] == ["ok", "error", "text_only", "ok", "text_only"]
    assert "the fake engine refused it" in (ray_run.records[1].error or "")
    served = served_batches(log_dir)
    assert len(served) == 2  # both actors served batches (see rendezvous)
    assert sorted(len(batch) for batches in served.values() for batch in batches) == [1, 2, 2]
    assert sorted(journal_keys(tmp_path / "ray.json")) == sorted(r.key for r in local.records)


def test_a_killed_actor_is_restarted_and_its_batch_retried(cluster: str, tmp_path: Path) -> None:
    log_dir = tmp_path / "engines"
    log_dir.mkdir()
    items = [{"name": f"item{n}", "prompt": f"a short scene {n}"} for n in range(8)]
    prompts = write_prompts(tmp_path / "prompts.json", items)
    marker = tmp_path / "crashed"
    engine = functools.partial(Logged, folder=str(log_dir), delay=0.2, crash_marker=str(marker))
    output = tmp_path / "out.json"

    result, _ = api.upsample_file(prompts, output, fake_options(batch_size=1), executor=RayExecutor(engine))

    assert marker.exists()  # an actor's process was killed mid-run
    assert len(list(log_dir.glob("load-*"))) >= 3  # two actors, and the killed one restarted
    assert [r.name for r in result.records] == [f"item{n}" for n in range(8)]
    assert {r.status for r in result.records} == {"text_only"}  # answered (no videos here)
    keys = journal_keys(output)
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 8  # every item exactly once
    assert [r["name"] for r in json.loads(output.read_text())] == [f"item{n}" for n in range(8)]


def test_a_batch_that_kills_its_engine_every_time_is_given_up_and_the_rest_finish(
    cluster: str, tmp_path: Path
) -> None:
    """Ray restarts the actor and retries the batch, but not forever: after BATCH_TRIES deaths the
    batch's items get an error naming the cause, and the run finishes the others."""
    from cosmos_workflow.executors.ray import BATCH_TRIES

    log_dir = tmp_path / "engines"
    log_dir.mkdir()
    items = [{"name": f"item{n}", "prompt": f"a short scene {n}"} for n in range(6)]
    items[3]["prompt"] = "a scene that kills-its-engine"
    prompts = write_prompts(tmp_path / "prompts.json", items)
    engine = functools.partial(Logged, folder=str(log_dir))
    output = tmp_path / "out.json"

    result, _ = api.upsample_file(prompts, output, fake_options(batch_size=1), executor=RayExecutor(engine))

    assert len(list(log_dir.glob("killed-*"))) == BATCH_TRIES
    statuses = {r.name: r.status for r in result.records}
    assert statuses == {f"item{n}": "error" if n == 3 else "text_only" for n in range(6)}
    (given_up,) = [r for r in result.records if r.name == "item3"]
    assert given_up.error and f"died on each of {BATCH_TRIES} tries" in given_up.error
    assert "--batch-size 1" in given_up.error
    assert len(json.loads(output.read_text())) == 6


DRIVER = """
import json, sys, time
from pathlib import Path

from cosmos_workflow import api
from cosmos_workflow.config import RunOptions
from cosmos_workflow.engines.fake import FakeEngine
from cosmos_workflow.executors.ray import RayExecutor


class Slow(FakeEngine):
    def generate(self, requests, sampling):
        time.sleep(0.4)
        return super().generate(requests, sampling)


options = RunOptions.model_validate_json(Path(sys.argv[3]).read_text())
result, _ = api.upsample_file(Path(sys.argv[1]), Path(sys.argv[2]), options, executor=RayExecutor(Slow))
print("RESULT", json.dumps({"items": len(result.records), "resumed": result.resumed}))
"""


def test_a_killed_driver_resumes_from_the_journal(cluster: str, tmp_path: Path) -> None:
    names = [f"item{n}" for n in range(10)]
    prompts = write_prompts(tmp_path / "prompts.json", [{"name": n, "prompt": f"scene {n}"} for n in names])
    output = tmp_path / "out.json"
    journal = output.with_name(output.name + ".journal.jsonl")
    (tmp_path / "driver.py").write_text(DRIVER)
    (tmp_path / "options.json").write_text(fake_options(batch_size=1, ray_address=cluster).model_dump_json())
    command = [
        sys.executable,
        str(tmp_path / "driver.py"),
        str(prompts),
        str(output),
        str(tmp_path / "options.json"),
    ]

    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (journal.exists() and journal.read_text().strip()) and time.monotonic() < deadline:
        assert driver.poll() is None, driver.communicate()[1][-3000:]
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.communicate(timeout=60)
    done_before = journal_keys(output)

    assert driver.returncode == -signal.SIGKILL
    assert 1 <= len(done_before) < len(names)
    assert not output.exists()

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)

    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f'"resumed": {len(done_before)}' in rerun.stdout
    assert [r["name"] for r in json.loads(output.read_text())] == names
    keys = journal_keys(output)
    assert keys[: len(done_before)] == done_before  # kept, not redone
    assert sorted(keys) == sorted(set(keys)) and len(keys) == len(names)  # every item exactly once


def _ray_run_equals_local(
    prompts: Path, tmp_path: Path, model: str, plan: dict[str, int]
) -> list[UpsampleRecord]:
    """The same seeded items on two actors and in this process: the records agree (timestamps
    aside); the local run's records, for the family's own checks. (The tiny Pixtral model's seeded
    records are compared with a local run's through the CLI: tests/e2e/test_cli_ray.py.)"""
    items = load_batch(prompts).items[2:]  # a small video, a larger one, and text only
    options = RunOptions(
        engine=EngineConfig(engine="hf", model=model, device="cpu"),
        sampling={"max_tokens": 120, "temperature": 0.6, "seed": 7},
        plan={"max_tokens": 120, **plan},
        clips_dir=None,
        batch_size=2,
        executor="ray",
        ray_actors=2,
    )

    ray_run = api.upsample(items, options, output=tmp_path / "ray.json")
    local = api.upsample(items, options, output=tmp_path / "local.json", executor=LocalExecutor())

    assert [r.status for r in local.records] == ["ok", "ok", "text_only"]
    assert all(r.upsampled_prompt for r in local.records)  # finished answers, compared word for word
    assert without_timestamps(ray_run.records) == without_timestamps(local.records)
    assert {r.engine for r in ray_run.records} == {"hf"}
    return local.records


def test_tiny_qwen_checkpoint_with_a_fixed_seed_gives_a_local_runs_records(
    cluster: str, prompts: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """A Reason1-style checkpoint folder (the Qwen2.5-VL family, from its config.json) on the
    actors: each loads it as a local run does, and the records are the local run's."""
    from cosmos_workflow.engines.tiny_qwen import tiny_qwen_dir

    local = _ray_run_equals_local(prompts, tmp_path, str(tiny_qwen_dir(cache_dir)), {"num_frames": 2})
    assert all(r.width is not None and r.width % 28 == 0 for r in local[:2])  # Qwen's grid
