"""The seed's output format (name, original_prompt, upsampled_prompt, video_path,
preprocessed_video) plus status and metadata for each item.

A record read back (a journal line, an entry of an output file) is input like any other: it is
validated strictly (:meth:`UpsampleRecord.read_back`) by the record's own rules, the same a run
follows when it writes one: ``ok``, ``text_only`` and ``fallback`` (the original
prompt) hold a non-empty upsampled prompt and ``error`` none, counts are not negative, and
``preprocessed_video`` is null or a clip directly inside the run's clips folder.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from cosmos_workflow.specs.figures import ResultFigures

Status = Literal["ok", "text_only", "fallback", "error"]

#: statuses a rerun keeps; the others are tried again
DONE_STATUSES: frozenset[str] = frozenset({"ok", "text_only"})

#: the validation context's key for the folder a record's clip must lie in (see ``read_back``)
_CLIPS_DIR = "clips_dir"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _RecordItem(BaseModel):
    """The item and its outcome: a record's first fields."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    original_prompt: str
    upsampled_prompt: str | None = Field(description="None when status is 'error'")
    video_path: str | None = None
    preprocessed_video: str | None = None
    status: Status
    error: str | None = None
    warning: str | None = None


class _RecordRun(BaseModel):
    """Who answered and how: a record's last fields, after its figures."""

    model_config = ConfigDict(extra="forbid")

    model: str = ""
    engine: str = ""
    sampling: dict[str, Any] = Field(default_factory=dict)
    attempts: int = Field(1, description="generations tried: 2 when a cut-off answer was retried")
    retry: str | None = Field(None, description="why the item was generated again, if it was")
    encoder_tokens: int | None = Field(
        None, ge=0, description="the answer's tokens for the generator's text encoder; absent without one"
    )
    key: str = Field(
        min_length=1, description="hash of everything that determines the answer; the journal's key"
    )
    timestamp: str = Field(default_factory=utc_now)


class UpsampleRecord(_RecordRun, ResultFigures, _RecordItem):
    """One item's result, as written to the output JSON list and the journal: the item's fields,
    then its figures, then the run's (the bases in reverse give that order; see ``specs.figures``)."""

    model_config = ConfigDict(extra="forbid")

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES

    @model_serializer(mode="wrap")
    def _without_absent_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``encoder_tokens`` is written only when counted: files of runs without an encoder
        tokenizer keep the format they had before it existed."""
        data: dict[str, Any] = handler(self)
        if data.get("encoder_tokens") is None:
            data.pop("encoder_tokens", None)
        return data

    @classmethod
    def read_back(cls, data: str | bytes | dict[str, Any], *, clips_dir: Path) -> UpsampleRecord:
        """A record read back from a journal line (JSON text) or an output file's entry (parsed
        JSON), checked as input: strict types, the record's rules, and ``preprocessed_video``
        inside ``clips_dir`` (the run's clips folder). Raises ``ValidationError``."""
        context = {_CLIPS_DIR: clips_dir}
        if isinstance(data, dict):
            return cls.model_validate(data, strict=True, context=context)
        return cls.model_validate_json(data, strict=True, context=context)

    @field_validator("preprocessed_video")
    @classmethod
    def _clip_in_clips_dir(cls, value: str | None, info: ValidationInfo) -> str | None:
        folder = (info.context or {}).get(_CLIPS_DIR)
        if value is not None and isinstance(folder, Path) and not _directly_inside(value, folder):
            raise ValueError(f"{value!r} is not a clip in the run's clips folder {folder}")
        return value

    @model_validator(mode="after")
    def _prompt_fits_status(self) -> Self:
        """A done record holds an upsampled prompt, a fallback the original, an error none (the
        rules a run follows when it writes one)."""
        if self.status in DONE_STATUSES and not (self.upsampled_prompt or "").strip():
            raise ValueError(f"status {self.status!r} without an upsampled_prompt")
        if self.status == "error" and self.upsampled_prompt is not None:
            raise ValueError("status 'error' with an upsampled_prompt (it must be null)")
        if self.status == "fallback" and not (self.upsampled_prompt or "").strip():
            raise ValueError("status 'fallback' without the original prompt as upsampled_prompt")
        return self


def _directly_inside(path: str, folder: Path) -> bool:
    """``path`` names a file directly in ``folder`` (lexically: ``..`` and relative paths resolved
    against the working folder, as the run that wrote it did)."""
    if "\x00" in path:
        return False
    return Path(os.path.abspath(path)).parent == Path(os.path.abspath(folder))
