"""Ray executor scaling on CPU: 1 vs 2 actors, and Ray's overhead over a local run.

Run from the repository root (about 9 minutes at the defaults)::

    .venv/bin/python benchmarks/ray_scaling.py

The engine is the fake one with a fixed service time per batch (``--service`` seconds, a sleep:
it stands for a GPU's batch time and uses no CPU), so the figures measure the executor, not a
model. The items are ``--items`` text-only prompts, or prompts over ``--videos`` generated
1280x720 clips (planned at the defaults: 2 frames at 480x272, decoded and encoded for every
item), in batches of ``--batch-size``. Three runs of the same items, each through
``api.upsample`` into its own output:

* ``local``: the local executor (this process; preprocessing in threads ahead of the engine);
* ``ray, 1 actor`` and ``ray, 2 actors``: ``--executor ray`` on a local cluster of ``--cpus`` CPUs,
  started once before (its start-up is printed, not counted) and warmed up by one small run.

Each run's wall time covers planning, the pipeline's start (actors and their engines), every
batch and the output; the time to the first record is printed too (start-up). Prints a markdown
table: wall seconds, items/s, the speedup of 2 actors over 1, and the overhead of 1 actor over
the local run (of the wall time, and after the first record).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_upsample import cpu_model, make_items, renamed

from cosmos_workflow import api
from cosmos_workflow.config import RunOptions
from cosmos_workflow.engines import EncodedRequest, EngineConfig, Generation, SamplingParams
from cosmos_workflow.engines.fake import FakeEngine
from cosmos_workflow.executors import Executor, LocalExecutor
from cosmos_workflow.executors.ray import RayExecutor
from cosmos_workflow.specs.batch import BatchItem


class ServiceTime(FakeEngine):
    """The fake engine, taking ``service_s`` seconds for every batch, whatever its size."""

    def __init__(self, config: EngineConfig, *, service_s: float) -> None:
        super().__init__(config)
        self.service_s = service_s

    def generate(self, requests: Sequence[EncodedRequest], sampling: SamplingParams) -> list[Generation]:
        time.sleep(self.service_s)
        return super().generate(requests, sampling)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1600)
    parser.add_argument("--videos", type=int, default=0, help="generated clips the items share; 0: text only")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--service", type=float, default=0.5, help="seconds per batch")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    return parser.parse_args(argv)


def make_batch(folder: Path, count: int, videos: int) -> list[BatchItem]:
    if videos:
        return make_items(folder, count, videos, 1280, 720)
    return [BatchItem(name=f"req{i:04d}", prompt=f"a quiet street number {i} at night") for i in range(count)]


@dataclass
class Timing:
    wall_s: float
    #: until the first record came back (start-up: planning, the pipeline, the engines)
    first_s: float

    @property
    def steady_s(self) -> float:
        return self.wall_s - self.first_s


def timed(name: str, items: list[BatchItem], options: RunOptions, executor: Executor, work: Path) -> Timing:
    first: list[float] = []

    def progress(count: int, total: int | None = None) -> None:
        if count and not first:
            first.append(time.perf_counter())

    started = time.perf_counter()
    result = api.upsample(
        renamed(items, f"{name}-"),
        options,
        output=work / f"{name}.json",
        executor=executor,
        progress=progress,
    )
    timing = Timing(time.perf_counter() - started, first[0] - started)
    assert len(result.records) == len(items) and not result.failed, result.counts
    print(f"{name}: {timing.wall_s:.1f} s (first record after {timing.first_s:.1f} s)", flush=True)
    return timing


def main(argv: Sequence[str] | None = None) -> int:
    import ray

    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    engine = functools.partial(ServiceTime, service_s=args.service)
    options = RunOptions(
        engine=EngineConfig(engine="fake", model="fake"), batch_size=args.batch_size, clips_dir=None
    )
    load = os.getloadavg()[0]
    started = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.ERROR)
    print(
        f"local Ray cluster of {args.cpus} CPUs started in {time.perf_counter() - started:.1f} s", flush=True
    )
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as tmp:
        work = Path(tmp)
        items = make_batch(work / "videos", args.items, args.videos)
        ray_options = options.model_copy(update={"executor": "ray", "ray_actors": 2})
        timed("warm-up", items[: 4 * args.batch_size], ray_options, RayExecutor(engine), work)
        local = timed("local", items, options, LocalExecutor(engine(options.engine)), work)
        one = timed(
            "ray-1", items, ray_options.model_copy(update={"ray_actors": 1}), RayExecutor(engine), work
        )
        two = timed("ray-2", items, ray_options, RayExecutor(engine), work)
    ray.shutdown()
    batches = -(-args.items // args.batch_size)
    print(
        f"\nCPU: {cpu_model()}, {os.cpu_count()} cores; ray {ray.__version__}; load average "
        f"{load:.1f} before, {os.getloadavg()[0]:.1f} after; {args.items} items "
        f"({args.videos or 'no'} videos), batches of {args.batch_size} ({batches} batches), "
        f"{args.service} s per batch ({batches * args.service:.0f} s of service in all)\n"
    )
    print("| run | wall s | items/s | first record after s | wall s after the first record |")
    print("|---|---:|---:|---:|---:|")
    for name, timing in (("local", local), ("ray, 1 actor", one), ("ray, 2 actors", two)):
        print(
            f"| {name} | {timing.wall_s:.1f} | {args.items / timing.wall_s:.2f} | {timing.first_s:.1f} "
            f"| {timing.steady_s:.1f} |"
        )
    print(f"\nspeedup, 2 actors over 1: {one.wall_s / two.wall_s:.2f}x (target >= 1.8x)")
    overhead = 100 * (one.wall_s - local.wall_s) / local.wall_s
    steady = 100 * (one.steady_s - local.steady_s) / local.steady_s
    print(
        f"Ray's overhead, 1 actor over local: {overhead:+.1f}% of the wall time (target <= 5%); "
        f"{steady:+.1f}% after the first record"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
