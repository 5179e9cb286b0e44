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

It prints a summary and writes ``results.json`` (every figure) into ``--out``. The roofline takes,
per phase, the larger of compute time and memory time (``roofline``), from the datasheet figures of
the card in use (HBM bandwidth and dense bf16 rate: H200 4.8 TB/s, H100 3.35 TB/s, both 989
TFLOP/s) and from the copy bandwidth and matrix rate measured on the card at the start; both are
reported.

Start-up: the time from process start to the model being built and to the first fast batch being
out (it includes compiling the decoding step, or loading it from the compile cache: pass
``--compile-cache DIR`` with an empty DIR for a cold start).
"""

from __future__ import annotations

import time

PROCESS_START = time.perf_counter()  # before the heavy imports: start-up is measured from here

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from cosmos_workflow.api import upsample  # noqa: E402
from cosmos_workflow.config import RunOptions  # noqa: E402
from cosmos_workflow.engines.base import (  # noqa: E402
    EncodedRequest,
    Engine,
    EngineConfig,
    Generation,
    SamplingParams,
)
from cosmos_workflow.executors import LocalExecutor  # noqa: E402
from cosmos_workflow.planner import PlanSettings  # noqa: E402
from cosmos_workflow.runner import evened_batch_size  # noqa: E402
from cosmos_workflow.specs.batch import BatchItem  # noqa: E402


@dataclass(frozen=True)
class Ceilings:
    """A card's memory bandwidth (bytes/s) and dense bf16 rate (FLOP/s)."""

    bytes_per_s: float
    flops: float


