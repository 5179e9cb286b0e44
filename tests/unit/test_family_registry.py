"""A model family is its module and one line in ``families.FAMILIES``: a toy family with 32-pixel
patches (as Qwen3-VL, Cosmos-Reason2's model, has) registered there is chosen from a checkpoint's
``config.json``, named in messages, and plans with its own arithmetic through the real planner."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from cosmos_workflow import api, families
from cosmos_workflow.errors import UsageError
from cosmos_workflow.families import Family, family_for, family_name, family_title
from cosmos_workflow.planner import PlanSettings
from cosmos_workflow.specs.batch import BatchItem
from cosmos_workflow.tokenizer import Encoding
from tests.videos import make_video

PATCH = 32


class ToyFamily(Family):
    """Text is one token a word plus 4; each frame one token per 32x32 patch."""

    name: ClassVar[str] = "toy_vl"
    title: ClassVar[str] = "Toy-VL"
    model_types: ClassVar[tuple[str, ...]] = ("toy_vl",)
    step: ClassVar[int] = PATCH

    def __init__(self, system: str | None = None) -> None:
        self.system = system

    @classmethod
    def for_model(cls, model: str | Path | None, system: str | None = None) -> ToyFamily:
        return cls(system)

    @property
    def max_long_side(self) -> int:
        return 640

    def text_tokens(self, prompt: str) -> int:
        return len(prompt.split()) + 4

    def vision_tokens(self, frames: int, width: int, height: int) -> int:
        return frames * (width // PATCH) * (height // PATCH)

    def fitted_size(self, width: int, height: int, long_side: int) -> tuple[int, int]:
        scale = long_side / max(width, height)
        short = max(PATCH, int(min(width, height) * scale) // PATCH * PATCH)
        long = long_side // PATCH * PATCH
        return (long, short) if width >= height else (short, long)

    def encode(self, prompt: str, frames: Sequence[np.ndarray], *, pixel_values: bool = True) -> Encoding:
        images = [7] * sum(self.vision_tokens(1, f.shape[1], f.shape[0]) for f in frames)
        return Encoding(token_ids=[1, *images, *[5] * len(prompt.split()), 2, 3, 4], pixel_values=[])

    def ascii_ids(self) -> frozenset[int]:
        return frozenset(range(128))


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """The toy family's one line in FAMILIES, and a checkpoint folder of its model type."""
    monkeypatch.setattr(families, "FAMILIES", (*families.FAMILIES, ToyFamily))
    folder = tmp_path / "toy-checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "toy_vl"}), encoding="utf-8")
    family_for.cache_clear()
    yield folder
    family_for.cache_clear()


def test_a_registered_family_is_chosen_named_and_plans_with_its_own_arithmetic(
    registered: Path, tmp_path: Path
) -> None:
    assert isinstance(family_for(registered), ToyFamily)
    assert (family_name(registered), family_title("toy_vl")) == ("toy_vl", "Toy-VL")
    video = make_video(tmp_path / "shot.mp4", 1280, 720, frames=4)
    items = [BatchItem(name="shot", prompt="a red car turns left", video_path=video)]

    [plan] = api.plan(items, PlanSettings(), model=registered)

    # 480 wide (the default resolution) on the 32-pixel grid: 256 high, where Pixtral's 16 gives 272
    assert plan.fits and (plan.width, plan.height) == (480, 256)
    assert plan.image_tokens == plan.frames * (480 // PATCH) * (256 // PATCH)
    assert plan.total_tokens == plan.image_tokens + 5 + 4


def test_without_its_line_the_same_checkpoint_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "toy-checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "toy_vl"}), encoding="utf-8")
    with pytest.raises(
        UsageError, match=r"'toy_vl' checkpoint, a model family cosmos-workflow does not support"
    ):
        family_name(folder)
