"""The seed's output format (name, original_prompt, upsampled_prompt, video_path,
preprocessed_video) plus status and metadata for each item."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["ok", "text_only", "fallback", "error"]

#: statuses a rerun keeps; the others are tried again
DONE_STATUSES: frozenset[str] = frozenset({"ok", "text_only"})


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class UpsampleRecord(BaseModel):
    """One item's result, as written to the output JSON list and the journal."""

    model_config = ConfigDict(extra="forbid")

    name: str
    original_prompt: str
    upsampled_prompt: str | None = Field(description="None when status is 'error'")
    video_path: str | None = None
    preprocessed_video: str | None = None
    status: Status
    error: str | None = None
    warning: str | None = None
    frames: int = 0
    frame_indices: list[int] = Field(default_factory=list)
    width: int | None = None
    height: int | None = None
    source_width: int | None = None
    source_height: int | None = None
    prompt_tokens: int = 0
    image_tokens: int = 0
    text_tokens: int = 0
    completion_tokens: int = 0
    max_tokens: int = 0
    max_model_len: int = 0
    finish_reason: str | None = None
    plan_changes: list[str] = Field(default_factory=list)
    model: str = ""
    engine: str = ""
    sampling: dict[str, Any] = Field(default_factory=dict)
    attempts: int = Field(1, description="generations tried: 2 when a cut-off answer was retried")
    retry: str | None = Field(None, description="why the item was generated again, if it was")
    key: str = Field(description="hash of everything that determines the answer; the journal's key")
    timestamp: str = Field(default_factory=utc_now)

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES
