"""Decode attention side by side, one layer of Pixtral-12B's decoder (issue 16, item 2).

Run from the repository root on a CUDA machine::

    python benchmarks/gpu_decode_attention.py            # batch 128, static cache of 1152 + 300 slots

One decoding step's attention of one layer at the benchmark's shapes: ``--batch`` requests, 32
query heads over 8 KV heads of 128, a static cache of ``--prompt`` + ``--answer`` slots, each
request's prompt left-padded by 45 to 83 slots (as the 1069-1107-token prompts are in a 1152-token
bucket), after ``--step`` answer tokens. Kernels:

- ``sdpa_stock``: transformers' SDPA path (each KV head copied for its 4 query heads);
- ``sdpa_packed``: the engine's ``decode_attention=sdpa`` (4 query heads as 4 rows of their KV
  head; the fused kernel reads the whole cache);
- ``flex_filled``: ``decode_attention=flex`` (compiled flex_attention over the filled blocks only);
- ``flex_every_block``: the same kernel told to visit every block (what skipping buys);
- ``flex_graph``: ``flex_filled`` inside a compiled function with CUDA graphs (as in the compiled
  decoding step), a new block mask at each call (recompilations are counted).

Each is checked against a float32 reference (relative error) and timed (median of
``triton.testing.do_bench``); bytes are the K and V slots each reads at the copy rate measured on
the card. Prints a table; ``--out FILE`` writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def inputs(args: argparse.Namespace, step: int) -> dict[str, Any]:
    import torch

    generator = torch.Generator(device="cuda").manual_seed(step)
    length = args.prompt + args.answer
    shape = (args.batch, 8, length, 128)
    key = torch.randn(shape, generator=generator, device="cuda", dtype=torch.bfloat16)
    value = torch.randn(shape, generator=generator, device="cuda", dtype=torch.bfloat16)
    query = torch.randn((args.batch, 32, 1, 128), generator=generator, device="cuda", dtype=torch.bfloat16)
    pads = torch.randint(45, 84, (args.batch,), generator=generator, device="cuda")
    slots = torch.arange(length, device="cuda")
    allowed = (slots[None, :] >= pads[:, None]) & (slots[None, :] <= args.prompt + step)
    return {"query": query, "key": key, "value": value, "allowed": allowed}


class Module:
    num_key_value_groups = 4
    training = False


def kernels() -> dict[str, Callable[[dict[str, Any]], Any]]:
    import torch
    from torch.nn.attention.flex_attention import BlockMask
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from cosmos_workflow.engines.hf.flex_decode import _compiled_flex, filled_block_mask
    from cosmos_workflow.engines.hf.kernels import gqa_sdpa_attention

    module, scale = Module(), 128**-0.5
    flex = _compiled_flex()

    def every_block(allowed: Any) -> Any:
        mask = filled_block_mask(allowed)
        blocks = mask.kv_indices.shape[-1]
        indices = (
            torch.arange(blocks, device="cuda", dtype=torch.int32).expand_as(mask.kv_indices).contiguous()
        )
        counts = torch.full_like(mask.kv_num_blocks, blocks)
        return BlockMask.from_kv_blocks(
            counts,
            indices,
            BLOCK_SIZE=mask.BLOCK_SIZE,
            mask_mod=mask.mask_mod,
            seq_lengths=mask.seq_lengths,
            compute_q_blocks=False,
        )

    @torch.compile(mode="reduce-overhead", dynamic=False, fullgraph=True)
    def graphed(q: Any, k: Any, v: Any, block_mask: Any) -> Any:
        return torch.nn.attention.flex_attention.flex_attention(
            q, k, v, block_mask=block_mask, scale=scale, enable_gqa=True
        )

    def dense(x: dict[str, Any]) -> Any:
        return x["allowed"][:, None, None, :]

    return {
        "sdpa_stock": lambda x: sdpa_attention_forward(
            module, x["query"], x["key"], x["value"], dense(x), scaling=scale
        )[0],
        "sdpa_packed": lambda x: gqa_sdpa_attention(
            module, x["query"], x["key"], x["value"], dense(x), scaling=scale
        )[0],
        "flex_filled": lambda x: flex(
            x["query"], x["key"], x["value"], block_mask=x["mask"], scale=scale, enable_gqa=True
        ).transpose(1, 2),
        "flex_every_block": lambda x: flex(
            x["query"], x["key"], x["value"], block_mask=x["every"], scale=scale, enable_gqa=True
        ).transpose(1, 2),
        "flex_graph": lambda x: graphed(x["query"], x["key"], x["value"], x["mask"]).transpose(1, 2),
        "_every_block": every_block,
    }


def reference(x: dict[str, Any]) -> Any:
    import torch

    q = x["query"].float().reshape(x["query"].shape[0], 8, 4, 128)
    scores = torch.einsum("bkgd,bksd->bkgs", q, x["key"].float()) * 128**-0.5
    scores = scores.masked_fill(~x["allowed"][:, None, None, :], float("-inf"))
    out = torch.einsum("bkgs,bksd->bkgd", scores.softmax(-1), x["value"].float())
    return out.reshape(x["query"].shape[0], 1, 32, 128)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--prompt", type=int, default=1152)
    parser.add_argument("--answer", type=int, default=300)
    parser.add_argument("--steps", default="0,150,299", help="answer tokens already in the cache")
    parser.add_argument(
        "--copy-tbps", type=float, default=4.2, help="measured copy rate, for the bandwidth column"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import torch
    import torch._dynamo.utils
    import triton.testing

    from cosmos_workflow.engines.hf.flex_decode import KV_BLOCK, filled_block_mask

    table = kernels()
    every_block = table.pop("_every_block")
    rows = []
    for step in (int(s) for s in args.steps.split(",")):
        x = inputs(args, step)
        x["mask"] = filled_block_mask(x["allowed"])
        x["every"] = every_block(x["allowed"])
        expected = reference(x)
        blocks = int(x["mask"].kv_num_blocks.sum())
        slot_bytes = 8 * 128 * 2 * 2  # K and V of one slot, all KV heads, bf16
        read = {
            "filled": blocks * KV_BLOCK * slot_bytes,
            "all": x["key"].shape[0] * x["key"].shape[2] * slot_bytes,
        }
        for name, kernel in table.items():
            row: dict[str, Any] = {"step": step, "kernel": name}
            try:
                out = kernel(x).reshape(expected.shape).float()
                row["rel_error"] = float((out - expected).norm() / expected.norm())
                before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
                row["ms"] = float(
                    triton.testing.do_bench(
                        lambda k=kernel, x=x: k(x), warmup=25, rep=200, return_mode="median"
                    )
                )
                row["new_graphs_while_timing"] = (
                    torch._dynamo.utils.counters["stats"]["unique_graphs"] - before
                )
                nbytes = read["filled"] if name in {"flex_filled", "flex_graph"} else read["all"]
                row["tb_per_s"] = nbytes / row["ms"] / 1e9
                row["fraction_of_copy_rate"] = row["tb_per_s"] / args.copy_tbps
            except Exception as exc:  # keep the other kernels' figures
                import traceback

                row["error"] = f"{type(exc).__name__}: {exc}"[:400]
                traceback.print_exc()
            rows.append(row)
            print(json.dumps(row), flush=True)
        # a fresh mask (other tensors) must not recompile the graphed kernel
        y = inputs(args, step + 1)
        y["mask"] = filled_block_mask(y["allowed"])
        before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        try:
            table["flex_graph"](y)
            added = torch._dynamo.utils.counters["stats"]["unique_graphs"] - before
            print(f"flex_graph with a new mask: {added} new graphs")
        except Exception as exc:
            print(f"flex_graph with a new mask failed: {exc}"[:400])
    print(f"{'step':>5} {'kernel':<18} {'ms/layer':>9} {'x40 ms':>7} {'TB/s':>6} {'rel err':>9}")
    for row in rows:
        if "ms" in row:
            print(
                f"{row['step']:>5} {row['kernel']:<18} {row['ms']:>9.3f} {40 * row['ms']:>7.2f} "
                f"{row['tb_per_s']:>6.2f} {row['rel_error']:>9.2e}"
            )
        else:
            print(f"{row['step']:>5} {row['kernel']:<18} ERROR {row.get('error', '')[:120]}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
