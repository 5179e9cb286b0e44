"""A tiny Pixtral checkpoint in Mistral's own format, and a forward pass written to Mistral's conventions.

Neither shares code with ``cosmos_workflow.checkpoint``. The tensor names and shapes are those vLLM's
Pixtral loader reads from ``consolidated.safetensors`` (``tok_embeddings``, ``layers.N.attention.wq``,
``vision_encoder.transformer.layers.N.feed_forward.w1``, ``vision_language_adapter.w_in`` ...), with
q/k rows in Mistral's interleaved order. The forward pass follows Mistral's reference model in plain
torch, in float64:

- decoder: RMS norms, grouped-query attention with a causal mask, rotary embeddings applied to
  interleaved pairs (x0, x1), (x2, x3)... as complex numbers, a SiLU-gated feed-forward;
- vision encoder: a patch convolution, RMS norms (eps 1e-5), per-image attention with the 2-D rotary
  (pairs split between the patch's row and column), a SiLU-gated feed-forward;
- adapter: linear, GELU, linear, with biases; its outputs replace the ``[IMG]`` token embeddings.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from cosmos_workflow.tokenizer import bundled_tokenizer_path

#: Pixtral-12B's layout at toy size. The text head size (24) is not dim / n_heads (16), so a
#: converter that ignores head_dim fails; widths differ between the tower and the decoder.
PARAMS: dict[str, Any] = {
    "dim": 64,
    "n_layers": 2,
    "head_dim": 24,
    "hidden_dim": 96,
    "n_heads": 4,
    "n_kv_heads": 2,
    "rope_theta": 1_000_000_000.0,
    "norm_eps": 1e-5,
    "vocab_size": 131072,
    "vision_encoder": {
        "hidden_size": 48,
        "num_channels": 3,
        "image_size": 1024,
        "patch_size": 16,
        "rope_theta": 10000.0,
        "intermediate_size": 80,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_token_id": 10,
        "image_break_token_id": 12,
        "image_end_token_id": 13,
        "adapter_bias": True,
    },
}
VISION_NORM_EPS = 1e-5

Tensors = dict[str, torch.Tensor]


def tensor_shapes(params: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every tensor of a Mistral-format Pixtral checkpoint and its shape."""
    dim, hd, vision = params["dim"], params["head_dim"], params["vision_encoder"]
    heads, kv, hidden = params["n_heads"], params["n_kv_heads"], params["hidden_dim"]
    width, inner = vision["hidden_size"], vision["intermediate_size"]
    shapes: dict[str, tuple[int, ...]] = {
        "tok_embeddings.weight": (params["vocab_size"], dim),
        "norm.weight": (dim,),
        "output.weight": (params["vocab_size"], dim),
        "vision_encoder.patch_conv.weight": (
            width,
            vision["num_channels"],
            vision["patch_size"],
            vision["patch_size"],
        ),
        "vision_encoder.ln_pre.weight": (width,),
        "vision_language_adapter.w_in.weight": (dim, width),
        "vision_language_adapter.w_in.bias": (dim,),
        "vision_language_adapter.w_out.weight": (dim, dim),
        "vision_language_adapter.w_out.bias": (dim,),
    }
    for i in range(params["n_layers"]):
        shapes |= _block(f"layers.{i}.", dim, heads * hd, kv * hd, hidden)
    for i in range(vision["num_hidden_layers"]):
        shapes |= _block(f"vision_encoder.transformer.layers.{i}.", width, width, width, inner)
    return shapes


def _block(prefix: str, dim: int, q_rows: int, kv_rows: int, hidden: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}attention.wq.weight": (q_rows, dim),
        f"{prefix}attention.wk.weight": (kv_rows, dim),
        f"{prefix}attention.wv.weight": (kv_rows, dim),
        f"{prefix}attention.wo.weight": (dim, q_rows),
        f"{prefix}feed_forward.w1.weight": (hidden, dim),
        f"{prefix}feed_forward.w2.weight": (dim, hidden),
        f"{prefix}feed_forward.w3.weight": (hidden, dim),
        f"{prefix}attention_norm.weight": (dim,),
        f"{prefix}ffn_norm.weight": (dim,),
    }


def random_tensors(params: dict[str, Any], seed: int = 0) -> Tensors:
    """Random weights scaled so activations stay near 1: every layer's choices show in the logits."""
    generator = torch.Generator().manual_seed(seed)
    tensors: Tensors = {}
    for name, shape in tensor_shapes(params).items():
        values = torch.randn(shape, generator=generator, dtype=torch.float64)
        if name.endswith("norm.weight") or name.endswith("ln_pre.weight"):
            values = 1.0 + 0.2 * values
        elif name.endswith(".bias"):
            values = 0.5 * values
        elif name != "tok_embeddings.weight":
            values = values / math.sqrt(math.prod(shape[1:]))
        tensors[name] = values.to(torch.float32)
    return tensors


def write_checkpoint(folder: Path, params: dict[str, Any] | None = None, *, seed: int = 0) -> Tensors:
    """Write params.json, consolidated.safetensors and tekken.json (Pixtral's) into a new ``folder``."""
    params = PARAMS if params is None else params
    tensors = random_tensors(params, seed)
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "consolidated.safetensors"))
    (folder / "params.json").write_text(json.dumps(params, indent=2))
    shutil.copyfile(bundled_tokenizer_path(), folder / "tekken.json")
    return tensors


# --------------------------------------------------------------------------------------------
# The reference forward pass
# --------------------------------------------------------------------------------------------


