"""The family contract: what the planner and the runner ask of a model family.

A family is the model's way of seeing a request: how many tokens a prompt and its frames cost,
which frame sizes the vision encoder takes, and the exact token ids and pixel arrays the model
is fed. One instance is bound to one checkpoint (its tokenizer, its processor's limits). The
pipeline asks its family and never checks which one it has; a new family is one more module.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from cosmos_workflow.tokenizer import Encoding


class Family(abc.ABC):
    """One checkpoint's request arithmetic and encoding."""

    #: the family's name, as messages and ``plan`` show it
    name: ClassVar[str]
    #: the family's name as users know it (``Pixtral``, ``Qwen2.5-VL / Cosmos-Reason1``)
    title: ClassVar[str]
    #: the ``config.json`` model types it serves (families/__init__.FAMILIES maps them to it)
    model_types: ClassVar[tuple[str, ...]]
    #: the grid step of a planned side: sizes shrink by at least this much at a time
    step: ClassVar[int]
    #: the system prompt every request's chat starts with (None: none), counted and encoded as
    #: the family's own chat format places it
    system: str | None = None

    @classmethod
    @abc.abstractmethod
    def for_model(cls, model: str | Path | None, system: str | None = None) -> Family:
        """The family of ``model`` (a checkpoint folder, a tokenizer file or a model name), its
        tokenizer loaded; every request's chat starts with the ``system`` prompt, if any."""

    @property
    @abc.abstractmethod
    def max_long_side(self) -> int:
        """The longest side the vision encoder takes (``--max-resolution auto`` asks for this)."""

    @abc.abstractmethod
    def text_tokens(self, prompt: str) -> int:
        """Tokens of the whole chat for ``prompt`` without any image or video."""

    @abc.abstractmethod
    def vision_tokens(self, frames: int, width: int, height: int) -> int:
        """Tokens that ``frames`` frames of a planned size add to the chat (0 for no frames)."""

    @abc.abstractmethod
    def fitted_size(self, width: int, height: int, long_side: int) -> tuple[int, int]:
        """The planned (width, height) for a source of this size asked at ``long_side``."""

    @abc.abstractmethod
    def encode(self, prompt: str, frames: Sequence[np.ndarray], *, pixel_values: bool = True) -> Encoding:
        """Token ids (and, with ``pixel_values``, the model's pixel arrays) for one request;
        ``frames`` are RGB uint8 HxWx3 arrays at the planned size."""

    @abc.abstractmethod
    def ascii_ids(self) -> frozenset[int]:
        """The token ids an ASCII-only answer may use: those whose text is ASCII, and the end ids."""

    def sizes(self, width: int, height: int, long_side: int, floor: int) -> Iterator[tuple[int, int]]:
        """Planned sizes from ``long_side`` down to ``floor``, largest first (no repeats)."""
        previous = None
        for side in range(long_side, floor - 1, -self.step):
            size = self.fitted_size(width, height, side)
            if size != previous:
                yield size
            previous = size
