"""The seed's input format: a JSON list (or JSONL) of ``{name, prompt, video_path}`` items.

Validation is per item: a bad item becomes one clear :class:`Problem` line and is skipped, the
good ones go on. A file that cannot be read or parsed at all is an :class:`InputFileError`.
In JSONL each line is an item of its own: a line that is not JSON is that item's problem.
Hostile text is made safe here, at the boundary: a UTF-8 BOM is accepted, a key given twice in
one item is that item's problem, a lone surrogate becomes U+FFFD (the item's record says so),
a NUL in a path is the item's problem, and nesting too deep to parse is one clear error (a whole
file) or that item's problem (a JSONL line). The file is read through the one door
(:mod:`cosmos_workflow.userfiles`): a regular file of at most 1 GiB.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from cosmos_workflow.errors import InputFileError
from cosmos_workflow.text import replace_lone_surrogates, replacement_note
from cosmos_workflow.userfiles import GiB, UserFile, read_user_text, too_deep


class BatchItem(BaseModel):
    """One request: a short prompt and, optionally, the video it describes."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(min_length=1, description="unique name of the item; also names its output files")
    prompt: str = Field(description="the short prompt to upsample")
    video_path: Path | None = Field(None, description="video to look at; relative to the prompts file")
    _warning: str | None = PrivateAttr(None)

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
            if "\x00" in value:
                raise ValueError("contains a NUL character; fix the path")
            return Path(value)
        return value

    @property
    def warning(self) -> str | None:
        """What the loader changed in this item (e.g. a broken character replaced), for its record."""
        return self._warning

    def with_warning(self, warning: str | None) -> BatchItem:
        copy = self.model_copy()
        copy._warning = warning
        return copy


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
    items: list[BatchItem] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for entry in _read_entries(path):
        item, problem = _validate(entry, path.parent)
        if problem is None and item is not None and item.name in seen:
            problem = Problem(entry.where, item.name, "duplicate name; give every item a unique name")
        if problem is not None:
            problems.append(problem)
            continue
        assert item is not None
        seen.add(item.name)
        items.append(item)
    return Batch(items=items, problems=problems, source=path)


@dataclass(frozen=True)
class _Entry:
    """One raw item: where it is, its parsed JSON, or why its line could not be parsed."""

    where: str
    record: Any = None
    unparsed: str | None = None


class _Object(dict[str, Any]):
    """A parsed JSON object that remembers the keys it was given more than once."""

    duplicates: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) < len(pairs):
        obj.duplicates = tuple(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
    return obj


#: a JSON list of items; ``-sig``: a UTF-8 BOM (Windows editors) is fine
PROMPTS_FILE = UserFile(
    what="prompts file",
    max_bytes=GiB,
    error=InputFileError,
    fix="pass a JSON list of {name, prompt, video_path} objects, or a .jsonl file",
    syntax="json",
    encoding="utf-8-sig",
)
#: one item per line: nesting is each line's own problem
PROMPTS_LINES = replace(PROMPTS_FILE, syntax="text")


def _read_entries(path: Path) -> list[_Entry]:
    jsonl = path.suffix.lower() == ".jsonl"
    text = read_user_text(path, PROMPTS_LINES if jsonl else PROMPTS_FILE)
    if jsonl:
        return list(_parse_jsonl(text, path))
    return [
        _Entry(f"{path.name} item {n}", record) for n, record in enumerate(_parse_json_list(text, path), 1)
    ]


def _parse_json_list(text: str, path: Path) -> list[Any]:
    try:
        data = json.loads(text, object_pairs_hook=_object)
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


_FLAT = "each item must be a flat {name, prompt, video_path} object"


def _parse_jsonl(text: str, path: Path) -> Iterator[_Entry]:
    # JSON Lines ends lines with \n only: splitlines() would also split inside strings at U+2028,
    # U+0085 or \x1c, which json.dumps(..., ensure_ascii=False) writes raw
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        if too_deep(line, "json"):
            yield _Entry(where, unparsed=f"nested too deeply to read; {_FLAT}")
            continue
        try:
            yield _Entry(where, json.loads(line, object_pairs_hook=_object))
        except json.JSONDecodeError as exc:
            yield _Entry(where, unparsed=f"not valid JSON (column {exc.colno}: {exc.msg}); fix the line")


def _validate(entry: _Entry, base: Path) -> tuple[BatchItem | None, Problem | None]:
    if entry.unparsed is not None:
        return None, Problem(entry.where, None, entry.unparsed)
    record = entry.record
    if not isinstance(record, dict):
        return None, Problem(entry.where, None, f"expected an object, got {type(record).__name__}")
    record, replaced = _clean(record)
    name = record.get("name")
    label = name if isinstance(name, str) else None
    duplicates = getattr(entry.record, "duplicates", ())
    if duplicates:
        keys = ", ".join(repr(k) for k in duplicates)
        return None, Problem(entry.where, label, f"key {keys} given more than once; keep one")
    try:
        item = BatchItem.model_validate(record)
    except ValidationError as exc:
        return None, Problem(entry.where, label, _describe(exc))
    if item.video_path is not None and not item.video_path.is_absolute():
        item = item.model_copy(update={"video_path": (base / item.video_path)})
    return item.with_warning(replacement_note(replaced) if replaced else None), None


def _clean(record: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The record with lone surrogates in its text replaced, and the keys where that happened."""
    cleaned = {k: replace_lone_surrogates(v) if isinstance(v, str) else v for k, v in record.items()}
    return cleaned, [k for k, v in record.items() if isinstance(v, str) and cleaned[k] != v]


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
