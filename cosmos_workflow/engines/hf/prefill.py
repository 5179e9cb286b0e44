"""A prefill whose elementwise work is fused (``fuse_prefill``): compiled RMS norms and MLPs.

Eager, a prefill of 128 requests of 1152 tokens spent about 2 s of its 7.6 s of GPU time in
elementwise kernels (H200 profile in BENCHMARKS.md): each RMS norm makes six passes over the
hidden states in float32, each MLP writes its SiLU and its product to memory before the down
projection reads them. Here both are one compiled function each, shared by every layer (the
weights are arguments, so one graph serves all of them) and compiled once for any number of
tokens (dynamic shapes). The matrix products stay cuBLAS's; the norm becomes one kernel, the
SiLU and product one kernel.

Only several-token calls (a prefill, or a chunk of one) take this path. A one-token decoding step
keeps the module's own forward, which the compiled decoding step traces into its graph.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def rms_norm(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' Mistral RMS norm, as a function of its weight (float32 inside, as there)."""
    import torch

    dtype = hidden.dtype
    wide = hidden.to(torch.float32)
    wide = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + eps)
    return weight * wide.to(dtype)


def silu_mlp(hidden: torch.Tensor, gate: torch.Tensor, up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """transformers' Mistral MLP with SiLU (no biases), as a function of its three weights."""
    from torch.nn.functional import linear, silu

    return linear(silu(linear(hidden, gate)) * linear(hidden, up), down)


@cache
def _compiled(function: Callable[..., Any], backend: str) -> Callable[..., Any]:
    import torch

    compiled: Callable[..., Any] = torch.compile(function, dynamic=True, backend=backend)
    return compiled


def fused_forward(module: Any, forward: Callable[[Any], Any], backend: str) -> Callable[[Any], Any]:
    """``forward`` of an RMS norm or a SiLU MLP, through its compiled function for several-token
    inputs outside compilation. ``backend``: torch.compile's (``inductor`` fuses; ``eager`` only
    traces, for tests on machines without a compiler). Other modules keep ``forward``."""
    import torch

    if hasattr(module, "variance_epsilon") and hasattr(module, "weight"):
        norm = _compiled(rms_norm, backend)

        def fused(hidden: Any) -> Any:
            return norm(hidden, module.weight, module.variance_epsilon)

    elif all(hasattr(module, name) for name in ("gate_proj", "up_proj", "down_proj")) and _is_silu(module):
        mlp = _compiled(silu_mlp, backend)

        def fused(hidden: Any) -> Any:
            return mlp(hidden, module.gate_proj.weight, module.up_proj.weight, module.down_proj.weight)

    else:
        return forward

    def choose(hidden: Any) -> Any:
        if hidden.shape[-2] > 1 and not torch.compiler.is_compiling():
            return fused(hidden)
        return forward(hidden)

    return choose


def _is_silu(mlp: Any) -> bool:
    import torch

    layers = (mlp.gate_proj, mlp.up_proj, mlp.down_proj)
    silu = isinstance(mlp.act_fn, torch.nn.SiLU) or type(mlp.act_fn).__name__ == "SiLUActivation"
    return silu and all(getattr(layer, "bias", None) is None for layer in layers)
