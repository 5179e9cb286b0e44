"""Speed: grouped-query decode attention, the vision tower in chunks, decoder norms/MLPs in chunks.

These patch a loaded transformers Llava/Pixtral model in place; each leaves the answer unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cosmos_workflow.engines.hf.options import DECODE_ATTENTIONS

if TYPE_CHECKING:
    import torch

#: The attention implementations registered with transformers for the text decoder (gqa_decode):
#: decoding steps through SDPA over packed query groups, or through flex_attention (flex_decode.py)
GQA_ATTENTION = "cosmos_gqa_sdpa"
FLEX_ATTENTION = "cosmos_gqa_flex"
DECODE_IMPLEMENTATIONS = dict(zip(DECODE_ATTENTIONS, (GQA_ATTENTION, FLEX_ATTENTION), strict=True))


def gqa_sdpa_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, except for one-token decoding steps of grouped-query attention.

    With a mask (always there with padding or a static cache) transformers' SDPA path copies
    every KV head 4 times (``repeat_kv``) before attending, so each decoding step writes and reads
    the whole KV cache 4 more times: at batch 128 that is most of the step. Here the 4 query heads
    that share a KV head are passed to SDPA as 4 query rows of that one head: the mask is the same
    for all of them in a decoding step, so the result is identical, and the fused attention kernel
    reads each KV head once. (Plain batched matrix products were tried first: cuBLAS picked a slow
    kernel for 1024 small products, 68 ms a step at batch 128.) Prefill (many query tokens) stays
    on transformers' SDPA path, which is compute-bound there anyway.
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = int(getattr(module, "num_key_value_groups", 1))
    bias = kwargs.get("position_bias")
    if query.shape[2] != 1 or groups == 1 or bias is not None or (dropout and module.training):
        result: tuple[torch.Tensor, None] = sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
        return result
    batch, heads, _, dim = query.shape
    kv_heads, length = key.shape[1], key.shape[2]
    packed = query.reshape(batch, kv_heads, groups, dim)  # query head = kv_head * groups + g
    mask = None if attention_mask is None else attention_mask[:, :, -1:, :length]
    output = torch.nn.functional.scaled_dot_product_attention(
        packed, key, value, attn_mask=mask, scale=scaling
    )  # (B, kv_heads, groups, D)
    return output.reshape(batch, 1, heads, dim), None


def gqa_flex_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """``decode_attention=flex``: flex_attention over the filled KV blocks when transformers hands
    over a block mask (a decoding step, see flex_decode), :func:`gqa_sdpa_attention` otherwise.
    While a batch runs with ``share_prefix=decode`` (a prefix attached: prefix_attention), the
    texts' prefill and each decoding step attend to each request's shared prefix as well."""
    from torch.nn.attention.flex_attention import BlockMask

    from cosmos_workflow.engines.hf.flex_decode import flex_decode_attention, flex_for
    from cosmos_workflow.engines.hf.prefix_attention import cascade_attention, cascade_prefill, prefix_of

    prefix = prefix_of(module)  # share_prefix=decode: each group's prefix is read once
    step = isinstance(attention_mask, BlockMask)
    if prefix is not None and step:
        flex = flex_for(query.is_cuda)
        return cascade_attention(query, key, value, attention_mask, prefix, scaling=scaling, flex=flex), None
    if prefix is not None:  # the texts' prefill after their prefixes
        return cascade_prefill(query, key, value, attention_mask, prefix, scaling=scaling), None
    if step:
        return flex_decode_attention(module, query, key, value, attention_mask, scaling=scaling)
    return gqa_sdpa_attention(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
    )


def use_gqa_decode(model: Any, enabled: bool = True, attention: str = "sdpa") -> None:
    """Switch the text decoder (not the vision tower) to a decode attention of
    :data:`DECODE_IMPLEMENTATIONS` ('sdpa': :func:`gqa_sdpa_attention`, 'flex':
    :func:`gqa_flex_attention`), or back to SDPA."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    from cosmos_workflow.engines.hf.flex_decode import flex_decode_mask

    AttentionInterface.register(GQA_ATTENTION, gqa_sdpa_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(GQA_ATTENTION, sdpa_mask)
    AttentionInterface.register(FLEX_ATTENTION, gqa_flex_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(FLEX_ATTENTION, flex_decode_mask)
    model.set_attn_implementation({"text_config": DECODE_IMPLEMENTATIONS[attention] if enabled else "sdpa"})


def chunk_vision_tower(model: Any, max_patches: int) -> None:
    """Run the Pixtral vision tower on groups of images of at most ``max_patches`` patches.

    transformers packs every image of a batch into one sequence with a dense block-diagonal mask:
    memory and attention work grow with the square of the batch's total patch count (256 images
    of 480x272: a 34 GB mask). Images never attend to each other, so running them a group at a
    time gives the same features. Only the hidden states the projector uses are kept.
    """
    tower = model.model.vision_tower
    if getattr(tower, "_cosmos_chunked", None) == max_patches:
        return
    forward = type(tower).forward
    patch = int(tower.patch_size)
    keep = _kept_layers(model.config.vision_feature_layer)

    def chunked(pixel_values: torch.Tensor, image_sizes: Any = None, **kwargs: Any) -> Any:
        groups = image_groups(image_sizes, patch, max_patches)
        if len(groups) <= 1:
            return forward(tower, pixel_values, image_sizes=image_sizes, **kwargs)
        outputs = [
            forward(tower, pixel_values[start:end], image_sizes=image_sizes[start:end], **kwargs)
            for start, end in groups
        ]
        return _joined(outputs, keep)

    tower.forward = chunked
    tower._cosmos_chunked = max_patches


def chunk_decoder_tokens(model: Any, max_tokens: int, fuse: str = "off") -> None:
    """Run the decoder's RMS norms and MLPs on at most ``max_tokens`` tokens at a time.

    Both work token by token, so chunks give the same result. A prefill of 128 requests of 1152
    tokens otherwise holds four MLP intermediates of 147k x 14336 (4 GiB each) and the norms' fp32
    copies at once: about 19 GiB beside a 28 GiB KV cache, which is what decides the batch size
    that fits. Decoding steps (one token per request) never reach the limit. ``fuse`` other than
    ``off``: several-token calls go through compiled functions with that torch.compile backend
    (see :mod:`~cosmos_workflow.engines.hf.prefill`).
    """
    language = model.model.language_model
    modules = [language.norm]
    for layer in language.layers:
        modules += [layer.input_layernorm, layer.post_attention_layernorm, layer.mlp]
    for module in modules:
        chunk_tokens(module, max_tokens, fuse)


def chunk_tokens(module: Any, max_tokens: int, fuse: str = "off") -> None:
    from cosmos_workflow.engines.hf.prefill import fused_forward

    unchunked = getattr(module, "_cosmos_unchunked", None) or module.forward
    module._cosmos_unchunked = unchunked
    forward = unchunked if fuse == "off" else fused_forward(module, unchunked, fuse)

    def chunked(hidden_states: torch.Tensor) -> torch.Tensor:
        import torch

        width = hidden_states.shape[-1]
        tokens = hidden_states.numel() // width
        if tokens <= max_tokens:
            result: torch.Tensor = forward(hidden_states)
            return result
        flat = hidden_states.reshape(1, tokens, width)
        first = forward(flat[:, :max_tokens])
        output = torch.empty((1, tokens, first.shape[-1]), dtype=first.dtype, device=first.device)
        output[:, :max_tokens] = first
        del first
        for start in range(max_tokens, tokens, max_tokens):
            output[:, start : start + max_tokens] = forward(flat[:, start : start + max_tokens])
        return output.reshape(*hidden_states.shape[:-1], output.shape[-1])

    module.forward = chunked


def _kept_layers(feature_layer: int | Sequence[int]) -> list[int]:
    return [feature_layer] if isinstance(feature_layer, int) else list(feature_layer)


def image_groups(image_sizes: Any, patch: int, max_patches: int) -> list[tuple[int, int]]:
    """Consecutive (start, end) image ranges of at most ``max_patches`` patches (one image at least)."""
    if image_sizes is None:
        return []
    counts = [(int(h) // patch) * (int(w) // patch) for h, w in image_sizes]
    groups: list[tuple[int, int]] = []
    start, total = 0, 0
    for index, count in enumerate(counts):
        if index > start and total + count > max_patches:
            groups.append((start, index))
            start, total = index, 0
        total += count
    if counts:
        groups.append((start, len(counts)))
    return groups


def _joined(outputs: list[Any], keep: list[int]) -> Any:
    """One vision-tower output from per-group outputs: patches concatenated along the sequence."""
    import torch

    first = outputs[0]
    last = torch.cat([o.last_hidden_state for o in outputs], dim=1)
    hidden = None
    if first.hidden_states is not None:
        layers: list[torch.Tensor | None] = [None] * len(first.hidden_states)
        for index in keep:
            layers[index] = torch.cat([o.hidden_states[index] for o in outputs], dim=1)
        hidden = tuple(layers)
    return type(first)(last_hidden_state=last, hidden_states=hidden)
