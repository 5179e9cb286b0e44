"""Greedy answers of the optimised hf paths against the stock path, token for token (issue 16).

Run from the repository root on a CUDA machine (one GPU)::

    python benchmarks/gpu_same_answers.py --out /tmp/same     # 4 requests, 300 greedy tokens
    python benchmarks/gpu_same_answers.py --out /tmp/shared --videos 2 --float32 \
        --variants loop_flex_shared_prefill,loop_flex_shared_decode --reference loop_flex  # 2 clips, 2 each

The full-size Pixtral-12B architecture with random bf16 weights (``pixtral-12b-random``), 4 requests
planned and encoded by the real runner (1280x720 clips, 2 frames at 480x272, prompts of 10-40
words), answered greedily (temperature 0) with exactly ``--max-tokens`` tokens (``ignore_eos``) by:

- ``stock``: dynamic KV cache, transformers' SDPA attention, no compilation (the reference; run
  twice, to show it repeats itself);
- ``static_eager_sdpa``, ``static_eager_flex``: static cache and our decode attention, eager;
- ``fast_sdpa``, ``fast_flex``: the same with the decoding step compiled (CUDA graphs): what the
  engine runs by default on a GPU.

For each variant and request it prints whether the tokens are identical to the reference and, if
not, the first step where they differ, with the reference's gap between its two best logits
there (random weights give near-flat logits: a gap within bf16 rounding means two kernels that
round differently may pick different tokens, which is not a change of the computed function).
Writes ``same_answers.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpu_upsample import MODEL, STOCK_OPTIONS, make_items, run_phase, synchronize

from cosmos_workflow.engines.base import (
    EncodedRequest,
    Engine,
    EngineConfig,
    Generation,
    SamplingParams,
)

FAST: dict[str, str | int | float | bool | None] = {
    "static_cache": True,
    "batch_bucket": 128,
    "gqa_decode": True,
    "fuse_prefill": "off",
    "decode_step": "model",  # transformers' whole step (the GPU default is layers: its own variants)
}
VARIANTS: dict[str, dict[str, str | int | float | bool | None]] = {
    "stock": STOCK_OPTIONS,
    "stock_again": STOCK_OPTIONS,
    # through transformers' generate, the prefill unfused (as before issue 16 items 3 and 4)
    "static_eager_sdpa": {**FAST, "compile": False, "decode_attention": "sdpa", "decode_loop": False},
    "static_eager_flex": {**FAST, "compile": False, "decode_attention": "flex", "decode_loop": False},
    "fast_sdpa": {**FAST, "compile": True, "decode_attention": "sdpa", "decode_loop": False},
    "fast_flex": {**FAST, "compile": True, "decode_attention": "flex", "decode_loop": False},
    # the engine's own decoding loop (decode_loop.py), prefill unfused
    "loop_eager_flex": {**FAST, "compile": False, "decode_attention": "flex"},
    "loop_sdpa": {**FAST, "compile": True, "decode_attention": "sdpa"},
    "loop_flex": {**FAST, "compile": True, "decode_attention": "flex"},
    # what runs by default on a GPU: own loop, flex decode attention, fused prefill (prefill.py)
    "loop_flex_fused": {**FAST, "compile": True, "decode_attention": "flex", "fuse_prefill": "inductor"},
    # requests on the same clip prefill its frames once, then read them once per step (share_prefix;
    # with --videos below --requests, else nothing is shared)
    "loop_flex_shared_prefill": {
        **FAST,
        "compile": True,
        "decode_attention": "flex",
        "share_prefix": "prefill",
    },
    "loop_flex_shared_decode": {
        **FAST,
        "compile": True,
        "decode_attention": "flex",
        "share_prefix": "decode",
    },
    # each decoding step one layer at a time through one compiled function (layer_step.py)
    "loop_flex_layers": {**FAST, "compile": True, "decode_attention": "flex", "decode_step": "layers"},
    "loop_flex_shared_decode_layers": {
        **FAST,
        "compile": True,
        "decode_attention": "flex",
        "share_prefix": "decode",
        "decode_step": "layers",
    },
    # the same with the prefix attention's query heads folded into their KV heads' rows (fold_heads)
    "loop_flex_shared_decode_fold": {
        **FAST,
        "compile": True,
        "decode_attention": "flex",
        "share_prefix": "decode",
        "decode_step": "layers",
        "fold_heads": True,
    },
}


class Capture(Engine):
    """Records the encoded requests the runner sends and answers nothing (no model call)."""

    def __init__(self, inner: Engine) -> None:
        super().__init__(inner.config)
        self.name = inner.name
        self.inner = inner
        self.requests: list[EncodedRequest] = []

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    def generate(self, requests: Sequence[EncodedRequest], sampling: SamplingParams) -> list[Generation]:
        self.requests += requests
        return [
            Generation(text="-", finish_reason="stop", prompt_tokens=r.num_tokens, completion_tokens=1)
            for r in requests
        ]

    def close(self) -> None:
        """The wrapped engine belongs to the caller."""


def greedy(engine: Any, batch: Sequence[EncodedRequest], max_tokens: int, margins: bool) -> dict[str, Any]:
    """Greedy token ids of every request (and, if asked, the gap between the two best logits)."""
    import torch

    from cosmos_workflow.engines.hf import PAD_ID, hf_batch_tensors
    from cosmos_workflow.engines.hf.batch import on_device

    model = engine._model
    sampling = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    if engine.options.decode_loop:  # the engine's own loop (its inputs, shared or not): tokens, no logits
        synchronize()
        started = time.perf_counter()
        with torch.inference_mode():
            tokens = engine._decode(engine._inputs(batch), sampling)
        synchronize()
        return {"seconds": time.perf_counter() - started, "tokens": tokens}
    inputs = on_device(
        hf_batch_tensors(batch, PAD_ID, bucket=engine.options.batch_bucket), model.device, model.dtype
    )
    kwargs = engine._generate_kwargs(sampling)
    synchronize()
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**inputs, **kwargs, return_dict_in_generate=True, output_logits=margins)
    synchronize()
    result: dict[str, Any] = {
        "seconds": time.perf_counter() - started,
        "tokens": out.sequences[:, inputs["input_ids"].shape[1] :].tolist(),
    }
    if margins:
        logits = torch.stack(out.logits, dim=1).float()  # (batch, steps, vocab)
        top = logits.topk(2, dim=-1).values
        result["margins"] = (top[..., 0] - top[..., 1]).tolist()
    return result


def compare(reference: dict[str, Any], other: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for index, (ref, got) in enumerate(zip(reference["tokens"], other["tokens"], strict=True)):
        first = next((i for i, (a, b) in enumerate(zip(ref, got, strict=True)) if a != b), None)
        row: dict[str, Any] = {"request": index, "identical": first is None, "tokens": len(ref)}
        if first is not None:
            row |= {
                "first_difference": first,
                "reference_margin_there": reference["margins"][index][first],
                "reference_median_margin": sorted(reference["margins"][index])[len(ref) // 2],
            }
        rows.append(row)
    return rows


def load(args: argparse.Namespace) -> Any:
    """The stock engine; with ``--float32``, the full-size random model built in float32."""
    from cosmos_workflow.engines import load_engine

    config = EngineConfig(engine="hf", model=args.model, options=STOCK_OPTIONS)
    if not args.float32:
        return load_engine(config)
    import torch

    from cosmos_workflow.engines.hf.loading import finish_load
    from cosmos_workflow.engines.tiny import build_random_model, pixtral_12b_config

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = build_random_model(
        pixtral_12b_config(), torch.device("cuda"), torch.float32, attn_implementation="sdpa"
    )
    return finish_load(config, model, None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument(
        "--videos",
        type=int,
        default=0,
        help="clips the requests are spread over (0: one each; fewer: shared)",
    )
    parser.add_argument("--max-tokens", type=int, default=300)
    parser.add_argument("--model", default=MODEL, help="tiny-random runs the script's logic on a CPU")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated; the reference is always run"
    )
    parser.add_argument(
        "--reference",
        default="stock",
        help="the variant the others are compared with (one through generate: its logit gaps are kept)",
    )
    parser.add_argument("--compile-cache", default="default", help="engine option compile_cache")
    parser.add_argument(
        "--float32",
        action="store_true",
        help="random weights in float32 (TF32 off): logit gaps far above rounding, so kernels that "
        "round differently still agree",
    )
    parser.add_argument("--out", type=Path, default=Path("same_answers_out"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)

    engine = load(args)
    items = make_items(args.out / "videos", args.requests, args.videos or args.requests, 1280, 720)
    capture = Capture(engine)
    run_phase(
        "encode",
        capture,
        items,
        batch_size=len(items),
        max_tokens=args.max_tokens,
        workers=4,
        workdir=args.out,
        sync=None,
    )
    batch = capture.requests
    results: dict[str, Any] = {"prompt_tokens": [r.num_tokens for r in batch], "variants": {}}
    base = engine.with_options(
        {**VARIANTS[args.reference], "ignore_eos": True, "compile_cache": args.compile_cache}
    )
    reference = greedy(base, batch, args.max_tokens, margins=True)
    results["reference"] = args.reference
    results["variants"][args.reference] = {"seconds": reference["seconds"]}
    for name in [v for v in args.variants.split(",") if v != args.reference]:
        variant = engine.with_options(
            {**VARIANTS[name], "ignore_eos": True, "compile_cache": args.compile_cache}
        )
        try:
            answer = greedy(variant, batch, args.max_tokens, margins=False)
        except Exception as exc:  # keep the other variants' figures
            results["variants"][name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        else:
            rows = compare(reference, answer)
            results["variants"][name] = {"seconds": answer["seconds"], "requests": rows}
        print(f"[{name}] {json.dumps(results['variants'][name])}", flush=True)
        (args.out / "same_answers.json").write_text(json.dumps(results, indent=1))
    for name, figures in results["variants"].items():
        rows = figures.get("requests", [])
        same = sum(r["identical"] for r in rows)
        print(
            f"SAME {name}: {same}/{len(rows)} requests token-identical to {args.reference} "
            f"{[r.get('first_difference') for r in rows]} {figures.get('error', '')}",
            flush=True,
        )
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
