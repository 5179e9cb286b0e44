"""Device choice, GPU memory and out-of-memory detection for the hf engine."""

from __future__ import annotations

import gc
import os
import traceback
from typing import TYPE_CHECKING, Any

from cosmos_workflow.errors import ConfigError, ModelLoadError

if TYPE_CHECKING:
    import torch

#: GPU memory kept free beside the weights, the KV cache and prefill activations (allocator slack,
#: CUDA graphs, the vision tower's chunk).
GPU_RESERVE_BYTES = 4 * 1024**3


def pick_device(requested: str | None) -> torch.device:
    """The configured device, else this rank's GPU (LOCAL_RANK under torchrun), else the CPU."""
    import torch

    device: torch.device
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError as exc:
            raise ConfigError(f"invalid device {requested!r}: {exc}; use e.g. cuda:0 or cpu") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {requested} asked for, but torch sees no CUDA GPU; use --device cpu")
        return device
    if torch.cuda.is_available():
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    else:
        device = torch.device("cpu")
    return device


def free_cuda(torch: Any) -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def load_pretrained(
    model_class: Any, checkpoint: Any, device: Any, torch: Any, *, kind: str, hint: str = ""
) -> Any:
    """``model_class.from_pretrained(checkpoint)`` on ``device`` in eval mode (bf16 on CUDA, fp32 on
    the CPU), or one line: it does not fit there, or the folder is not a ``kind`` checkpoint."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        model = model_class.from_pretrained(checkpoint, dtype=dtype, attn_implementation="sdpa")
        return model.to(device).eval()
    except torch.cuda.OutOfMemoryError as exc:
        free_cuda(torch)
        raise ModelLoadError(
            f"checkpoint {checkpoint} does not fit in {device} memory; free the GPU or pick another "
            "with --device"
        ) from exc
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"cannot load {checkpoint} as a {kind} checkpoint: {exc}{hint}") from exc


def is_out_of_memory(exc: BaseException, torch: Any) -> bool:
    """CUDA out-of-memory, also when torch.compile wraps it (BackendCompilerFailed) on the way up."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, torch.cuda.OutOfMemoryError):
            return True
        seen.add(id(current))
        inner = getattr(current, "inner_exception", None)
        current = inner if isinstance(inner, BaseException) else current.__cause__ or current.__context__
    return False


def release_failed_call(exc: BaseException, torch: Any) -> None:
    """Free what the failed call held: its frames (KV cache, activations) live on in the traceback.

    The caller keeps the exception (as the cause of ours) while it retries with a smaller batch;
    without clearing those frames the retry would find the failed attempt's memory still taken.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        inner = getattr(current, "inner_exception", None)
        current = inner if isinstance(inner, BaseException) else current.__cause__ or current.__context__
    free_cuda(torch)
