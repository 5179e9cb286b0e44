"""Pixtral-12B (Cosmos-Transfer1's upsampler): mistral-common's tokenizer and image arithmetic.

Images are cut into 16-px patches, each row ends with ``[IMG_BREAK]`` and the image with
``[IMG_END]``; every frame is one image. This module only puts today's arithmetic behind the
family contract: the numbers are those of :class:`cosmos_workflow.tokenizer.Tokenizer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from cosmos_workflow.families.base import Family
from cosmos_workflow.tokenizer import Encoding, Tokenizer, load_tokenizer, tokenizer_path_for

PATCH = 16


def snap_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """Keep the aspect ratio, long side == ``long_side`` (a multiple of 16), short side on the grid."""
    scale = long_side / max(width, height)
    short = max(PATCH, round(min(width, height) * scale / PATCH) * PATCH)
    return (long_side, short) if width >= height else (short, long_side)


class PixtralFamily(Family):
    """Requests as Pixtral sees them: a user message of images, then the prompt."""

    name: ClassVar[str] = "pixtral"
    title: ClassVar[str] = "Pixtral"
    model_types: ClassVar[tuple[str, ...]] = ("llava", "pixtral")
    step: ClassVar[int] = PATCH

    def __init__(self, tokenizer: Tokenizer, system: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.system = system

    @classmethod
    def for_model(cls, model: str | Path | None, system: str | None = None) -> PixtralFamily:
        return cls(load_tokenizer(tokenizer_path_for(model)), system)

    @property
    def max_long_side(self) -> int:
        return self.tokenizer.grid.max_image_size

    def text_tokens(self, prompt: str) -> int:
        return self.tokenizer.text_tokens(prompt, self.system)

    def vision_tokens(self, frames: int, width: int, height: int) -> int:
        return frames * self.tokenizer.image_tokens(width, height)

    def fitted_size(self, width: int, height: int, long_side: int) -> tuple[int, int]:
        return snap_size(width, height, long_side)

    def encode(self, prompt: str, frames: Sequence[np.ndarray], *, pixel_values: bool = True) -> Encoding:
        return self.tokenizer.encode(prompt, frames, pixel_values=pixel_values, system=self.system)

    def ascii_ids(self) -> frozenset[int]:
        return self.tokenizer.ascii_ids()
