"""Decode attention that reads only the filled part of the KV cache (PyTorch's flex_attention).

A static KV cache holds every slot a batch may need (its longest padded prompt plus
``max_tokens``). The fused SDPA kernel reads all of them at every decoding step, filled or not,
and each request's left padding too. Here the step's mask is turned into a block mask: for each
request, the blocks of ``KV_BLOCK`` slots that hold at least one token it may attend to. The
flex-decoding kernel then reads only those blocks, splits each request's cache over several
thread blocks (split-KV), and packs the query heads that share a KV head into one tile.
Prefill (many query tokens) stays on the SDPA path.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch.nn.attention.flex_attention import BlockMask

#: KV-cache slots per block of the block mask (the sparse block size flex_attention works in)
KV_BLOCK = 128


def flex_decode_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention signature; one-token decoding steps go to flex_attention."""
    from cosmos_workflow.engines.hf.kernels import gqa_sdpa_attention

    if (
        query.shape[2] != 1
        or attention_mask is None
        or kwargs.get("position_bias") is not None
        or (dropout and module.training)
    ):
        return gqa_sdpa_attention(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    allowed = attention_mask[:, 0, -1, : key.shape[2]]
    if allowed.dtype != _bool():
        allowed = allowed == 0  # an additive mask: 0 where attending, a large negative elsewhere
    output = _decoder(query.is_cuda)(query, key, value, allowed, scaling)
    return output.transpose(1, 2), None  # (batch, 1, heads, head_dim), as transformers expects


def decode_step_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, allowed: torch.Tensor, scaling: float | None
) -> torch.Tensor:
    """flex_attention of one query token per request over the blocks ``allowed`` marks."""
    from torch.nn.attention.flex_attention import flex_attention

    block_mask = filled_block_mask(allowed)
    output: torch.Tensor = flex_attention(
        query, key, value, block_mask=block_mask, scale=scaling, enable_gqa=True
    )
    return output


def filled_block_mask(allowed: torch.Tensor, block: int = KV_BLOCK) -> BlockMask:
    """A block mask for one query token per request from ``allowed`` (batch, cache slots).

    Each request lists the blocks that hold a slot it may attend to, in cache order; blocks of
    nothing but padding or unwritten slots are never read. Within a listed block, the mask
    function reads ``allowed`` itself. Only tensor operations (no host sync), so the step stays
    one CUDA graph.
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


def _bool() -> Any:
    import torch

    return torch.bool


def _decoder(cuda: bool) -> Any:
    """:func:`decode_step_attention`, compiled for GPU tensors unless the caller is being compiled.

    Uncompiled flex_attention materialises every score (fine on the CPU for tests, slow on a
    GPU); inside transformers' compiled decoding step the plain function is traced into that graph.
    The block mask is built inside the compiled function, so only tensors cross its boundary.
    """
    import torch

    if torch.compiler.is_compiling() or not cuda:
        return decode_step_attention
    return _compiled_decoder()


@cache
def _compiled_decoder() -> Any:
    import torch

    return torch.compile(decode_step_attention, dynamic=False)
