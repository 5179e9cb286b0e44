"""Decoding steps that read each shared prefix once (``share_prefix=decode``; cascade attention).

With a shared prefill (``shared_prefix``) every request of a group holds the same keys and values
for its prefix (the video's frames: about 1,000 of 1,090 prompt tokens for Pixtral at two
480x272 frames). A decoding step's attention otherwise reads each copy: at batch 256 that is most
of the 52 GB it reads a step. Here a step's attention is split in two, then merged exactly:

1. the prefix: each group's queries (padded to the largest group) attend to its one copy of the
   prefix, kept from the shared prefill (``G`` rows, not ``B``);
2. the rest: each request attends to its own slots after the prefix (its text and its answer so
   far), through the filled-block mask (flex_decode) with the prefix slots left out;

each part returns its log-sum-exp, and the two softmax-weighted sums are combined with their
weights (the softmax over the union of the slots, as one attention would give it).

The state lives on the decoder's attention modules for the duration of a batch's decoding
(:func:`attach`, :func:`detach`); :func:`~cosmos_workflow.engines.hf.kernels.gqa_flex_attention`
sends decoding steps here while it is attached.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cosmos_workflow.engines.hf.batch import round_up

if TYPE_CHECKING:
    import torch

#: the attribute of an attention module that holds its layer's prefix while a batch decodes
STATE = "_cosmos_prefix"
#: the number of groups and of queries per group are rounded up to multiples of these. Queries
#: per group (with ``fold_heads``, a KV head's query rows: its query heads' queries, see
#: :func:`query_bucket`) go in whole blocks of 128 rows: on an H100 (torch 2.11.0+cu130) the compiled
#: flex_attention with grouped-query heads and its log-sum-exp found no kernel for 16 or 64 query
#: rows ("NoValidChoicesError"), and ran for 128 and 256 (BENCHMARKS.md, round 3 of issue 26). The
#: padded rows cost arithmetic, not reads of the prefix: for Pixtral-12B (40 layers, 32 heads of 128)
#: and 1,152 prefix slots, 16 groups of 128 rows are 1.5 TFLOP a step, about 2 ms on an H100, whether
#: their rows are real or padding (small groups pay most; 64-row blocks ran with BLOCK_M=BLOCK_N=64).
GROUP_BUCKET = 4
QUERY_BUCKET = 128


@dataclass(frozen=True)
class PrefixLayer:
    """One decoder layer's view of the shared prefixes: ``keys``/``values`` (G, kv heads, P, D),
    ``filled`` (G, P) each prefix's slots that hold a token, ``mask`` the block mask of each
    group's queries over them (:func:`prefix_mask`), ``members`` (G, M) the batch rows of each
    group (padded with row 0), ``group``/``slot`` (B,) where each row's query sits in that (G, M) grid,
    ``fold`` the query heads whose rows one KV head's query holds in the decoding step (``fold_heads``:
    the query heads per KV head; 1: each query head its own M rows)."""

    keys: torch.Tensor
    values: torch.Tensor
    filled: torch.Tensor
    mask: Any
    members: torch.Tensor
    group: torch.Tensor
    slot: torch.Tensor
    fold: int = 1


def member_grid(group: Sequence[int], groups: int) -> tuple[list[list[int]], list[int]]:
    """For each group the batch rows in it, and each row's place in its group's list."""
    rows: list[list[int]] = [[] for _ in range(groups)]
    slot = []
    for row, g in enumerate(group):
        slot.append(len(rows[g]))
        rows[g].append(row)
    return rows, slot


def prefix_layers(
    keys: Sequence[torch.Tensor],
    values: Sequence[torch.Tensor],
    allowed: torch.Tensor,
    rows: torch.Tensor,
    *,
    fold: int = 1,
) -> list[PrefixLayer]:
    """Each layer's :class:`PrefixLayer` from the shared prefill's prefix cache (``keys``/``values``
    per layer, (G, kv heads, P, D)), the prefixes' filled slots ``allowed`` (G, P) and each batch
    row's group ``rows`` (B,). ``fold``: the query heads per KV head that the decoding step folds
    into that KV head's query rows (``fold_heads``), or 1.

    The compiled decoding step is specialised to these shapes, so they are rounded up (groups to
    :data:`GROUP_BUCKET`; a KV head's query rows per group to :data:`QUERY_BUCKET`, so queries per
    group to :func:`query_bucket`; slots to whole KV blocks; the added ones attend to one zero slot
    and are never read back): batches of one run, whose group sizes differ a little, share one
    compiled step. The tensors get static addresses, so CUDA graphs read them in place instead of
    copying them at every step.
    """
    import torch

    from cosmos_workflow.engines.hf.flex_decode import KV_BLOCK

    grid, slot = member_grid(rows.tolist(), allowed.shape[0])
    groups = round_up(len(grid), GROUP_BUCKET)
    queries = round_up(max(len(r) for r in grid), query_bucket(fold))
    grid = [r + [0] * (queries - len(r)) for r in grid] + [[0] * queries] * (groups - len(grid))
    width = round_up(max(allowed.shape[1], keys[0].shape[2]), KV_BLOCK)
    filled = torch.zeros((groups, width), dtype=torch.bool, device=allowed.device)
    filled[: allowed.shape[0], : allowed.shape[1]] = allowed.bool()
    filled[allowed.shape[0] :, 0] = True  # added groups: one (zero) slot, so their softmax is defined
    members = torch.tensor(grid, dtype=torch.long, device=rows.device)
    place = torch.tensor(slot, dtype=torch.long, device=rows.device)
    mask = prefix_mask(filled, fold * queries)  # a KV head's rows: its query heads' queries
    layers = [
        PrefixLayer(
            _padded(k, groups, width), _padded(v, groups, width), filled, mask, members, rows, place, fold
        )
        for k, v in zip(keys, values, strict=True)
    ]
    for layer in layers:
        for tensor in (layer.keys, layer.values, layer.members, layer.group, layer.slot):
            # unguarded (recent torch's default; older ones guarded the address): a batch's new
            # prefixes re-record the CUDA graphs without tracing the step again, and one compiled
            # layer function serves every layer (decode_step=layers)
            torch._dynamo.mark_static_address(tensor, guard=False)
    return layers


def query_bucket(fold: int) -> int:
    """Queries per group are rounded up to a multiple of this, so that a KV head's query rows
    (``fold`` query heads' of them) are whole :data:`QUERY_BUCKET` blocks: 32 for Pixtral's 4 query
    heads per KV head folded, 128 unfolded."""
    return QUERY_BUCKET // math.gcd(QUERY_BUCKET, fold)


def _padded(tensor: torch.Tensor, groups: int, width: int) -> torch.Tensor:
    """(G, heads, P, D) zero-padded to (groups, heads, width, D) (itself when it has that shape:
    no copy; the shared prefill makes its cache whole KV blocks long)."""
    import torch

    g, heads, length, dim = tensor.shape
    if (g, length) == (groups, width):
        return tensor
    out = torch.zeros((groups, heads, width, dim), dtype=tensor.dtype, device=tensor.device)
    out[:g, :, :length] = tensor
    return out


def attach(model: Any, layers: Sequence[PrefixLayer]) -> None:
    """Give each decoder attention module its layer's prefix (``layers`` in layer order)."""
    modules = decoder_attentions(model)
    if len(modules) != len(layers):
        raise ValueError(f"{len(layers)} prefix layers for {len(modules)} attention modules")
    for module, layer in zip(modules, layers, strict=True):
        setattr(module, STATE, layer)


def detach(model: Any) -> None:
    for module in decoder_attentions(model):
        if hasattr(module, STATE):
            delattr(module, STATE)


def decoder_attentions(model: Any) -> list[Any]:
    """The text decoder's self-attention modules, in layer order."""
    return [layer.self_attn for layer in model.model.language_model.layers]


def prefix_of(module: Any) -> PrefixLayer | None:
    state: PrefixLayer | None = getattr(module, STATE, None)
    return state


def cascade_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    rest_mask: Any,
    prefix: PrefixLayer,
    *,
    scaling: float | None,
    flex: Any,
) -> torch.Tensor:
    """One decoding step's attention (query (B, heads, 1, D)) over each row's prefix (read once
    per group) and its own slots after it (``key``/``value``: the cache, ``rest_mask``: the
    block mask of those slots); (B, 1, heads, D) as transformers expects.

    With ``prefix.fold`` > 1 (``fold_heads``) the prefix part runs with as many heads as KV heads,
    each holding the M query rows of its ``fold`` query heads (query head h = kv_head * fold + g at
    rows g * M + m, as transformers' repeat_kv pairs them): a group's rows fill whole query blocks
    with less padding, and no KV head is read by several query heads apart."""
    batch, heads, _, dim = query.shape
    groups, members = prefix.members.shape
    grouped = query[prefix.members.flatten(), :, 0, :]  # (G * M, heads, D)
    grouped = grouped.view(groups, members, heads, dim).transpose(1, 2)  # (G, heads, M, D)
    folded = grouped.reshape(groups, heads // prefix.fold, prefix.fold * members, dim)
    shared, shared_lse = flex_with_lse(folded, prefix.keys, prefix.values, prefix.mask, scaling, flex)
    shared = shared.reshape(groups, heads, members, dim)  # unfolded: (G, heads, M, D)
    shared_lse = shared_lse.reshape(groups, heads, members)
    shared = shared[prefix.group, :, prefix.slot, :]  # (B, heads, D)
    shared_lse = shared_lse[prefix.group, :, prefix.slot]  # (B, heads)
    own, own_lse = flex_with_lse(query, key, value, rest_mask, scaling, flex)
    merged = merge(shared, shared_lse, own[:, :, 0, :], own_lse[:, :, 0])
    return merged.view(batch, 1, heads, dim)


def cascade_prefill(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    prefix: PrefixLayer,
    *,
    scaling: float | None,
) -> torch.Tensor:
    """The prefill of each request's text (query (B, heads, T, D)) over its group's prefix and its
    own cache slots (``key``/``value`` (B, kv heads, L, D); ``attention_mask``: transformers' mask
    of those slots, (B, 1, T, L), True or 0 where a query may attend; None: causal, no padding);
    (B, T, heads, D) as transformers expects.

    One softmax covers both parts: the prefix's keys are gathered for :data:`PREFILL_ROWS`
    requests at a time (a request's text is short: the work is its queries against prefix and
    text, as in the plain prefill, and the copy stays small), and the query heads that share a KV
    head go in as rows of that head (no 4x copy of the keys; any fused kernel that takes a mask).
    """
    import torch

    batch, heads, length, dim = query.shape
    own = _own_mask(attention_mask, batch, length, key.shape[2], query.device)
    output = torch.empty((batch, length, heads, dim), dtype=query.dtype, device=query.device)
    for start in range(0, batch, PREFILL_ROWS):
        rows = slice(start, start + PREFILL_ROWS)
        group = prefix.group[rows]
        seen = prefix.filled.index_select(0, group)[:, None, None, :]
        mask = torch.cat([seen.expand(-1, 1, length, -1), own[rows]], dim=-1)
        keys = torch.cat([prefix.keys.index_select(0, group), key[rows]], dim=2)
        values = torch.cat([prefix.values.index_select(0, group), value[rows]], dim=2)
        output[rows] = _packed_sdpa(query[rows], keys, values, mask, scaling).transpose(1, 2)
    return output


#: requests whose prefix keys are gathered at once in :func:`cascade_prefill`
PREFILL_ROWS = 64


def _own_mask(
    attention_mask: torch.Tensor | None, batch: int, length: int, slots: int, device: Any
) -> torch.Tensor:
    """transformers' prefill mask as (batch, 1, length, slots) booleans (None: causal)."""
    import torch

    if attention_mask is None:
        steps = torch.arange(slots, device=device)
        return (steps[None, :] <= steps[:length, None]).expand(batch, 1, length, slots)
    own = attention_mask[..., :slots]
    return (own if own.dtype == torch.bool else own == 0).expand(batch, 1, length, slots)


def _packed_sdpa(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, scaling: float | None
) -> torch.Tensor:
    """SDPA of query (B, heads, T, D) over grouped-query keys (B, kv heads, S, D) with one mask
    (B, 1, T, S) for all heads, the heads of a KV head packed as its query rows; (B, heads, T, D)."""
    import torch

    batch, heads, length, dim = query.shape
    kv_heads = keys.shape[1]
    groups = heads // kv_heads
    packed = query.reshape(batch, kv_heads, groups * length, dim)  # query head = kv_head * groups + g
    rows = mask[:, :, None].expand(-1, 1, groups, length, -1).reshape(batch, 1, groups * length, -1)
    output = torch.nn.functional.scaled_dot_product_attention(
        packed, keys, values, attn_mask=rows, scale=scaling
    )
    return output.reshape(batch, heads, length, dim)


def merge(
    first: torch.Tensor, first_lse: torch.Tensor, second: torch.Tensor, second_lse: torch.Tensor
) -> torch.Tensor:
    """Two attentions over disjoint slots, each (..., D) with its log-sum-exp (...), as one."""
    import torch

    top = torch.maximum(first_lse, second_lse)
    a = torch.exp(first_lse - top).unsqueeze(-1)
    b = torch.exp(second_lse - top).unsqueeze(-1)
    merged: torch.Tensor = (first.float() * a + second.float() * b) / (a + b)
    return merged.to(first.dtype)


def prefix_mask(allowed: torch.Tensor, queries: int) -> Any:
    """The block mask of ``queries`` query rows per group over its prefix's filled slots
    (``allowed``: (G, P)); built once per batch, outside the compiled step."""
    from torch.nn.attention.flex_attention import create_block_mask

    groups, length = allowed.shape

    def may_attend(b: Any, h: Any, q: Any, kv: Any) -> Any:
        return allowed[b, kv]

    return create_block_mask(may_attend, groups, None, queries, length, device=allowed.device)


def flex_with_lse(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    block_mask: Any,
    scaling: float | None,
    flex: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """flex_attention's output and log-sum-exp (``return_aux`` where this torch has it)."""
    try:
        from torch.nn.attention.flex_attention import AuxRequest
    except ImportError:  # torch before 2.9
        output, lse = flex(
            query, key, value, block_mask=block_mask, scale=scaling, enable_gqa=True, return_lse=True
        )
        return output, lse
    output, aux = flex(
        query,
        key,
        value,
        block_mask=block_mask,
        scale=scaling,
        enable_gqa=True,
        return_aux=AuxRequest(lse=True),
    )
    return output, aux.lse
