"""Options shared by several commands, declared once."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import typer

from cosmos_workflow.budget import PlanSettings
from cosmos_workflow.errors import ConfigError


def parse_resolution(value: str) -> int | Literal["auto"]:
    if value == "auto":
        return "auto"
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"--max-resolution {value!r} is not a number; pass e.g. 480, or 'auto'") from None
    if number < 16:
        raise ConfigError(f"--max-resolution {number} is below one 16-px patch; pass 16 or more")
    return number


PromptsFile = Annotated[
    Path,
    typer.Argument(help="JSON list (or .jsonl) of {name, prompt, video_path} items", show_default=False),
]
Preprocess = Annotated[
    bool,
    typer.Option(
        "--preprocess-videos/--no-preprocess",
        help="fit frames to the token budget; --no-preprocess sends them as stock Cosmos does",
    ),
]
MaxResolution = Annotated[
    str, typer.Option(help="long side cap in pixels (16-px grid), or 'auto' for the largest that fits")
]
NumFrames = Annotated[int, typer.Option(min=0, max=16, help="frames per video")]


class Sampling(StrEnum):
    first = "first"
    uniform = "uniform"


FrameSampling = Annotated[
    Sampling,
    typer.Option(help="'first' frames (what the Cosmos checkpoint saw in training) or spread 'uniform'ly"),
]
MaxTokens = Annotated[int, typer.Option(min=1, help="tokens reserved for the answer")]
MaxModelLen = Annotated[int, typer.Option(min=16, help="the model's context: prompt + answer")]
Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        "--checkpoint-dir",
        help="checkpoint folder (its tekken.json is the tokenizer), 'tiny-random', or a served model name",
    ),
]


def plan_settings(
    *,
    preprocess: bool,
    max_resolution: str,
    num_frames: int,
    frame_sampling: Sampling,
    max_tokens: int,
    max_model_len: int,
) -> PlanSettings:
    return PlanSettings.model_validate(
        {
            "preprocess": preprocess,
            "max_resolution": parse_resolution(max_resolution),
            "num_frames": num_frames,
            "frame_sampling": frame_sampling.value,
            "max_tokens": max_tokens,
            "max_model_len": max_model_len,
        }
    )
