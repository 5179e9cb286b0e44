"""Qwen2.5-VL-7B, the architecture of Cosmos-Reason1-7B (Cosmos-Predict2's prompt refiner), on one
GPU with random weights (issue 25, item 4): our batched hf path against the batch-1 way
Cosmos-Predict2 runs it (one prompt at a time through transformers' ``generate``).

Run from the repository root on a CUDA machine::

    python benchmarks/gpu_qwen.py --out /tmp/qwen          # --size tiny runs it on a CPU

What it does, in one process, on one model built on the device (random bf16 weights, no disk):

1. writes a checkpoint folder without weights (Qwen2.5-VL-7B's ``config.json`` with the tiny
   tokenizer's ids, the tiny Qwen tokenizer and chat template, the refiner's preprocessor limits:
   256x28x28 to 1280x28x28 pixels) and builds the model from that config on the GPU;
2. generates ``--videos`` 1280x720 clips and ``--requests`` items with 10-40-word prompts, planned
   by our Qwen2.5-VL arithmetic (2 frames at 728x1288: 1,196 vision tokens);
3. **baseline**: ``--baseline-requests`` items one at a time (batch 1), transformers' ``generate``;
4. **main**: every item through the real runner (``api.upsample``) in batches of ``--batch-size``.

Both answer with exactly ``--max-tokens`` tokens (engine option ``ignore_eos``: random weights
would stop at random places), greedy. It prints a summary and writes ``results.json`` into ``--out``.
"""

from __future__ import annotations

import time

PROCESS_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_upsample import Results, make_items, renamed, run_phase, start_results, synchronize  # noqa: E402

from cosmos_workflow.engines.base import EngineConfig  # noqa: E402
from cosmos_workflow.engines.hf.qwen import HFQwenEngine  # noqa: E402
from cosmos_workflow.engines.tiny_qwen import PREPROCESSOR_CONFIG, tiny_qwen_config, write_tokenizer  # noqa: E402

#: Qwen2.5-VL-7B-Instruct's sizes (Cosmos-Reason1-7B's): a 28-layer 3584-wide decoder with 28 query
#: and 4 KV heads, a 32-block 1280-wide windowed vision tower merging 2x2 patches.
QWEN_7B_TEXT = {
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]},
}
QWEN_7B_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "out_hidden_size": 3584,
    "fullatt_block_indexes": [7, 15, 23, 31],
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", choices=("7b", "tiny"), default="7b")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--baseline-requests", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    return parser.parse_args(argv)


def model_config(size: str) -> Any:
    """The tiny Qwen's config (its token ids) at Qwen2.5-VL-7B's sizes, or as it is."""
    config = tiny_qwen_config()
    if size == "7b":
        for key, value in QWEN_7B_TEXT.items():
            setattr(config.text_config, key, value)
        for key, value in QWEN_7B_VISION.items():
            setattr(config.vision_config, key, value)
    return config


def write_folder(folder: Path, config: Any) -> None:
    """Everything the family reads (config, tokenizer, preprocessor); the weights stay in memory."""
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    write_tokenizer(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2))


def build_engine(folder: Path, config: Any, results: Results) -> HFQwenEngine:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    started = time.perf_counter()
    with device:
        model = Qwen2_5_VLForConditionalGeneration._from_config(
            config, dtype=dtype, attn_implementation="sdpa"
        )
    model = model.eval()
    synchronize()
    results["build"] = {
        "seconds": time.perf_counter() - started,
        "since_process_start_s": time.perf_counter() - PROCESS_START,
        "parameters": sum(p.numel() for p in model.parameters()),
        "allocated_gib": torch.cuda.memory_allocated() / 2**30 if cuda else None,
    }
    print(f"[build] {results['build']}", flush=True)
    engine_config = EngineConfig(engine="hf", model=str(folder), options={"ignore_eos": True})
    return HFQwenEngine(engine_config, model=model, checkpoint=folder)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    cuda = torch.cuda.is_available()
    results = start_results(args.out)
    config = model_config(args.size)
    folder = args.out / f"qwen2_5_vl-{args.size}-random"
    write_folder(folder, config)
    engine = build_engine(folder, config, results)
    items = make_items(args.out / "videos", args.requests, args.videos, 1280, 720)
    common: dict[str, Any] = {
        "max_tokens": args.max_tokens,
        "workers": args.workers,
        "workdir": args.out,
        "sync": synchronize,
    }
    # the first request on a fresh process pays CUDA/cuBLAS start-up: keep it out of the baseline
    results["baseline_warmup"] = run_phase(
        "baseline-warmup", engine, renamed(items[:1], "bw-"), batch_size=1, **common
    )
    results["baseline"] = run_phase(
        "baseline", engine, renamed(items[: args.baseline_requests], "b-"), batch_size=1, **common
    )
    results.save()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    results["main"] = main_run = run_phase("main", engine, items, batch_size=args.batch_size, **common)
    if cuda:
        main_run["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
        main_run["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    results["speedup_vs_baseline"] = main_run["requests_per_s"] / results["baseline"]["requests_per_s"]
    results.save()
    print(
        f"SUMMARY {results['environment'].get('gpu', 'cpu')} Qwen2.5-VL-{args.size} random: main "
        f"{main_run['requests_per_s']:.3f} req/s ({main_run['output_tokens_per_s']:.0f} output tokens/s, "
        f"batch {args.batch_size}, {args.requests} requests, prompts {main_run['prompt_tokens']}), "
        f"baseline batch 1 {results['baseline']['requests_per_s']:.3f} req/s, "
        f"speedup {results['speedup_vs_baseline']:.1f}x; peak allocated "
        f"{main_run.get('peak_allocated_gib', float('nan')):.1f} GiB",
        flush=True,
    )
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
