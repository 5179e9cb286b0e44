"""A shot as the review page shows it, built from an output record or from a PromptSpec file.

Both sources describe the same thing (the prompt, the frames the model saw, the tokens, what the
planner changed); :class:`Shot` is that common view, so the page has one shape to render.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from cosmos_workflow.errors import InputFileError
from cosmos_workflow.specs.figures import ResultFigures
from cosmos_workflow.specs.results import UpsampleRecord
from cosmos_workflow.specs.store import StoredSpec
from cosmos_workflow.userfiles import GiB, UserFile, read_user_text

#: a spec that has not been upsampled yet
PENDING = "pending"

_RECORDS = TypeAdapter(list[UpsampleRecord])


class Shot(ResultFigures):
    """One reviewed item: what went in, what the model saw (its figures), what it wrote."""

    model_config = ConfigDict(frozen=True)

    name: str
    original_prompt: str
    upsampled_prompt: str | None
    status: str
    warning: str | None = None
    error: str | None = None
    video_path: str | None = None
    preprocessed_video: str | None = None
    model: str = ""
    engine: str = ""
    sampling: dict[str, Any] = Field(default_factory=dict)
    timestamp: str | None = None
    source_file: str | None = Field(None, description="the spec file the shot came from (spec folders only)")

    @model_validator(mode="before")
    @classmethod
    def _prompt_is_images_and_text(cls, data: Any) -> Any:
        """A shot's prompt is its images plus its text, unless given."""
        if isinstance(data, dict) and "prompt_tokens" not in data:
            return {**data, "prompt_tokens": data.get("image_tokens", 0) + data.get("text_tokens", 0)}
        return data

    @property
    def total_tokens(self) -> int:
        """Prompt plus answer: what the shot cost; the page sorts by it."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """``(width, height)`` of the frames sent, or None when none were sent."""
        if self.frame_indices and self.width and self.height:
            return self.width, self.height
        return None


#: what a shot takes, by name, from the records and params it is read from; its prompt tokens are
#: counted from images and text (hand-written params may hold those alone)
_SHOT_FIELDS: set[str] = set(Shot.model_fields) - {"prompt_tokens"}


def shot_from_record(record: UpsampleRecord) -> Shot:
    """The record's shot: the fields they share, by name (figures, item and engine)."""
    return Shot(**record.model_dump(include=_SHOT_FIELDS))


def shot_from_spec(stored: StoredSpec) -> Shot:
    """A spec's shot; one not upsampled yet is ``pending``."""
    spec, params = stored.spec, stored.spec.upsampling_params
    if params is None:
        return _unparameterised_spec(stored)
    return Shot(
        **params.model_dump(include=_SHOT_FIELDS),  # figures, status, video, model, engine, sampling
        name=spec.name,
        original_prompt=spec.prompt,
        upsampled_prompt=spec.upsampled_prompt,
        warning=params.video_note,
        timestamp=spec.upsampled_at.isoformat() if spec.upsampled_at else None,
        source_file=str(stored.path),
    )


def _unparameterised_spec(stored: StoredSpec) -> Shot:
    """Not upsampled yet, or upsampled by the earlier workflow (which replaced ``prompt``)."""
    spec = stored.spec
    legacy = spec.is_upsampled and spec.upsampled_prompt is None
    return Shot(
        name=spec.name,
        original_prompt=(spec.parent_prompt_text or "") if legacy else spec.prompt,
        upsampled_prompt=spec.prompt if legacy else spec.upsampled_prompt,
        status="ok" if spec.upsampled else PENDING,
        warning="legacy spec: upsampled by an earlier version, no parameters recorded" if legacy else None,
        video_path=spec.input_video_path,
        source_file=str(stored.path),
    )


#: what ``report`` reads back: the output JSON an ``upsample-prompts`` run wrote
RESULTS_FILE = UserFile(
    what="results file",
    max_bytes=GiB,
    error=InputFileError,
    fix="pass the output JSON of upsample-prompts",
    missing="pass the output JSON of upsample-prompts",
    syntax="json",
)


def load_records(path: Path) -> list[UpsampleRecord]:
    """Read an ``upsample-prompts`` output file; any problem is one :class:`InputFileError` line."""
    text = read_user_text(path, RESULTS_FILE)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "pass the output JSON of upsample-prompts"
        ) from exc
    try:
        return _RECORDS.validate_python(data)
    except ValidationError as exc:
        raise InputFileError(f"{path} is not an upsample-prompts output: {_first_problem(exc)}") from exc


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "top level"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"item {where}: {error['msg']}{more}; pass the JSON list that upsample-prompts wrote"


def shots_from_records(records: Sequence[UpsampleRecord]) -> list[Shot]:
    return [shot_from_record(record) for record in records]
