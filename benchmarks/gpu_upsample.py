"""GPU upsampling benchmark (issue 7): the ``hf`` engine on Pixtral-12B's full-size architecture.

Run from the repository root on a CUDA machine (one GPU)::

    python benchmarks/gpu_upsample.py --out /tmp/bench      # defaults below

What it does, in one process, on one loaded model (random bf16 weights built on the GPU):

1. generates ``--videos`` 1280x720 H.264 clips and ``--requests`` items with prompts of 10-40
   words; every item is planned by the budget at default settings (2 frames, 480-px long side:
   480x272, about 1060-1110 prompt tokens) and answered with exactly ``--max-tokens`` tokens
   (engine option ``ignore_eos``, a benchmark-only switch: random weights would otherwise stop at
   random places);
2. **baseline**, the stock Cosmos way: one request at a time (batch 1, dynamic KV cache, stock SDPA
   attention, no compilation) on the first ``--baseline-requests`` items. Stock Cosmos also sent
   full-size frames (4684 tokens, over its 4096 limit); the baseline uses the same planned 480x272
   requests as the fast run, so the comparison isolates batching and the engine's speed work;
3. **warm-up**: one batch through the fast engine (compiles the decoding step, records CUDA graphs);
4. **main**: every request through the fast engine (static KV cache, compiled decoding, GQA decode
   attention, vision tower in chunks, length-sorted batches of ``--batch-size``, preprocessing in
   ``--workers`` threads ahead of the GPU), all through the real runner (``api.upsample``);
5. **prefill**: one batch of the main run again with a 1-token answer, to split a batch's time
   into prefill and decoding steps;
6. optional **ablations** (``--ablations``): decoding-step time of one batch under other settings.

It prints a summary and writes ``results.json`` (every figure) into ``--out``. The roofline uses
the datasheet's 3.35 TB/s HBM and ~790 TFLOP/s dense bf16 (H100 SXM); the copy bandwidth and
matrix rate measured on the card are reported beside it.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cosmos_workflow.api import upsample
from cosmos_workflow.budget import PlanSettings
from cosmos_workflow.config import RunOptions
from cosmos_workflow.engines.base import EncodedRequest, Engine, EngineConfig, Generation, SamplingParams
from cosmos_workflow.executors import LocalExecutor
from cosmos_workflow.specs.batch import BatchItem

HBM_BYTES_PER_S = 3.35e12
PEAK_FLOPS = 790e12
MODEL = "pixtral-12b-random"
SCENES = (
    "a red car turns left at a busy crossing while pedestrians wait under umbrellas in the rain "
    "the camera follows a cyclist along a river path at sunset with long shadows on the ground "
    "robot arm picks up a blue box from a conveyor belt in a bright warehouse full of shelves "
    "drone view over a snowy forest road where a truck drives slowly past parked vehicles"
)
WORDS = tuple(SCENES.split())
STOCK_OPTIONS: dict[str, str | int | float | bool | None] = {
    "static_cache": False,
    "batch_bucket": 1,
    "gqa_decode": False,
    "compile": False,
    "ignore_eos": True,
}

log = logging.getLogger("gpu_upsample")


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def make_prompt(rng: np.random.Generator) -> str:
    """A prompt of 10 to 40 words, like a user's short scene description."""
    count = int(rng.integers(10, 41))
    return " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), count)).capitalize() + "."


