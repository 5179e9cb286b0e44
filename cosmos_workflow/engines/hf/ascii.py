"""ASCII-only answers in the hf engines (the refiner's ``ascii_only``): every token whose text is
not ASCII gets a logit of minus infinity at each step, so it is never produced, as Cosmos-Predict2's
refiner does with its logits processor."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def banned_mask(allowed: Iterable[int], vocab_size: int, device: Any) -> Any:
    """A (``vocab_size``,) bool tensor on ``device``: True for every id not in ``allowed``."""
    import torch

    banned = torch.ones(vocab_size, dtype=torch.bool)
    ids = torch.tensor(sorted(i for i in allowed if i < vocab_size), dtype=torch.long)
    banned[ids] = False
    return banned.to(device)


class BanTokens:
    """A logits processor for transformers' ``generate``: the ``banned`` tokens never come out."""

    def __init__(self, banned: Any) -> None:
        self.banned = banned

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        return scores.masked_fill(self.banned[: scores.shape[-1]], float("-inf"))


def banning(banned: Any) -> dict[str, Any]:
    """``generate``'s keyword that keeps the ``banned`` tokens out: a ``logits_processor``."""
    from transformers import LogitsProcessorList

    return {"logits_processor": LogitsProcessorList([BanTokens(banned)])}


def ascii_logits_processor(allowed: Iterable[int], vocab_size: int, device: Any) -> dict[str, Any]:
    """``generate``'s keyword for ASCII-only answers: every id not in ``allowed`` banned."""
    return banning(banned_mask(allowed, vocab_size, device))
