"""A decoding step one decoder layer at a time, every layer through one compiled function
(``decode_step=layers``, the default where the step is compiled).

``decode_step=model`` compiles transformers' whole forward for a decoding step.
Dynamo then traces each of the decoder's 40 layers (Pixtral-12B) one after the other, every time a
process meets a new batch shape: 16.5-17.7 s of a 21-25 s first step on an H100 with the compile
cache warm (BENCHMARKS.md, "The H100 sitting of round 3"), the largest part of 200 shots' time. It
cannot be saved for the next process either: Dynamo's caching precompile fails on a class
transformers defines inside a function.

Here the step is written out around the layers, and each layer is one call of
:func:`decoder_layer`, compiled once: its inputs are the layer module (whose weights Dynamo takes
as inputs, not as constants: one graph serves every layer) and tensors (the layer's KV-cache
tensors, the slot to write), never transformers' cache object or the layer's index, on which the
compiled step would depend layer by layer. The arithmetic is transformers' own, module for module
(the same norms, projections, rotary embedding, attention function and MLP, in the same order), so
greedy answers are the model's (tested on the CPU against ``decode_step=model``).

Not compiled into CUDA graphs: the host launches each layer's kernels itself, about 40 calls a
step, which it can do ahead of the GPU as long as a step's launches take less time than the step
(a step takes 10-26 ms on an H100 for 1-342 rows). Measured on an H100 (BENCHMARKS.md, round 3's
second H100 sitting): a new process's first step 0.7-0.9 s against 21-25 s, 200 shots from process
start 27.6 s against 54.1 s, a compiled pass over 1,024 requests 3% slower (33.93 against 35.00
requests/s); float32 greedy answers of 4 full-size requests token-identical to ``model``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class LayerStep:
    """One decoding step of ``model`` (a Llava/Pixtral model), layer by layer."""

    def __init__(self, model: Any, *, compiled: bool, backend: str = "inductor") -> None:
        self._model = model
        self._layer = compiled_layer(backend) if compiled else decoder_layer

    def __call__(
        self, token: torch.Tensor, position: torch.Tensor, mask: Any, cache: Any, slot: torch.Tensor
    ) -> torch.Tensor:
        """The next token's logits (batch, vocabulary), float32, for ``token`` (batch,) at
        ``position`` (batch,), written into ``cache`` at ``slot`` ((1,) on the device)."""
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        text = self._model.model.language_model
        attention = ALL_ATTENTION_FUNCTIONS[text.config._attn_implementation]
        hidden = text.embed_tokens(token[:, None])
        cos, sin = text.rotary_emb(hidden, position[:, None])
        for layer, kept in zip(text.layers, cache.layers, strict=True):
            hidden = self._layer(layer, hidden, cos, sin, kept.keys, kept.values, slot, mask, attention)
        logits: torch.Tensor = self._model.lm_head(text.norm(hidden))[:, -1, :].float()
        return logits


def compiled_layer(backend: str = "inductor") -> Any:
    """:func:`decoder_layer` compiled with static shapes (``eager``: traced only, for tests)."""
    import torch

    return torch.compile(decoder_layer, dynamic=False, backend=backend)


def decoder_layer(
    layer: Any,
    hidden: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    slot: torch.Tensor,
    mask: Any,
    attention: Any,
) -> torch.Tensor:
    """transformers' Mistral decoder layer for one token a row, its key and value written into
    ``keys``/``values`` (batch, KV heads, slots, head size) at ``slot``; ``attention``: the
    attention function the model is set to (transformers' signature)."""
    from transformers.models.mistral.modeling_mistral import apply_rotary_pos_emb

    attn = layer.self_attn
    normed = layer.input_layernorm(hidden)
    shape = (*normed.shape[:-1], -1, attn.head_dim)
    query = attn.q_proj(normed).view(shape).transpose(1, 2)
    key = attn.k_proj(normed).view(shape).transpose(1, 2)
    value = attn.v_proj(normed).view(shape).transpose(1, 2)
    query, key = apply_rotary_pos_emb(query, key, cos, sin)
    keys.index_copy_(2, slot, key)
    values.index_copy_(2, slot, value)
    output, _ = attention(
        attn,
        query,
        keys,
        values,
        mask,
        dropout=0.0,
        scaling=attn.scaling,
        sliding_window=getattr(attn.config, "sliding_window", None),
    )
    hidden = hidden + attn.o_proj(output.reshape(*normed.shape[:-1], -1).contiguous())
    mlp: torch.Tensor = layer.mlp(layer.post_attention_layernorm(hidden))
    return hidden + mlp
