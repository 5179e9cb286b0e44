"""Preprocessing of prompt variants: each request decoding its video, against frames decoded once
per run for every request that wants them (``media.SharedFrames``), side by side in one run.

Run from the repository root::

    .venv/bin/python benchmarks/variants_bench.py            # 1,024 requests over 16 clips

It makes ``--clips`` textured 1280x720 H.264 clips (5 s at 24 fps), ``--requests`` items spread
over them (different prompts, as a spec's variants or the GPU benchmarks' workload), plans them as
the pipeline does (480 px, two frames), then times the runner's preprocessing stage alone
(``runner.prepare_job`` in ``--workers`` threads: decode, resize, write the clip, encode the
tokens with pixel values) three ways, alternating, ``--repeats`` times each: each request decoding
its video; frames decoded once (``SharedFrames``) but each request's images normalised again (the
tokenizer's kept images switched off: its private ``_images`` budget set to 0 for that run); both
once. Prints a markdown table: seconds per run (median), requests per second, the speed-up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.media_bench import make_clip
from cosmos_workflow.api import plan_job
from cosmos_workflow.config import RunOptions
from cosmos_workflow.engines import EngineConfig
from cosmos_workflow.executors import KeyedItem
from cosmos_workflow.families import family_for
from cosmos_workflow.media import SharedFrames
from cosmos_workflow.planner import PlanSettings
from cosmos_workflow.runner import Job, prepare_job, request_key
from cosmos_workflow.specs.batch import BatchItem

WORDS = [
    "a",
    "red",
    "car",
    "turns",
    "left",
    "at",
    "the",
    "light",
    "while",
    "rain",
    "falls",
    "on",
    "the",
    "busy",
    "street",
    "at",
    "dusk",
]


def items_over(clips: list[Path], requests: int) -> list[BatchItem]:
    """``requests`` items, each clip's in turn, each with a prompt of its own."""
    return [
        BatchItem(
            name=f"req{n:04d}",
            prompt=" ".join(WORDS[(n + k) % len(WORDS)] for k in range(8 + n % 9)),
            video_path=clips[n % len(clips)],
        )
        for n in range(requests)
    ]


def prepare_all(
    jobs: list[Job],
    options: RunOptions,
    workers: int,
    shared: SharedFrames | None,
    *,
    images_once: bool = True,
) -> float:
    tokenizer = family_for(options.engine.model, options.plan.system_prompt)
    kept = tokenizer.tokenizer._images  # type: ignore[attr-defined]
    budget, kept.max_bytes = kept.max_bytes, kept.max_bytes if images_once else 0
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        done = list(pool.map(lambda job: prepare_job(job, tokenizer, options, shared=shared), jobs))
    seconds = time.perf_counter() - started
    kept.max_bytes = budget
    failed = [j.failure for j in done if j.failure]
    if failed:
        raise SystemExit(f"preprocessing failed: {failed[0]}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1024)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--workers", type=int, default=8, help="preprocessing threads (the GPU scripts' 8)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        clips = [make_clip(root / f"clip{n:02d}.mp4", 1280, 720, seed=n) for n in range(args.clips)]
        items = items_over(clips, args.requests)
        options = RunOptions(
            engine=EngineConfig(engine="fake", model="pixtral"),
            plan=PlanSettings(max_resolution=480),
            clips_dir=root / "clips",
        )
        tokenizer = family_for(options.engine.model, options.plan.system_prompt)

        def planned() -> list[Job]:
            return [plan_job(KeyedItem(i, request_key(i, options)), options.plan, tokenizer) for i in items]

        prepare_all(planned()[: args.workers], options, args.workers, None)  # imports, first decodes
        ways = {
            "each request decodes": lambda: prepare_all(planned(), options, args.workers, None),
            "frames decoded once, images normalised each time": lambda: prepare_all(
                planned(), options, args.workers, SharedFrames(), images_once=False
            ),
            "frames decoded once, images normalised once": lambda: prepare_all(
                planned(), options, args.workers, SharedFrames()
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.repeats):
            for name, way in ways.items():
                times[name].append(way())

    base = statistics.median(times["each request decodes"])
    print(
        f"{args.requests} requests over {args.clips} clips of 1280x720, {args.workers} threads, "
        f"median of {args.repeats}\n"
    )
    print("| preprocessing | seconds | requests/s | speed-up |\n|---|---:|---:|---:|")
    for name, runs in times.items():
        median = statistics.median(runs)
        print(f"| {name} | {median:.2f} | {args.requests / median:.0f} | {base / median:.2f}x |")


if __name__ == "__main__":
    main()