def make_items(folder: Path, requests: int, videos: int, width: int, height: int) -> list[BatchItem]:
    """``requests`` items spread over ``videos`` generated clips (4 frames each; 2 are used)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.videos import make_video

    folder.mkdir(parents=True, exist_ok=True)
    clips = [make_video(folder / f"clip{i:03d}.mp4", width, height, frames=4) for i in range(videos)]
    rng = np.random.default_rng(7)
    return [
        BatchItem(name=f"req{i:04d}", prompt=make_prompt(rng), video_path=clips[i % videos])
        for i in range(requests)
    ]


def renamed(items: Sequence[BatchItem], prefix: str) -> list[BatchItem]:
    """The same requests under other names (their journal keys differ, so nothing is reused)."""
    return [item.model_copy(update={"name": f"{prefix}{item.name}"}) for item in items]


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


@dataclass
class Call:
    requests: int
    prompt_tokens: int
    longest: int
    completion_tokens: int
    seconds: float


class TimedEngine(Engine):
    """Wraps an engine: times every ``generate`` call (GPU synchronised) and keeps the last batch."""

    def __init__(self, inner: Engine, sync: Any = None) -> None:
        super().__init__(inner.config)
        self.inner = inner
        self.name = inner.name
        self.sync = sync
        self.calls: list[Call] = []
        self.last_batch: list[EncodedRequest] = []

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    def generate(self, requests: Sequence[EncodedRequest], sampling: SamplingParams) -> list[Generation]:
        if self.sync:
            self.sync()
        started = time.perf_counter()
        results = self.inner.generate(requests, sampling)
        if self.sync:
            self.sync()
        elapsed = time.perf_counter() - started
        self.calls.append(
            Call(
                requests=len(requests),
                prompt_tokens=sum(r.num_tokens for r in requests),
                longest=max(r.num_tokens for r in requests),
                completion_tokens=sum(g.completion_tokens for g in results),
                seconds=elapsed,
            )
        )
        self.last_batch = list(requests)
        log.info("generate: %d requests, %.2f s", len(requests), elapsed)
        return results

    def close(self) -> None:
        """The wrapped engine belongs to the caller."""


def run_phase(
    name: str,
    engine: Engine,
    items: Sequence[BatchItem],
    *,
    batch_size: int,
    max_tokens: int,
    workers: int,
    workdir: Path,
    sync: Any,
) -> dict[str, Any]:
    """Items through the real runner with ``engine``; wall time, engine time, per-call detail."""
    timed = TimedEngine(inner=engine, sync=sync)
    options = RunOptions(
        plan=PlanSettings(max_tokens=max_tokens),
        sampling=SamplingParams(max_tokens=max_tokens),
        engine=engine.config,
        batch_size=batch_size,
        workers=workers,
        force=True,
    )
    started = time.perf_counter()
    result = upsample(items, options, output=workdir / f"{name}.json", executor=LocalExecutor(timed))
    wall = time.perf_counter() - started
    completions = [r.completion_tokens for r in result.records]
    engine_s = sum(c.seconds for c in timed.calls)
    phase: dict[str, Any] = {
        "requests": len(items),
        "batch_size": batch_size,
        "wall_s": wall,
        "engine_s": engine_s,
        "requests_per_s": len(items) / wall,
        "requests_per_engine_s": len(items) / engine_s if engine_s else None,
        "completion_tokens": {"min": min(completions), "max": max(completions)},
        "prompt_tokens": _stats([r.prompt_tokens for r in result.records]),
        "frame_sizes": sorted({f"{r.width}x{r.height}" for r in result.records}),
        "statuses": dict(result.counts),
        "calls": [vars(c) for c in timed.calls],
    }
    print(
        f"[{name}] {len(items)} requests, batch {batch_size}: {wall:.1f} s wall "
        f"({phase['requests_per_s']:.3f} req/s), engine {engine_s:.1f} s, answers "
        f"{min(completions)}-{max(completions)} tokens",
        flush=True,
    )
    phase["_last_batch"] = timed.last_batch
    return phase


def _stats(values: Sequence[int]) -> dict[str, float]:
    return {"min": min(values), "mean": statistics.fmean(values), "max": max(values)}


# --------------------------------------------------------------------------------------------
# Device facts and the roofline
# --------------------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    import os

    import torch
    import transformers

    facts: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu_model(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        free, total = torch.cuda.mem_get_info(0)
        facts |= {
            "gpu": props.name,
            "gpu_memory_gib": total / 2**30,
            "gpu_free_gib_at_start": free / 2**30,
            "sm_count": props.multi_processor_count,
        }
    return facts


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure_ceilings() -> dict[str, float]:
    """The card's copy bandwidth (bytes read + written) and bf16 matrix rate, median of 10."""
    import torch

    def timed(fn: Any, repeats: int = 10) -> float:
        fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(float(start.elapsed_time(end)) / 1000)
        return statistics.median(times)

    copy_s = timed(_copier(2 * 2**30))
    n = 8192
    mm_s = timed(_multiplier(n))
    torch.cuda.empty_cache()
    return {"copy_bytes_per_s": 2 * 2 * 2**30 / copy_s, "bf16_matmul_flops": 2 * n**3 / mm_s}


