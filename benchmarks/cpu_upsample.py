"""CPU upsampling benchmark: the tiny random model through the real runner, so a slowdown in the
pipeline (planning, preprocessing, batching, the ``hf`` engine) shows without a GPU.

Run from the repository root (under a minute on 2 cores)::

    .venv/bin/python benchmarks/cpu_upsample.py

It generates 1280x720 clips and ``--requests`` items with prompts of 10-40 words (the same
generator as ``gpu_upsample.py``), plans them at default settings (2 frames, 480x272, about 1090
prompt tokens) and answers each with exactly ``--max-tokens`` tokens (engine option
``ignore_eos``, benchmark only). One loaded tiny model serves every variant:

* ``batch 1``: one request at a time, dynamic KV cache (the stock Cosmos way);
* ``batch 8``: length-sorted batches of 8, dynamic KV cache (the CPU default);
* ``batch 8 static``: the same with the GPU defaults' static KV cache and 128-token buckets
  (transformers compiles only on CUDA, so this measures the cache alone).

Prints a markdown table: wall seconds, requests/s, engine seconds, speedup over batch 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_upsample import cpu_model, make_items, run_phase

from cosmos_workflow.engines import load_engine
from cosmos_workflow.engines.base import EngineConfig
from cosmos_workflow.engines.hf import HFEngine

VARIANTS: dict[str, tuple[int, dict[str, str | int | float | bool | None]]] = {
    "batch 1": (1, {"static_cache": False, "batch_bucket": 1}),
    "batch 8": (8, {"static_cache": False, "batch_bucket": 1}),
    "batch 8 static": (8, {"static_cache": True, "batch_bucket": 128}),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=100)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="preprocessing threads")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="cpu-bench-") as tmp:
        work = Path(tmp)
        items = make_items(work / "videos", args.requests, args.videos, 1280, 720)
        started = time.perf_counter()
        engine = load_engine(EngineConfig(engine="hf", model="tiny-random", device="cpu"))
        assert isinstance(engine, HFEngine)
        print(f"tiny model loaded in {time.perf_counter() - started:.1f} s", flush=True)
        common: dict[str, Any] = {"max_tokens": args.max_tokens, "workers": args.workers, "workdir": work}
        phases = {}
        for name, (batch, options) in VARIANTS.items():
            variant = engine.with_options({**options, "ignore_eos": True})
            phases[name] = run_phase(
                name.replace(" ", "-"), variant, items, batch_size=batch, sync=None, **common
            )
        engine.close()
    first = phases["batch 1"]["requests_per_s"]
    print(
        f"\nCPU: {cpu_model()}, {torch.get_num_threads()} torch threads; torch {torch.__version__}; "
        f"{args.requests} requests, {phases['batch 1']['prompt_tokens']['mean']:.0f} prompt tokens "
        f"on average, {args.max_tokens}-token answers\n"
    )
    print("| variant | wall s | requests/s | engine s | speedup vs batch 1 |")
    print("|---|---:|---:|---:|---:|")
    for name, phase in phases.items():
        print(
            f"| {name} | {phase['wall_s']:.1f} | {phase['requests_per_s']:.2f} | {phase['engine_s']:.1f} | "
            f"{phase['requests_per_s'] / first:.1f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
