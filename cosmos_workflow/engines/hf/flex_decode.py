"""Decode attention that reads only the filled part of the KV cache (PyTorch's flex_attention).

A static KV cache holds every slot a batch may need (its longest padded prompt plus
``max_tokens``). The fused SDPA kernel reads all of them at every decoding step, filled or not,
and each request's left padding too. Here the step's mask is turned into a block mask: for each
request, the blocks of ``KV_BLOCK`` slots that hold at least one token it may attend to. The
flex-decoding kernel then reads only those blocks, splits each request's cache over several
thread blocks (split-KV), and packs the query heads that share a KV head into one tile.

Two pieces, registered with transformers under one attention name (kernels.FLEX_ATTENTION):

- :func:`flex_decode_mask`, the mask function: transformers' SDPA mask, turned into a block mask
  for one-token decoding steps. With a static cache, ``generate`` builds the mask of each step
  before calling the (compiled) forward, so the block mask is made eagerly and enters the
  compiled step as an input (building it inside the compiled graph fails in torch 2.11's
  Inductor);
- :func:`flex_decode_attention`, flex_attention for a block mask; the attention function
  registered (:func:`~cosmos_workflow.engines.hf.kernels.gqa_flex_attention`) calls it for block
  masks and the SDPA path for anything else (prefill, several query tokens).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch.nn.attention.flex_attention import BlockMask

#: KV-cache slots per block of the block mask (the sparse block size flex_attention works in)
KV_BLOCK = 128


def flex_decode_mask(*args: Any, **kwargs: Any) -> Any:
    """transformers' SDPA mask; for a one-token step outside compilation, its block mask."""
    import torch
    from transformers.masking_utils import sdpa_mask

    mask = sdpa_mask(*args, **kwargs)
    if mask is None or mask.shape[-2] != 1 or torch.compiler.is_compiling():
        return mask
    allowed = mask[:, 0, -1, :]
    return filled_block_mask(allowed if allowed.dtype == torch.bool else allowed == 0)


def flex_decode_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention signature, for a block mask (kernels.gqa_flex_attention sends
    every other call to the SDPA path)."""
    flex = flex_for(query.is_cuda)
    output = flex(query, key, value, block_mask=attention_mask, scale=scaling, enable_gqa=True)
    return output.transpose(1, 2), None  # (batch, 1, heads, head_dim), as transformers expects


def filled_block_mask(allowed: torch.Tensor, block: int = KV_BLOCK) -> BlockMask:
    """A block mask for one query token per request from ``allowed`` (batch, cache slots).

    Each request lists the blocks that hold a slot it may attend to, in cache order; blocks of
    nothing but padding or unwritten slots are never read. Within a listed block, the mask
    function reads ``allowed`` itself. Tensor operations only (no host sync).
    """
    import torch
    from torch.nn.attention.flex_attention import BlockMask

    batch, length = allowed.shape
    blocks = -(-length // block)
    padded = torch.nn.functional.pad(allowed, (0, blocks * block - length), value=False)
    active = padded.view(batch, blocks, block).any(dim=-1)
    counts = active.sum(dim=-1, dtype=torch.int32)
    # active blocks first, each group in cache order (a stable sort of "inactive" flags)
    order = torch.sort((~active).to(torch.int8), dim=-1, stable=True).indices.to(torch.int32)

    def may_attend(b: Any, h: Any, q: Any, kv: Any) -> Any:
        return padded[b, kv]

    return BlockMask.from_kv_blocks(
        counts.view(batch, 1, 1),
        order.view(batch, 1, 1, blocks),
        BLOCK_SIZE=(KV_BLOCK, block),
        mask_mod=may_attend,
        seq_lengths=(1, length),
        compute_q_blocks=False,
    )


def flex_for(cuda: bool) -> Any:
    """flex_attention, compiled for GPU tensors unless the caller is being compiled already.

    Uncompiled flex_attention materialises every score (fine on the CPU for tests, slow on a
    GPU); inside transformers' compiled decoding step the plain function is traced into that graph.
    """
    import torch
    from torch.nn.attention.flex_attention import flex_attention

    if torch.compiler.is_compiling() or not cuda:
        return flex_attention
    return _compiled_flex()


@cache
def _compiled_flex() -> Any:
    import torch
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)
