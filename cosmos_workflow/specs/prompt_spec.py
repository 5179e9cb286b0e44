"""PromptSpec: one Cosmos shot (prompt, input video, control inputs) as one JSON file.

Upsampling adds three fields and keeps everything else: ``upsampled_prompt`` (the long prompt;
``prompt`` stays the user's original), ``upsampled_at`` and ``upsampling_params`` (what produced
it: model, engine, the video the upsampler saw and why, frames, sizes, token counts, sampling,
tool version). Files written before these fields existed still load; so do files of the earlier
workflow, whose ``is_upsampled`` flag marked a spec whose ``prompt`` already is upsampled text.

The JSON Schema kept in ``cosmos_workflow/schemas`` is generated from this model::

    python -m cosmos_workflow.specs.prompt_spec --write-schema   # or --check (used by the tests)
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypedDict, Unpack

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cosmos_workflow.specs.figures import ResultFigures

Modality = Literal["vis", "edge", "depth", "seg"]
MODALITIES: tuple[Modality, ...] = ("vis", "edge", "depth", "seg")

#: which video the upsampler looks at; "auto" follows Cosmos-Transfer1 (see ``workflow.choose_video``)
UpsampleFrom = Literal["auto", "input", "vis", "edge", "depth", "seg"]

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "prompt_spec.schema.json"


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def spec_id(prompt: str, input_video_path: str | None, control_inputs: Mapping[Modality, str | None]) -> str:
    """``ps_`` + a hash of what defines the shot: the same inputs always give the same id."""
    payload = {"prompt": prompt, "video": input_video_path, "controls": dict(sorted(control_inputs.items()))}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return f"ps_{digest[:16]}"


class _HowMade(BaseModel):
    """Who made the result and from which video: upsampling_params' first fields."""

    model_config = ConfigDict(extra="forbid")

    tool_version: str = Field(description="cosmos-workflow version that wrote the result")
    model: str
    engine: str
    status: Literal["ok", "text_only"] = Field(description="text_only: no usable video; text alone was used")
    video_path: str | None = Field(None, description="the video the upsampler saw (None: text only)")
    video_source: str = Field(description="why that video: input, control:<modality>, or none")
    video_note: str | None = Field(None, description="why the video rule fell back, or why no frames")
    preprocess: bool = True
    max_resolution: int | Literal["auto"] = 480
    frame_sampling: str = "first"


class _RunTrace(BaseModel):
    """The sampling, the clip and the journal key: upsampling_params' last fields, after its figures."""

    model_config = ConfigDict(extra="forbid")

    sampling: dict[str, Any] = Field(default_factory=dict)
    preprocessed_video: str | None = None
    request_key: str = Field("", description="the run journal's key for this request")


class UpsamplingParams(_RunTrace, ResultFigures, _HowMade):
    """How ``upsampled_prompt`` was made: enough to reproduce it or judge it."""

    model_config = ConfigDict(extra="forbid")


class PromptSpec(BaseModel):
    """One shot: the user's prompt and inputs, and (once upsampled) the long prompt."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    schema_version: int = Field(SCHEMA_VERSION, description="files without it are version 0")
    id: str = Field(min_length=1, description="ps_ + hash of prompt, input video and control inputs")
    name: str = Field(min_length=1)
    prompt: str = Field(description="the user's prompt; upsampling never changes it")
    negative_prompt: str = ""
    input_video_path: str | None = Field(
        None, description="relative paths resolve against the current folder"
    )
    control_inputs: dict[Modality, str | None] = Field(
        default_factory=dict,
        description="modality -> control video; None for vis/edge means computed from the input video",
    )
    timestamp: datetime = Field(default_factory=utc_now, description="when the spec was created")
    parent_prompt_text: str | None = Field(None, description="the prompt this spec was derived from")
    upsample_from: UpsampleFrom = Field("auto", description="override which video the upsampler sees")
    is_upsampled: bool = Field(False, description="legacy: set by older versions that replaced prompt")
    upsampled_prompt: str | None = None
    upsampled_at: datetime | None = None
    upsampling_params: UpsamplingParams | None = None

    @field_validator("input_video_path", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def upsampled(self) -> bool:
        """Already done: a new-style result, or a legacy spec whose prompt is upsampled text."""
        return self.upsampled_prompt is not None or self.is_upsampled

    @property
    def inputs_id(self) -> str:
        """The id these inputs would get now; differs from ``id`` after a hand edit."""
        return spec_id(self.prompt, self.input_video_path, self.control_inputs)


class SpecFields(TypedDict, total=False):
    """What a new spec may be given besides its name and prompt (what is not given, or None, is
    :class:`PromptSpec`'s default: no video, no controls, ``upsample_from`` auto, made now)."""

    input_video_path: str | None
    negative_prompt: str
    control_inputs: dict[Modality, str | None] | None
    upsample_from: UpsampleFrom
    timestamp: datetime | None


def new_spec(name: str, prompt: str, **fields: Unpack[SpecFields]) -> PromptSpec:
    """A fresh spec with its deterministic id."""
    controls: dict[Modality, str | None] = dict(fields.get("control_inputs") or {})
    given: dict[str, Any] = {key: value for key, value in fields.items() if value is not None}
    return PromptSpec(
        **(given | {"control_inputs": controls}),
        id=spec_id(prompt, fields.get("input_video_path"), controls),
        name=name,
        prompt=prompt,
    )


def schema_text() -> str:
    """The JSON Schema of :class:`PromptSpec`, as committed."""
    return json.dumps(PromptSpec.model_json_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    """``--write-schema`` rewrites the committed schema; ``--check`` fails when it is stale."""
    if argv == ["--write-schema"]:
        SCHEMA_PATH.parent.mkdir(parents=True, exist_ok=True)
        SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
        print(f"wrote {SCHEMA_PATH}")
        return 0
    if argv == ["--check"]:
        current = SCHEMA_PATH.read_text(encoding="utf-8") if SCHEMA_PATH.exists() else ""
        if current != schema_text():
            print(f"{SCHEMA_PATH} is stale; run: python -m cosmos_workflow.specs.prompt_spec --write-schema")
            return 1
        return 0
    print("usage: python -m cosmos_workflow.specs.prompt_spec --write-schema | --check")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