#: datasheet figures (SXM parts; dense bf16 without sparsity), matched against the CUDA device name
DATASHEETS = {"H200": Ceilings(4.8e12, 989e12), "H100": Ceilings(3.35e12, 989e12)}
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
    """``requests`` items spread over ``videos`` generated clips (4 frames each; 2 are used), each
    clip its own picture (a block texture of its own): requests share frames only where they share
    a clip (before 2026-12-05 every clip of a size was the same picture, which vLLM's prefix cache
    shared across every request)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.videos import make_video

    folder.mkdir(parents=True, exist_ok=True)
    clips = [
        make_video(folder / f"clip{i:03d}.mp4", width, height, frames=4, texture=i) for i in range(videos)
    ]
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
        "output_tokens_per_s": sum(completions) / wall,
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


def datasheet(gpu: str) -> tuple[str, Ceilings]:
    """The datasheet entry for the GPU named ``gpu`` (the H100's when the card is not listed)."""
    for name, ceilings in DATASHEETS.items():
        if name in gpu:
            return name, ceilings
    return "H100 (card not listed)", DATASHEETS["H100"]


def roofline(
    shape: Shape,
    prompts: Sequence[int],
    patches_per_request: int,
    max_tokens: int,
    ceilings: Ceilings,
    *,
    prefix: int = 0,
    groups: int = 0,
) -> dict[str, float]:
    """Ideal seconds for one batch: each phase takes the larger of its compute time (FLOPs at
    ``ceilings.flops``) and its memory time (bytes at ``ceilings.bytes_per_s``).

    Prefill FLOPs: 2 per weight per prompt token in the decoder, causal attention (QK^T and PV),
    the vision tower and projector per patch with per-image attention; prefill bytes: the weights
    read once and the KV cache written once. Decoding FLOPs: 2 per weight (the lm_head included)
    per request per step, plus attention over each request's cache as it stands; decoding bytes:
    every step reads the decoder's weights once plus each request's KV cache (prompt + tokens so
    far). Only real tokens count (no padding, no static-cache slack). At batch 256 a decoding step
    does about 6 TFLOP besides moving about 75 GB: counting bytes alone hides the compute.

    ``groups`` > 0: the requests share their first ``prefix`` tokens (their frames) in that many
    groups, as vLLM's prefix cache and the hf engine's ``share_prefix`` use them: a group's prefix
    (and its pictures) is prefilled once, and written and read from the cache once per step; each
    request's queries still attend to the whole prefix (its FLOPs are unchanged).
    """
    shared = prefix if groups else 0  # the tokens each request does not prefill itself
    own = [tokens - shared for tokens in prompts]
    firsts = groups or len(prompts)  # pictures encoded: once a group, else once a request
    layer_flops, attention_flops = 2 * shape.layer_linear_params, 2 * shape.layers * shape.q_width
    prefill_flops = sum(layer_flops * t for t in own)
    # causal attention: half of 4 L^2 d for a whole prompt; a text after a shared prefix does L^2 - P^2
    prefill_flops += sum(attention_flops * (t * t - shared * shared) for t in prompts)
    prefill_flops += groups * (layer_flops * prefix + attention_flops * prefix * prefix)
    per_image = patches_per_request // 2 or patches_per_request
    vision = 2 * shape.vision_linear_params * patches_per_request
    vision += 2 * 4 * shape.vision_layers * per_image * per_image * shape.vision_width
    prefill_flops += firsts * vision
    stored = sum(own) + groups * prefix  # the KV cache's tokens, each prefix once
    prefill_bytes = shape.decode_weight_bytes + stored * shape.kv_bytes_per_token
    # the cache each request attends to, summed over the steps: (prompt + (max_tokens - 1) / 2) per step
    attended = sum((tokens + (max_tokens - 1) / 2) * max_tokens for tokens in prompts)
    # ... of which a shared prefix is read once per group per step
    read = sum((t + (max_tokens - 1) / 2) * max_tokens for t in own) + groups * prefix * max_tokens
    decode_bytes = max_tokens * shape.decode_weight_bytes + read * shape.kv_bytes_per_token
    decode_weights = shape.decode_weight_bytes // 2  # bf16: the decoder's layers and the lm_head
    decode_flops = 2 * decode_weights * len(prompts) * max_tokens
    decode_flops += 4 * shape.layers * attended * shape.q_width  # QK^T and PV per cached token
    phases = {
        "prefill_compute_s": prefill_flops / ceilings.flops,
        "prefill_memory_s": prefill_bytes / ceilings.bytes_per_s,
        "decode_compute_s": decode_flops / ceilings.flops,
        "decode_memory_s": decode_bytes / ceilings.bytes_per_s,
    }
    prefill_s = max(phases["prefill_compute_s"], phases["prefill_memory_s"])
    decode_s = max(phases["decode_compute_s"], phases["decode_memory_s"])
    return {
        "prefill_flops": prefill_flops,
        "prefill_bytes": prefill_bytes,
        "prefill_s": prefill_s,
        "decode_flops": decode_flops,
        "decode_bytes": decode_bytes,
        "decode_s": decode_s,
        "decode_step_s": decode_s / max_tokens,
        "decode_bound": "compute" if phases["decode_compute_s"] > phases["decode_memory_s"] else "memory",
        **phases,
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


def profile_decode(
    engine: Any, batch: Sequence[EncodedRequest], out: Path, steps: int = 16
) -> dict[str, Any]:
    """GPU time of one decoding step, kernel by kernel, and of the prefill.

    Two profiled calls of the batch through the engine (whichever loop it uses): one with a
    1-token answer (the prefill) and one with ``steps + 1`` tokens; a step is their difference
    divided by ``steps``. Each call runs once unprofiled first. The tables go to ``out``. A step's
    GPU time against its wall time (``decode.step_s``) shows the host time the GPU waits for.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    kernels: dict[int, dict[str, float]] = {}
    for tokens in (1, steps + 1):
        time_generate(engine, batch, tokens)
        with profile(activities=activities) as prof:
            time_generate(engine, batch, tokens)
        kernels[tokens] = {
            e.key: float(e.self_device_time_total) for e in prof.key_averages() if _is_kernel(e)
        }
        sort = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
        table = prof.key_averages().table(sort_by=sort, row_limit=30, max_name_column_width=90)
        (out / f"profile_{tokens}_tokens.txt").write_text(table)
    prefill, full = kernels[1], kernels[steps + 1]
    step_us = {name: (full[name] - prefill.get(name, 0.0)) / steps for name in full}
    top = sorted(step_us.items(), key=lambda item: -item[1])[:15]
    figures = {
        "steps": steps,
        "prefill_device_ms": sum(prefill.values()) / 1000,
        "device_ms_per_step": sum(step_us.values()) / 1000,
        "step_kernels_us": {name[:90]: round(us, 1) for name, us in top},
        "prefill_kernels_us": {
            name[:90]: round(us, 1) for name, us in sorted(prefill.items(), key=lambda item: -item[1])[:15]
        },
    }
    print(f"[profile] {json.dumps(figures, indent=1)}", flush=True)
    return figures


#: CUPTI's own records, not kernels: "Command Buffer Full" is the host waiting for a full launch queue
NOT_KERNELS = ("Command Buffer Full", "Buffer Flush", "Activity Buffer Request")


def _is_kernel(event: Any) -> bool:
    """A GPU kernel or copy (operators' rows repeat their kernels' time)."""
    from torch.autograd import DeviceType

    return bool(event.device_type == DeviceType.CUDA and event.key not in NOT_KERNELS)


def _variant(
    compile: bool, gqa: bool, attention: str | None = None, **more: str | bool
) -> dict[str, str | int | float | bool | None]:
    """Engine options of one ablation: a static cache, and what differs."""
    options: dict[str, str | int | float | bool | None] = {
        "static_cache": True,
        "compile": compile,
        "gqa_decode": gqa,
    }
    return options | ({"decode_attention": attention} if attention else {}) | more


ABLATIONS: dict[str, dict[str, str | int | float | bool | None]] = {
    "dynamic_eager_sdpa": {"static_cache": False, "compile": False, "gqa_decode": False},
    # through transformers' generate (decode_loop=false), as before issue 16 item 3
    "static_eager_sdpa": _variant(False, False, decode_loop=False),
    "static_eager_gqa": _variant(False, True, decode_loop=False),
    "static_compiled_sdpa": _variant(True, False, decode_loop=False),
    "static_compiled_gqa": _variant(True, True, "sdpa", decode_loop=False),
    "static_eager_flex": _variant(False, True, "flex", decode_loop=False),
    "static_compiled_flex": _variant(True, True, "flex", decode_loop=False),
    # the engine's own decoding loop (decode_loop.py; the default)
    "loop_compiled_gqa": _variant(True, True, "sdpa"),
    "loop_compiled_flex_unfused": _variant(True, True, "flex", fuse_prefill="off"),
    "loop_compiled_flex": _variant(True, True, "flex"),
    # each clip's frames prefilled once per batch, then read once per decoding step (share_prefix)
    "loop_compiled_flex_shared": _variant(True, True, "flex", share_prefix="decode"),
}


#: the prefill ablation's settings: unfused, fused, fused with the shared prefill (share_prefix)
PREFILL_VARIANTS: dict[str, dict[str, str | int | float | bool | None]] = {
    "off": {"fuse_prefill": "off", "share_prefix": False},
    "shared": {"fuse_prefill": "inductor", "share_prefix": True},
    "inductor": {"fuse_prefill": "inductor", "share_prefix": False},
}


def prefill_ablation(engine: Any, batch: Sequence[EncodedRequest], repeats: int = 2) -> dict[str, Any]:
    """Prefill time (1-token answers) of one batch, unfused, fused (``fuse_prefill=inductor``) and
    fused with each video's frames prefilled once (``share_prefix``), alternated ``repeats`` times
    in this process; the engine is left fused, unshared."""
    seconds: dict[str, list[float]] = {name: [] for name in PREFILL_VARIANTS}
    for _ in range(repeats):
        for name, options in PREFILL_VARIANTS.items():
            seconds[name].append(time_generate(engine.with_options(options), batch, 1))
    figures = {name: {"median_s": statistics.median(s), "runs_s": s} for name, s in seconds.items()}
    figures["speedup"] = figures["off"]["median_s"] / figures["inductor"]["median_s"]
    figures["shared_speedup"] = figures["inductor"]["median_s"] / figures["shared"]["median_s"]
    print(f"[prefill ablation] batch {len(batch)}: {figures}", flush=True)
    return figures


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
    parser.add_argument("--bucket", type=int, default=16, help="prompt length padded to a multiple of this")
    parser.add_argument(
        "--also-requests",
        type=int,
        default=0,
        help="after the main run, the first N requests again (renamed) as a second workload, same engine",
    )
    parser.add_argument(
        "--prefill-ablation", action="store_true", help="prefill unfused, fused and shared (one batch)"
    )
    parser.add_argument(
        "--share-prefix",
        choices=("off", "prefill", "decode"),
        default="off",
        help="the fast path's engine option share_prefix: each video's frames prefilled once per batch "
        "(prefill), and read once per decoding step (decode)",
    )
    parser.add_argument("--max-tokens", type=int, default=300)
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--workers", type=int, default=8, help="preprocessing threads")
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--ablations", default="", help=f"comma-separated, of: {', '.join(ABLATIONS)}")
    parser.add_argument("--ablation-batch", type=int, default=0, help="0: the main batch size")
    parser.add_argument("--ablation-tokens", type=int, default=64)
    parser.add_argument("--profile", action="store_true", help="profile 6 decoding steps of one main batch")
    parser.add_argument(
        "--decode-attention",
        choices=("sdpa", "flex"),
        default="flex",
        help="the fast path's decoding-step attention (engine option decode_attention)",
    )
    parser.add_argument(
        "--fuse-prefill", default="inductor", choices=("inductor", "off"), help="engine option fuse_prefill"
    )
    parser.add_argument(
        "--decode-loop",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the fast path decodes with the engine's own loop (engine option decode_loop), else generate",
    )
    parser.add_argument(
        "--engine-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another engine option of the fast path as the CLI takes it, e.g. fold_heads=true (repeatable)",
    )
    parser.add_argument(
        "--compile-cache",
        default="default",
        help="folder of compiled kernels (engine option compile_cache); an empty one: cold start",
    )
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
        clean = _public(dict(self))
        self.path.write_text(json.dumps(clean, indent=1, default=str))


def _public(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if not str(k).startswith("_")}
    return value


def start_results(out: Path) -> Results:
    """Logging on, ``out`` made, and ``out/results.json`` begun with the command and the machine."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out.mkdir(parents=True, exist_ok=True)
    results = Results(out / "results.json")
    results["command"] = " ".join(sys.argv)
    results["environment"] = environment()
    return results


def summary(results: Results) -> str:
    """One line with the figures that matter (the reply of a remote run shows only the end)."""
    main_run, decode = results["main"], results["decode"]
    sheet = results["roofline_datasheet"]
    measured = results.get("roofline_measured", {})
    baseline = results.get("baseline", {}).get("requests_per_s", float("nan"))
    return (
        f"SUMMARY {results['environment'].get('gpu', 'cpu')}: main {main_run['requests_per_s']:.2f} req/s, "
        f"{main_run['output_tokens_per_s']:.0f} output tokens/s (engine only "
        f"{main_run['requests_per_engine_s']:.2f} req/s), baseline {baseline:.3f} req/s, "
        f"speedup {results.get('speedup_vs_baseline', float('nan')):.1f}x; "
        f"batch {results['prefill']['requests']}: {decode['batch_s']:.2f} s, "
        f"prefill {results['prefill']['seconds']:.2f} s, step {1000 * decode['step_s']:.1f} ms "
        f"(roofline {1000 * sheet['batch']['decode_step_s']:.1f} ms datasheet, "
        f"{1000 * measured.get('batch', {}).get('decode_step_s', float('nan')):.1f} ms measured ceilings, "
        f"{sheet['batch']['decode_bound']}-bound); "
        f"roofline {sheet['batch']['requests_per_s']:.2f} req/s (datasheet), "
        f"{100 * sheet['fraction_of_batch']:.0f}% of it per batch, "
        f"{100 * sheet['fraction_of_wall']:.0f}% over the run; "
        f"{100 * measured.get('fraction_of_batch', float('nan')):.0f}% of the measured-ceiling roofline; "
        f"peak allocated {main_run.get('peak_allocated_gib', float('nan')):.1f} GiB"
    )


def write_prompts(path: Path, items: Sequence[BatchItem]) -> None:
    """The items as a prompts file for ``cosmos-workflow upsample-prompts`` (e.g. under torchrun)."""
    rows = [{"name": i.name, "prompt": i.prompt, "video_path": str(i.video_path)} for i in items]
    path.write_text(json.dumps(rows, indent=1))


def fast_options(args: argparse.Namespace) -> dict[str, str | int | float | bool | None]:
    from cosmos_workflow.cli.options import parse_engine_options  # as the CLI reads --engine-option

    return {
        "static_cache": True,
        "batch_bucket": args.bucket,
        "gqa_decode": True,
        "decode_attention": args.decode_attention,
        "decode_loop": args.decode_loop,
        "fuse_prefill": args.fuse_prefill,
        "share_prefix": args.share_prefix,
        "compile": True,
        "compile_cache": args.compile_cache,
        "ignore_eos": True,
        **parse_engine_options(args.engine_option),
    }


def ceilings_of(gpu: str, cuda: bool) -> dict[str, Ceilings]:
    """The datasheet's ceilings for the card named ``gpu`` and, on a GPU, those measured on it."""
    ceilings = {"datasheet": datasheet(gpu)[1]}
    if cuda:
        measured = measure_ceilings()
        ceilings["measured"] = Ceilings(measured["copy_bytes_per_s"], measured["bf16_matmul_flops"])
    return ceilings


def card_ceilings(results: Results, cuda: bool) -> dict[str, Ceilings]:
    """:func:`ceilings_of` the card in use, recorded in ``results``."""
    gpu = results["environment"].get("gpu", "")
    ceilings = ceilings_of(gpu, cuda)
    sheet = ceilings["datasheet"]
    results["datasheet"] = {"card": datasheet(gpu)[0], "bytes_per_s": sheet.bytes_per_s, "flops": sheet.flops}
    if "measured" in ceilings:
        measured = ceilings["measured"]
        results["ceilings"] = {"copy_bytes_per_s": measured.bytes_per_s, "bf16_matmul_flops": measured.flops}
    print(json.dumps({"datasheet": results["datasheet"], "measured": results.get("ceilings")}), flush=True)
    return ceilings


def load_stock(args: argparse.Namespace, results: Results, cuda: bool) -> Any:
    import torch

    from cosmos_workflow.engines import load_engine
    from cosmos_workflow.engines.hf import HFEngine

    started = time.perf_counter()
    engine = load_engine(EngineConfig(engine="hf", model=args.model, options=STOCK_OPTIONS))
    synchronize()
    assert isinstance(engine, HFEngine)
    results["build"] = {
        "seconds": time.perf_counter() - started,
        "since_process_start_s": time.perf_counter() - PROCESS_START,
        "parameters": sum(p.numel() for p in engine._model.parameters()),
        "allocated_gib": torch.cuda.memory_allocated() / 2**30 if cuda else None,
    }
    print(f"[build] {results['build']}", flush=True)
    return engine


def batch_figures(
    results: Results, shape: Shape, last: Sequence[EncodedRequest], prefill_s: float, args: argparse.Namespace
) -> None:
    """Prefill, decoding step and the roofline of one batch against each set of ceilings."""
    main_run = results["main"]
    prompt_tokens = sum(r.num_tokens for r in last)
    padded = len(last) * -(-max(r.num_tokens for r in last) // args.bucket) * args.bucket
    results["prefill"] = {
        "requests": len(last),
        "prompt_tokens": prompt_tokens,
        "padded_tokens": padded,
        "padding_fraction": 1 - prompt_tokens / padded,
        "seconds": prefill_s,
        "tokens_per_s": prompt_tokens / prefill_s,
    }
    same_size = [c["seconds"] for c in main_run["calls"] if c["requests"] == len(last)]
    batch_s = statistics.median(same_size)
    step_s = (batch_s - prefill_s) / (args.max_tokens - 1)
    patches = 2 * (272 // 16) * (480 // 16)
    results["decode"] = {"batch_s": batch_s, "step_s": step_s}
    for name, ceilings in results["_ceilings"].items():
        ideal = roofline(shape, [r.num_tokens for r in last], patches, args.max_tokens, ceilings)
        run_s = sum(
            roofline(
                shape,
                [c["prompt_tokens"] // c["requests"]] * c["requests"],
                patches,
                args.max_tokens,
                ceilings,
            )["batch_s"]
            for c in main_run["calls"]
        )
        results[f"roofline_{name}"] = {
            "batch": ideal,
            "fraction_of_batch": ideal["batch_s"] / batch_s,
            "prefill_fraction": ideal["prefill_s"] / prefill_s,
            "decode_step_fraction": ideal["decode_step_s"] / step_s,
            "run_s": run_s,
            "run_requests_per_s": args.requests / run_s,
            "fraction_of_wall": run_s / main_run["wall_s"],
            "fraction_of_engine": run_s / main_run["engine_s"],
        }


def startup_figures(results: Results) -> None:
    """Cold or warm start-up (the compile cache decides): model built, first fast batch out."""
    warm, main_run = results["warmup"], results["main"]
    first = warm["calls"][0]["seconds"]
    same = [c["seconds"] for c in main_run["calls"] if c["requests"] == warm["calls"][0]["requests"]]
    results["startup"] = {
        "model_built_after_s": results["build"]["since_process_start_s"],
        "first_fast_batch_out_after_s": warm["ended_since_process_start_s"],
        "first_fast_batch_wall_s": warm["wall_s"],
        "first_fast_batch_engine_s": first,
        "steady_batch_engine_s": statistics.median(same) if same else None,
        "compile_overhead_s": first - statistics.median(same) if same else None,
    }
    print(f"[startup] {results['startup']}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.write_prompts:
        write_prompts(
            args.write_prompts, make_items(args.out / "videos", args.requests, args.videos, 1280, 720)
        )
        return 0
    import torch

    results = start_results(args.out)
    cuda = torch.cuda.is_available()
    print(json.dumps(results["environment"]), flush=True)
    results["_ceilings"] = card_ceilings(results, cuda)
    items = make_items(args.out / "videos", args.requests, args.videos, 1280, 720)
    engine = load_stock(args, results, cuda)
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

    fast = engine.with_options(fast_options(args))
    longest = max(int(results.get("baseline", {}).get("prompt_tokens", {}).get("max", 1100)), 1100)
    auto = fast.max_batch_size(longest, args.max_tokens)
    results["auto_batch_size"] = {"prompt_tokens": longest, "estimate": auto}
    # as the runner's 'auto' does: as few batches as fit, of equal size
    batch = evened_batch_size(args.requests, auto) if args.batch_size == "auto" else int(args.batch_size)
    print(f"[batch] free-memory estimate {auto} for {longest}-token prompts; using {batch}", flush=True)

    if not args.no_warmup:
        results["warmup"] = run_phase(
            "warmup", fast, renamed(items[:batch], "warm-"), batch_size=batch, **common
        )
        results["warmup"]["ended_since_process_start_s"] = time.perf_counter() - PROCESS_START
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
    batch_figures(results, shape, last, time_generate(fast, last, 1), args)
    if "warmup" in results:
        startup_figures(results)
    if "baseline" in results:
        results["speedup_vs_baseline"] = main_run["requests_per_s"] / results["baseline"]["requests_per_s"]
    results.save()
    print(summary(results), flush=True)

    if args.profile:
        results["profile"] = profile_decode(fast, last, args.out)
        results.save()

    if args.also_requests:
        count = args.also_requests
        size = evened_batch_size(count, auto) if args.batch_size == "auto" else batch
        results["also"] = run_phase("also", fast, renamed(items[:count], "also-"), batch_size=size, **common)
        if "baseline" in results:
            results["also"]["speedup_vs_baseline"] = (
                results["also"]["requests_per_s"] / results["baseline"]["requests_per_s"]
            )
        results.save()

    if args.prefill_ablation:
        results["prefill_ablation"] = prefill_ablation(fast, last)
        results.save()

    if args.ablations:
        size = args.ablation_batch or len(last)
        group = (last * (size // len(last) + 1))[:size]
        results["ablations"] = ablations(fast, group, args.ablation_tokens, args.ablations.split(","))
        results.save()

    print(json.dumps({k: results[k] for k in ("prefill", "decode", "roofline_datasheet")}, indent=1))
    print(summary(results), flush=True)
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