def _copier(nbytes: int) -> Any:
    import torch

    source = torch.randn(nbytes // 2, dtype=torch.bfloat16, device="cuda")
    target = torch.empty_like(source)
    return lambda: target.copy_(source)


def _multiplier(n: int) -> Any:
    import torch

    a = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    return lambda: a @ b


@dataclass(frozen=True)
class Shape:
    """What the roofline needs from the model."""

    decode_weight_bytes: int  # read once per decoding step: decoder layers, final norm, lm_head
    layer_linear_params: int  # multiply-adds per prompt token in the decoder's linear layers
    kv_bytes_per_token: int
    layers: int
    q_width: int  # query heads x head dim
    vision_linear_params: int
    vision_layers: int
    vision_width: int
    patch: int

    @classmethod
    def of(cls, model: Any) -> Shape:
        text, vision = model.config.text_config, model.config.vision_config
        language = model.model.language_model
        embed = language.embed_tokens.weight.numel()
        lm_head = model.lm_head.weight.numel()
        language_params = sum(p.numel() for p in language.parameters())
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        tower = model.model.vision_tower
        projector = sum(p.numel() for p in model.model.multi_modal_projector.parameters())
        return cls(
            decode_weight_bytes=2 * (language_params - embed + lm_head),
            layer_linear_params=language_params - embed,
            kv_bytes_per_token=2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * 2,
            layers=text.num_hidden_layers,
            q_width=text.num_attention_heads * head_dim,
            vision_linear_params=sum(p.numel() for p in tower.parameters()) + projector,
            vision_layers=vision.num_hidden_layers,
            vision_width=vision.hidden_size,
            patch=vision.patch_size,
        )


def roofline(
    shape: Shape, prompts: Sequence[int], patches_per_request: int, max_tokens: int
) -> dict[str, float]:
    """Ideal seconds for one batch: prefill FLOPs at peak, decoding bytes at HBM bandwidth.

    Prefill: 2 FLOPs per weight per prompt token in the decoder, causal attention (QK^T and PV),
    the vision tower and projector per patch with per-image attention. Decoding: every step reads
    the decoder's weights once plus each request's KV cache as it stands (prompt + tokens so far);
    only real tokens count (no padding, no static-cache slack).
    """
    prefill_flops = 0.0
    for tokens in prompts:
        prefill_flops += 2 * shape.layer_linear_params * tokens
        prefill_flops += 2 * shape.layers * tokens * tokens * shape.q_width  # causal: half of 4 L^2 d
        prefill_flops += 2 * shape.vision_linear_params * patches_per_request
        per_image = patches_per_request // 2 or patches_per_request
        prefill_flops += 2 * 4 * shape.vision_layers * per_image * per_image * shape.vision_width
    kv_bytes = sum(
        (tokens + (max_tokens - 1) / 2) * max_tokens * shape.kv_bytes_per_token for tokens in prompts
    )
    decode_bytes = max_tokens * shape.decode_weight_bytes + kv_bytes
    prefill_s = prefill_flops / PEAK_FLOPS
    decode_s = decode_bytes / HBM_BYTES_PER_S
    return {
        "prefill_flops": prefill_flops,
        "prefill_s": prefill_s,
        "decode_bytes": decode_bytes,
        "decode_s": decode_s,
        "decode_step_s": decode_s / max_tokens,
        "batch_s": prefill_s + decode_s,
        "requests_per_s": len(prompts) / (prefill_s + decode_s),
    }


# --------------------------------------------------------------------------------------------
# Phases that call the engine directly
# --------------------------------------------------------------------------------------------


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_generate(engine: Engine, batch: Sequence[EncodedRequest], max_tokens: int) -> float:
    synchronize()
    started = time.perf_counter()
    engine.generate(batch, SamplingParams(max_tokens=max_tokens))
    synchronize()
    return time.perf_counter() - started


def decode_step(engine: Any, batch: Sequence[EncodedRequest], tokens: int) -> dict[str, Any]:
    """Seconds per decoding step: (time with ``tokens`` - time with 1) / (tokens - 1).

    A compiled variant is run once first (compilation, CUDA graph recording) and not timed.
    """
    figures: dict[str, Any] = {"attention": engine._model.config.text_config._attn_implementation}
    if engine.options.static_cache and engine.options.compile:
        figures["first_call_s"] = time_generate(engine, batch, tokens)
    full = time_generate(engine, batch, tokens)
    prefill = time_generate(engine, batch, 1)
    return figures | {"call_s": full, "prefill_s": prefill, "step_s": (full - prefill) / (tokens - 1)}


def profile_decode(engine: Any, batch: Sequence[EncodedRequest], path: Path) -> dict[str, Any]:
    """Kernel times of 6 decoding steps (after 4 unrecorded ones) of one batch; the table goes to ``path``.

    Calls ``generate`` directly so that a logits processor can step the profiler once per token.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule
    from transformers import LogitsProcessor, LogitsProcessorList

    from cosmos_workflow.engines.hf import PAD_ID, hf_batch_tensors

    model = engine._model
    tensors = hf_batch_tensors(batch, PAD_ID, bucket=engine.options.batch_bucket)
    inputs = {name: tensor.to(model.device) for name, tensor in tensors.items()}
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    activities = (
        [ProfilerActivity.CPU, ProfilerActivity.CUDA] if torch.cuda.is_available() else [ProfilerActivity.CPU]
    )
    with profile(activities=activities, schedule=schedule(wait=2, warmup=2, active=6, repeat=1)) as prof:

        class Step(LogitsProcessor):
            def __call__(self, input_ids: Any, scores: Any) -> Any:
                prof.step()
                return scores

        with torch.inference_mode():
            model.generate(
                **inputs,
                **engine._generate_kwargs(SamplingParams(max_tokens=12)),
                logits_processor=LogitsProcessorList([Step()]),
            )
    sort = "cuda_time_total" if torch.cuda.is_available() else "cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=25, max_name_column_width=90)
    path.write_text(table)
    print(table, flush=True)
    events = prof.key_averages()
    device_us = sum(getattr(e, "self_device_time_total", 0) for e in events)
    return {"steps": 6, "device_ms_per_step": device_us / 6 / 1000, "table": str(path)}


ABLATIONS: dict[str, dict[str, str | int | float | bool | None]] = {
    "dynamic_eager_sdpa": {"static_cache": False, "compile": False, "gqa_decode": False},
    "static_eager_sdpa": {"static_cache": True, "compile": False, "gqa_decode": False},
    "static_eager_gqa": {"static_cache": True, "compile": False, "gqa_decode": True},
    "static_compiled_sdpa": {"static_cache": True, "compile": True, "gqa_decode": False},
    "static_compiled_gqa": {"static_cache": True, "compile": True, "gqa_decode": True},
}


def ablations(
    engine: Any, batch: Sequence[EncodedRequest], tokens: int, variants: Sequence[str]
) -> dict[str, Any]:
    """Decoding-step time of one batch under each setting (each may compile first)."""
    results: dict[str, Any] = {}
    for name in variants:
        variant = engine.with_options({**ABLATIONS[name], "ignore_eos": True})
        try:
            results[name] = decode_step(variant, batch, tokens)
        except Exception as exc:  # keep the other variants' figures
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        print(f"[ablation {name}] batch {len(batch)}: {results[name]}", flush=True)
    return results


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--baseline-requests", type=int, default=8, help="0 skips the baseline")
    parser.add_argument("--batch-size", default="128", help="an integer, or 'auto' (from free GPU memory)")
    parser.add_argument("--bucket", type=int, default=128, help="prompt length padded to a multiple of this")
    parser.add_argument("--max-tokens", type=int, default=300)
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--workers", type=int, default=8, help="preprocessing threads")
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--ablations", default="", help=f"comma-separated, of: {', '.join(ABLATIONS)}")
    parser.add_argument("--ablation-batch", type=int, default=0, help="0: the main batch size")
    parser.add_argument("--ablation-tokens", type=int, default=64)
    parser.add_argument("--profile", action="store_true", help="profile 6 decoding steps of one main batch")
    parser.add_argument("--model", default=MODEL, help="tiny-random runs the script's logic on a CPU")
    parser.add_argument("--out", type=Path, default=Path("gpu_bench_out"))
    parser.add_argument(
        "--write-prompts",
        type=Path,
        help="only write a prompts file of --requests items (videos under --out) for the CLI, and exit",
    )
    return parser.parse_args(argv)


class Results(dict[str, Any]):
    """Every figure, saved after each phase so a run cut short still leaves what it measured."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def save(self) -> None:
        clean = {k: _public(v) for k, v in self.items()}
        self.path.write_text(json.dumps(clean, indent=1, default=str))


def _public(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if not str(k).startswith("_")}
    return value


def summary(results: Results) -> str:
    """One line with the figures that matter (the reply of a remote run shows only the end)."""
    main_run, ideal, decode = results["main"], results["roofline_batch"], results["decode"]
    baseline = results.get("baseline", {}).get("requests_per_s", float("nan"))
    return (
        f"SUMMARY {results['environment'].get('gpu', 'cpu')}: main {main_run['requests_per_s']:.2f} req/s "
        f"(engine only {main_run['requests_per_engine_s']:.2f}), baseline {baseline:.3f} req/s, "
        f"speedup {results.get('speedup_vs_baseline', float('nan')):.1f}x; "
        f"batch {results['prefill']['requests']}: {decode['batch_s']:.2f} s, "
        f"prefill {results['prefill']['seconds']:.2f} s, "
        f"step {1000 * decode['step_s']:.1f} ms (roofline {1000 * ideal['decode_step_s']:.1f} ms); "
        f"roofline {ideal['requests_per_s']:.2f} req/s, {100 * results['fraction_of_roofline']:.0f}% of it "
        f"per batch, {100 * results['roofline_run']['fraction_of_wall']:.0f}% over the run; "
        f"peak allocated {main_run.get('peak_allocated_gib', float('nan')):.1f} GiB"
    )


def write_prompts(path: Path, items: Sequence[BatchItem]) -> None:
    """The items as a prompts file for ``cosmos-workflow upsample-prompts`` (e.g. under torchrun)."""
    rows = [{"name": i.name, "prompt": i.prompt, "video_path": str(i.video_path)} for i in items]
    path.write_text(json.dumps(rows, indent=1))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.write_prompts:
        write_prompts(
            args.write_prompts, make_items(args.out / "videos", args.requests, args.videos, 1280, 720)
        )
        return 0
    import torch

    from cosmos_workflow.engines import load_engine
    from cosmos_workflow.engines.hf import HFEngine

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    results = Results(args.out / "results.json")
    results["command"] = " ".join(sys.argv)
    results["environment"] = environment()
    print(json.dumps(results["environment"]), flush=True)
    if cuda:
        results["ceilings"] = measure_ceilings()
        print(json.dumps(results["ceilings"]), flush=True)
    items = make_items(args.out / "videos", args.requests, args.videos, 1280, 720)

    started = time.perf_counter()
    engine = load_engine(EngineConfig(engine="hf", model=args.model, options=STOCK_OPTIONS))
    synchronize()
    assert isinstance(engine, HFEngine)
    results["build"] = {
        "seconds": time.perf_counter() - started,
        "parameters": sum(p.numel() for p in engine._model.parameters()),
        "allocated_gib": torch.cuda.memory_allocated() / 2**30 if cuda else None,
    }
    print(f"[build] {results['build']}", flush=True)
    shape = Shape.of(engine._model)
    results["shape"] = vars(shape)
    common: dict[str, Any] = {
        "max_tokens": args.max_tokens,
        "workers": args.workers,
        "workdir": args.out,
        "sync": synchronize,
    }

    if args.baseline_requests:
        # the first request on a fresh process pays CUDA/cuBLAS start-up: keep it out of the baseline
        results["baseline_warmup"] = run_phase(
            "baseline-warmup", engine, renamed(items[:1], "bw-"), batch_size=1, **common
        )
        results["baseline"] = run_phase(
            "baseline", engine, items[: args.baseline_requests], batch_size=1, **common
        )
        results.save()

    fast = engine.with_options(
        {
            "static_cache": True,
            "batch_bucket": args.bucket,
            "gqa_decode": True,
            "compile": True,
            "ignore_eos": True,
        }
    )
    longest = max(int(results.get("baseline", {}).get("prompt_tokens", {}).get("max", 1100)), 1100)
    auto = fast.max_batch_size(longest, args.max_tokens)
    results["auto_batch_size"] = {"prompt_tokens": longest, "estimate": auto}
    batch = max(1, min(auto, args.requests) // 8 * 8) if args.batch_size == "auto" else int(args.batch_size)
    print(f"[batch] free-memory estimate {auto} for {longest}-token prompts; using {batch}", flush=True)

    if not args.no_warmup:
        results["warmup"] = run_phase(
            "warmup", fast, renamed(items[:batch], "warm-"), batch_size=batch, **common
        )
        results.save()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    main_run = run_phase("main", fast, items, batch_size=batch, **common)
    results["main"] = main_run
    if cuda:
        main_run["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
        main_run["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
        main_run["card_gib"] = torch.cuda.mem_get_info()[1] / 2**30
    results.save()

    last: list[EncodedRequest] = main_run["_last_batch"]
    prefill_s = time_generate(fast, last, 1)
    prompt_tokens = sum(r.num_tokens for r in last)
    padded = len(last) * -(-max(r.num_tokens for r in last) // args.bucket) * args.bucket
    results["prefill"] = {
        "requests": len(last),
        "prompt_tokens": prompt_tokens,
        "padded_tokens": padded,
        "seconds": prefill_s,
        "tokens_per_s": prompt_tokens / prefill_s,
    }
    same_size = [c["seconds"] for c in main_run["calls"] if c["requests"] == len(last)]
    batch_s = statistics.median(same_size)
    step_s = (batch_s - prefill_s) / (args.max_tokens - 1)
    patches = 2 * (272 // 16) * (480 // 16)
    ideal = roofline(shape, [r.num_tokens for r in last], patches, args.max_tokens)
    results["decode"] = {"batch_s": batch_s, "step_s": step_s, "roofline_step_s": ideal["decode_step_s"]}
    results["roofline_batch"] = ideal
    results["fraction_of_roofline"] = ideal["batch_s"] / batch_s
    ideal_run_s = sum(
        roofline(shape, [c["prompt_tokens"] // c["requests"]] * c["requests"], patches, args.max_tokens)[
            "batch_s"
        ]
        for c in main_run["calls"]
    )
    results["roofline_run"] = {
        "seconds": ideal_run_s,
        "requests_per_s": args.requests / ideal_run_s,
        "fraction_of_wall": ideal_run_s / main_run["wall_s"],
        "fraction_of_engine": ideal_run_s / main_run["engine_s"],
    }
    if "baseline" in results:
        results["speedup_vs_baseline"] = main_run["requests_per_s"] / results["baseline"]["requests_per_s"]
    results.save()

    if args.profile:
        results["profile"] = profile_decode(fast, last, args.out / "decode_profile.txt")
        results.save()

    if args.ablations:
        size = args.ablation_batch or len(last)
        group = (last * (size // len(last) + 1))[:size]
        results["ablations"] = ablations(fast, group, args.ablation_tokens, args.ablations.split(","))
        results.save()

    print(
        json.dumps({k: results[k] for k in ("prefill", "decode", "roofline_batch", "roofline_run")}, indent=1)
    )
    print(summary(results), flush=True)
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
