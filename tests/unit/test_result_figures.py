"""One model for a result's figures: the record, a spec's upsampling_params and the review page's
shot hold the same fields with the same rules, and the files they write keep their key order."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from cosmos_workflow.report import Shot
from cosmos_workflow.report._shots import shot_from_record
from cosmos_workflow.specs.figures import ResultFigures
from cosmos_workflow.specs.prompt_spec import UpsamplingParams
from cosmos_workflow.specs.results import UpsampleRecord

FIGURES: dict[str, Any] = {
    "frames": 2,
    "frame_indices": [0, 7],
    "width": 640,
    "height": 360,
    "source_width": 1280,
    "source_height": 720,
    "prompt_tokens": 1063,
    "image_tokens": 1054,
    "text_tokens": 9,
    "completion_tokens": 95,
    "max_tokens": 300,
    "max_model_len": 4096,
    "finish_reason": "stop",
    "plan_changes": ["max_resolution 480 -> 360"],
}


def record() -> UpsampleRecord:
    return UpsampleRecord(
        name="shot", original_prompt="a car", upsampled_prompt="a red car", status="ok", key="k" * 32,
        model="tiny-random", engine="hf", sampling={"temperature": 0.6}, **FIGURES,
    )  # fmt: skip


def params(**figures: Any) -> UpsamplingParams:
    return UpsamplingParams(
        tool_version="1.0", model="m", engine="hf", status="ok", video_source="input", **figures
    )


def test_a_record_is_written_in_the_order_its_files_have() -> None:
    assert list(record().model_dump(mode="json")) == [
        "name", "original_prompt", "upsampled_prompt", "video_path", "preprocessed_video", "status",
        "error", "warning", *FIGURES, "model", "engine", "sampling", "attempts", "retry", "key",
        "timestamp",
    ]  # fmt: skip


def test_upsampling_params_are_written_in_the_order_spec_files_have() -> None:
    assert list(params().model_dump(mode="json")) == [
        "tool_version", "model", "engine", "status", "video_path", "video_source", "video_note",
        "preprocess", "max_resolution", "frame_sampling", *FIGURES, "sampling", "preprocessed_video",
        "request_key",
    ]  # fmt: skip


def test_a_records_figures_move_to_params_and_to_a_shot_whole() -> None:
    figures = record().figures()
    assert figures == FIGURES
    assert params(**figures).figures() == FIGURES
    shot = shot_from_record(record())
    assert shot.figures() == FIGURES and shot.model == "tiny-random"


def test_a_shot_counts_its_prompt_from_images_and_text_when_not_told() -> None:
    shot = Shot(
        name="n", original_prompt="p", upsampled_prompt=None, status="error", image_tokens=5, text_tokens=2
    )
    assert shot.prompt_tokens == 7 and shot.total_tokens == 7


@pytest.mark.parametrize("model", [ResultFigures, UpsampleRecord, UpsamplingParams, Shot])
@pytest.mark.parametrize(
    ("figure", "value"), [("frames", -1), ("width", -1), ("prompt_tokens", -1), ("frame_indices", [0, -1])]
)
def test_no_holder_takes_a_negative_figure(model: type[BaseModel], figure: str, value: object) -> None:
    model.model_validate(fields_of(model))
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        model.model_validate(fields_of(model, **{figure: value}))


def fields_of(model: type[BaseModel], **changes: object) -> dict[str, object]:
    """A valid input of ``model`` (with ``changes``), from a record's and params' fields."""
    data = record().model_dump() | params().model_dump() | changes
    return {name: value for name, value in data.items() if name in model.model_fields}


def test_the_spec_schema_says_integer_as_it_always_did() -> None:
    schema = UpsamplingParams.model_json_schema()["properties"]
    assert schema["frames"] == {"default": 0, "title": "Frames", "type": "integer"}
    assert schema["width"]["description"] == "frame width sent to the model"