def reference_logits(
    tensors: Tensors,
    params: dict[str, Any],
    token_ids: Sequence[int],
    images: Sequence[np.ndarray],
    *,
    vision_activation: Callable[[torch.Tensor], torch.Tensor] = torch.nn.functional.silu,
) -> torch.Tensor:
    """Logits (tokens, vocab) in float64 for one sequence; ``images`` are CHW arrays, in order."""
    w = {name: tensor.to(torch.float64) for name, tensor in tensors.items()}
    ids = torch.tensor(list(token_ids))
    h = w["tok_embeddings.weight"][ids].clone()
    if images:
        features = torch.cat([_vision(w, params, image, vision_activation) for image in images])
        is_image = ids == params["vision_encoder"]["image_token_id"]
        assert int(is_image.sum()) == features.shape[0], "one [IMG] token per patch"
        h[is_image] = _adapter(w, features)
    rotations = _rotations_1d(len(ids), params["head_dim"], params["rope_theta"])
    causal = torch.ones(len(ids), len(ids), dtype=torch.bool).tril()
    for i in range(params["n_layers"]):
        p = f"layers.{i}."
        h = h + _attention(
            w, p, _rms(h, w[p + "attention_norm.weight"], params["norm_eps"]), params, rotations, causal
        )
        h = h + _feed_forward(
            w, p, _rms(h, w[p + "ffn_norm.weight"], params["norm_eps"]), torch.nn.functional.silu
        )
    return _rms(h, w["norm.weight"], params["norm_eps"]) @ w["output.weight"].T


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _rotate(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """x: (tokens, heads, head_dim); pairs (x[2i], x[2i+1]) turned by rotations[token, i]."""
    pairs = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2).contiguous())
    return torch.view_as_real(pairs * rotations[:, None, :]).reshape(x.shape)


def _rotations_1d(tokens: int, head_dim: int, theta: float) -> torch.Tensor:
    frequencies = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.arange(tokens, dtype=torch.float64)[:, None] * frequencies[None, :]
    return torch.polar(torch.ones_like(angles), angles)


def _rotations_2d(rows: int, cols: int, head_dim: int, theta: float) -> torch.Tensor:
    """Pixtral's 2-D rotary: even-numbered frequencies turn with the row, odd ones with the column."""
    frequencies = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = []
    for row in range(rows):
        for col in range(cols):
            angles.append(torch.cat([row * frequencies[0::2], col * frequencies[1::2]]))
    stacked = torch.stack(angles)
    return torch.polar(torch.ones_like(stacked), stacked)


def _attention(
    w: Tensors, p: str, x: torch.Tensor, sizes: dict[str, Any], rotations: torch.Tensor, allowed: torch.Tensor
) -> torch.Tensor:
    heads, kv_heads = sizes["n_heads"], sizes["n_kv_heads"]
    head_dim = sizes["head_dim"]
    tokens = x.shape[0]
    q = _rotate((x @ w[p + "attention.wq.weight"].T).reshape(tokens, heads, head_dim), rotations)
    k = _rotate((x @ w[p + "attention.wk.weight"].T).reshape(tokens, kv_heads, head_dim), rotations)
    v = (x @ w[p + "attention.wv.weight"].T).reshape(tokens, kv_heads, head_dim)
    # query head h reads key/value head h // (heads / kv_heads), as Mistral's repeat_interleave does
    k, v = (t.repeat_interleave(heads // kv_heads, dim=1) for t in (k, v))
    scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(head_dim)
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    out = torch.einsum("hqk,khd->qhd", weights, v).reshape(tokens, heads * head_dim)
    return out @ w[p + "attention.wo.weight"].T


def _feed_forward(
    w: Tensors, p: str, x: torch.Tensor, activation: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    gate = activation(x @ w[p + "feed_forward.w1.weight"].T)
    return (gate * (x @ w[p + "feed_forward.w3.weight"].T)) @ w[p + "feed_forward.w2.weight"].T


def _vision(
    w: Tensors,
    params: dict[str, Any],
    image: np.ndarray,
    activation: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """One image's patch features (patches in row-major order, width of the vision encoder)."""
    vision = params["vision_encoder"]
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float64))[None]
    conv = torch.nn.functional.conv2d(
        pixels, w["vision_encoder.patch_conv.weight"], stride=vision["patch_size"]
    )
    _, width, rows, cols = conv.shape
    x = _rms(conv[0].reshape(width, rows * cols).T, w["vision_encoder.ln_pre.weight"], VISION_NORM_EPS)
    sizes = {"n_heads": vision["num_attention_heads"], "n_kv_heads": vision["num_attention_heads"]}
    sizes["head_dim"] = width // sizes["n_heads"]
    rotations = _rotations_2d(rows, cols, sizes["head_dim"], vision["rope_theta"])
    everywhere = torch.ones(rows * cols, rows * cols, dtype=torch.bool)
    for i in range(vision["num_hidden_layers"]):
        p = f"vision_encoder.transformer.layers.{i}."
        x = x + _attention(
            w, p, _rms(x, w[p + "attention_norm.weight"], VISION_NORM_EPS), sizes, rotations, everywhere
        )
        x = x + _feed_forward(w, p, _rms(x, w[p + "ffn_norm.weight"], VISION_NORM_EPS), activation)
    return x


def _adapter(w: Tensors, features: torch.Tensor) -> torch.Tensor:
    a = "vision_language_adapter."
    hidden = torch.nn.functional.gelu(features @ w[a + "w_in.weight"].T + w[a + "w_in.bias"])
    return hidden @ w[a + "w_out.weight"].T + w[a + "w_out.bias"]
