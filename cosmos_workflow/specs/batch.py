"""The seed's input format: a JSON list (or JSONL) of ``{name, prompt, video_path}`` items.

Validation is per item: a bad item becomes one clear :class:`Problem` line and is skipped, the
good ones go on. A file that cannot be read or parsed at all is an :class:`InputFileError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cosmos_workflow.errors import InputFileError


class BatchItem(BaseModel):
    """One request: a short prompt and, optionally, the video it describes."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(min_length=1, description="unique name of the item; also names its output files")
    prompt: str = Field(description="the short prompt to upsample")
    video_path: Path | None = Field(None, description="video to look at; relative to the prompts file")

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt is empty; write a short prompt for this item")
        return value

    @field_validator("video_path", mode="before")
    @classmethod
    def _path_from_str(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return None
            return Path(value)
        return value


@dataclass(frozen=True)
class Problem:
    """A bad input item: where it is, its name when known, and what to do."""

    where: str
    name: str | None
    message: str

    def __str__(self) -> str:
        label = f"{self.where} ({self.name!r})" if self.name else self.where
        return f"{label}: {self.message}"


@dataclass(frozen=True)
class Batch:
    items: list[BatchItem]
    problems: list[Problem]
    source: Path


def load_batch(path: Path) -> Batch:
    """Read a prompts file; relative video paths resolve against the file's folder."""
    raw = _read_records(path)
    items: list[BatchItem] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, record in enumerate(raw):
        where = f"{path.name} item {index + 1}"
        item, problem = _validate(record, where, path.parent)
        if problem is None and item is not None and item.name in seen:
            problem = Problem(where, item.name, "duplicate name; give every item a unique name")
        if problem is not None:
            problems.append(problem)
            continue
        assert item is not None
        seen.add(item.name)
        items.append(item)
    return Batch(items=items, problems=problems, source=path)


def _read_records(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(f"prompts file {path} not found; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read prompts file {path}: {exc}") from exc
    if path.suffix.lower() == ".jsonl":
        return list(_parse_jsonl(text, path))
    return _parse_json_list(text, path)


def _parse_json_list(text: str, path: Path) -> list[Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "it must be a JSON list of {name, prompt, video_path} objects, or use .jsonl"
        ) from exc
    if not isinstance(data, list):
        raise InputFileError(
            f"{path} holds a JSON {type(data).__name__}, not a list; wrap the items in [ ... ]"
        )
    return data


def _parse_jsonl(text: str, path: Path) -> Iterable[Any]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputFileError(f"{path} line {number} is not valid JSON: {exc.msg}") from exc


def _validate(record: Any, where: str, base: Path) -> tuple[BatchItem | None, Problem | None]:
    name = record.get("name") if isinstance(record, dict) else None
    label = name if isinstance(name, str) else None
    if not isinstance(record, dict):
        return None, Problem(where, None, f"expected an object, got {type(record).__name__}")
    try:
        item = BatchItem.model_validate(record)
    except ValidationError as exc:
        return None, Problem(where, label, _describe(exc))
    if item.video_path is not None and not item.video_path.is_absolute():
        item = item.model_copy(update={"video_path": (base / item.video_path)})
    return item, None


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "item"
        if error["type"] == "extra_forbidden":
            parts.append(f"unknown key {field!r}; allowed keys are name, prompt, video_path")
        elif error["type"] == "missing":
            parts.append(f"missing {field!r}; add it")
        else:
            message = error["msg"].removeprefix("Value error, ")
            parts.append(f"{field}: {message}")
    return "; ".join(parts)
