"""One decoding step's inputs for each decoder layer of a tiny random Pixtral model, as
``decode_step=layers`` hands them to its layer function (engines/hf/layer_step.py): for its tests and
``benchmarks/trace_bench.py``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

#: rows (requests), KV-cache slots, and the slot the step writes (after 12 prompt tokens)
ROWS, SLOTS, SLOT = 3, 256, 12


@dataclass(frozen=True)
class LayerInputs:
    """The model's text decoder and what each of its layers takes for one token a row."""

    text: Any
    hidden: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor
    mask: Any
    slot: torch.Tensor

    def cache(self, fill: Callable[..., torch.Tensor] = torch.zeros) -> list[torch.Tensor]:
        """A layer's keys and values, (rows, KV heads, slots, head size) each, made by ``fill``."""
        shape = (ROWS, self.text.config.num_key_value_heads, SLOTS, self.text.layers[0].self_attn.head_dim)
        return [fill(*shape) for _ in range(2)]


def layer_inputs(layers: int) -> LayerInputs:
    """A tiny random model with ``layers`` decoder layers on flex decoding, and one step's inputs:
    3 tokens at positions 9, 4 and 12, the first 13 slots readable."""
    from cosmos_workflow.engines.hf.flex_decode import filled_block_mask
    from cosmos_workflow.engines.hf.kernels import use_gqa_decode
    from cosmos_workflow.engines.tiny import build_random_model, tiny_config

    config = tiny_config()
    config.text_config.num_hidden_layers = layers
    model = build_random_model(config, torch.device("cpu"), torch.float32, attn_implementation="sdpa")
    use_gqa_decode(model, attention="flex")
    text = model.model.language_model
    hidden = text.embed_tokens(torch.tensor([[5], [6], [7]]))
    cos, sin = text.rotary_emb(hidden, torch.tensor([[9], [4], [SLOT]]))
    allowed = torch.zeros((ROWS, SLOTS), dtype=torch.bool)
    allowed[:, : SLOT + 1] = True
    return LayerInputs(text, hidden, cos, sin, filled_block_mask(allowed), torch.tensor([SLOT]))
