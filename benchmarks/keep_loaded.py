"""Start-up of a second batch in one process: ``offload_prompt_upsampler`` False vs True (issue 18).

Run from the repository root on a CUDA machine (one GPU)::

    python benchmarks/keep_loaded.py --model pixtral-12b-random      # defaults below

What it does: generates ``--videos`` 1280x720 clips and ``--requests`` PromptSpecs over them (the
same prompt generator as ``gpu_upsample.py``), then, for each mode, makes one
``WorkflowOrchestrator`` and calls ``upsample_prompts_batch`` on the same specs twice (``force``,
so the second call redoes the work instead of resuming it):

* ``keep``: ``offload_prompt_upsampler=False``: the first call loads the engine, the second reuses it;
* ``offload``: the default: each call loads the engine and frees it after its batch.

Per call it prints the engine load time (measured around the engine registry's load call; 0 when
no load happened), the start-up (from the call until the engine's first ``generate`` begins:
settings, planning, the first batch's preprocessing, the load) and the whole call (which on the GPU
also holds the first call's compilation of the decoding step, when compiled). Answers are exactly
``--max-tokens`` long (engine option ``ignore_eos``, benchmark only), so both calls do the same
work. Writes ``results.json`` into ``--out``.

Both modes run in one process, keep first: the first call of a mode run second finds the libraries
imported already; for a cold first call of each, run them apart (``--modes offload``).

A CPU smoke run (not a figure): ``--model tiny-random --device cpu --requests 4 --max-tokens 8``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_upsample import TimedEngine, make_items

from cosmos_workflow.engines import ENGINES, Engine, EngineConfig, load_engine
from cosmos_workflow.engines.base import EncodedRequest, Generation, SamplingParams
from cosmos_workflow.specs.prompt_spec import PromptSpec, new_spec
from cosmos_workflow.workflow import WorkflowOrchestrator

#: the engine name registered here: the real engine (``--engine``), its load timed
TIMED = "timed"
LOAD_SECONDS: list[float] = []
#: when each ``generate`` call began, over every engine loaded
GENERATE_STARTS: list[float] = []
BASE_ENGINE = ["hf"]


class Stamped(TimedEngine):
    """The loaded engine, noting when each ``generate`` begins; closing it closes the engine."""

    def generate(self, requests: Sequence[EncodedRequest], sampling: SamplingParams) -> list[Generation]:
        synchronize()
        GENERATE_STARTS.append(time.perf_counter())
        return super().generate(requests, sampling)

    def close(self) -> None:
        self.inner.close()


def timed_load(config: EngineConfig) -> Engine:
    """The engine registry's load of ``--engine``, timed."""
    started = time.perf_counter()
    engine = load_engine(config.model_copy(update={"engine": BASE_ENGINE[0]}))
    synchronize()
    LOAD_SECONDS.append(time.perf_counter() - started)
    return Stamped(engine, sync=synchronize)


def synchronize() -> None:
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@dataclass
class Call:
    mode: str
    call: int
    load_s: float
    startup_s: float
    call_s: float


def run_call(
    orchestrator: WorkflowOrchestrator,
    specs: list[PromptSpec],
    mode: str,
    number: int,
    settings: dict[str, Any],
) -> Call:
    loads_before = len(LOAD_SECONDS)
    started = time.perf_counter()
    orchestrator.upsample_prompts_batch(specs, force=True, **settings)
    synchronize()
    ended = time.perf_counter()
    first_generate = min((t for t in GENERATE_STARTS if t > started), default=ended)
    load = sum(LOAD_SECONDS[loads_before:])
    return Call(mode, number, load, first_generate - started, ended - started)


def run_mode(mode: str, specs: list[PromptSpec], work: Path, settings: dict[str, Any]) -> list[Call]:
    keep = {"offload_prompt_upsampler": mode == "offload"}
    with WorkflowOrchestrator(work_dir=work / mode) as orchestrator:
        return [run_call(orchestrator, specs, mode, n, settings | keep) for n in (1, 2)]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="pixtral-12b-random")
    parser.add_argument("--engine", default="hf", help="the engine whose load is timed (hf or vllm)")
    parser.add_argument("--device", default=None, help="e.g. cpu for the smoke run (default: automatic)")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=100)
    parser.add_argument("--batch-size", default="64")
    parser.add_argument("--modes", nargs="+", default=["keep", "offload"], choices=["keep", "offload"])
    parser.add_argument("--engine-option", action="append", default=[], help="KEY=VALUE, repeatable")
    parser.add_argument("--out", type=Path, default=None, help="results.json goes here (default: a temp dir)")
    return parser.parse_args(argv)


def engine_options(pairs: Sequence[str]) -> dict[str, Any]:
    from cosmos_workflow.cli.options import parse_engine_options

    return {"ignore_eos": True} | parse_engine_options(list(pairs))


def table(calls: Sequence[Call]) -> str:
    lines = [
        "| mode | call | engine load s | start-up s (call -> first generate) | call s |",
        "|---|---:|---:|---:|---:|",
    ]
    for c in calls:
        lines.append(f"| {c.mode} | {c.call} | {c.load_s:.2f} | {c.startup_s:.2f} | {c.call_s:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # every ignore_eos answer is cut off on purpose: the per-spec warnings say so, not worth printing
    logging.basicConfig(level=logging.ERROR, format="%(message)s")
    BASE_ENGINE[0] = args.engine
    ENGINES[TIMED] = f"{__name__}:timed_load"
    out = args.out or Path(tempfile.mkdtemp(prefix="keep_loaded-"))
    items = make_items(out / "videos", args.requests, args.videos, 1280, 720)
    specs = [new_spec(i.name, i.prompt, input_video_path=str(i.video_path)) for i in items]
    settings: dict[str, Any] = {
        "engine": TIMED,
        "model": args.model,
        "device": args.device,
        "max_tokens": args.max_tokens,
        "batch_size": args.batch_size if args.batch_size == "auto" else int(args.batch_size),
        "engine_options": engine_options(args.engine_option),
        "clips": False,
        "on_error": "original",
    }
    calls = [call for mode in args.modes for call in run_mode(mode, specs, out / "work", settings)]
    print(
        f"model {args.model}, engine {args.engine}, {args.requests} requests, {args.max_tokens}-token answers"
    )
    print(table(calls))
    (out / "results.json").write_text(json.dumps([asdict(c) for c in calls], indent=2))
    print(f"results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
