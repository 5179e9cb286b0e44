"""SpecStore: create, list, load and save PromptSpec files, safely shared between processes.

(:class:`cosmos_workflow.workflow.PromptSpecManager` adds upsampling on top of this store.)

Files live at ``<specs_dir>/<YYYY-MM-DD>/<name>_<id>.json``. Every write is atomic (temp file +
rename) and happens under an exclusive ``flock`` on a hidden sidecar ``.<file>.lock``; an update
re-reads the file under that lock before changing it, so two processes updating the same spec
never corrupt it and never lose either change. The lock files stay (removing one while another
process waits on it would break the exclusion); they are hidden and tiny.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Unpack

from pydantic import ValidationError

from cosmos_workflow.errors import SpecError
from cosmos_workflow.files import flocked, write_json_atomic
from cosmos_workflow.paths import check_paths, safe_file_name
from cosmos_workflow.specs.prompt_spec import PromptSpec, SpecFields, new_spec
from cosmos_workflow.text import clean_strings, replacement_note
from cosmos_workflow.userfiles import MiB, UserFile, read_user_text

log = logging.getLogger("cosmos_workflow")

DEFAULT_SPECS_DIR = Path("inputs/prompts")


@dataclass(frozen=True)
class StoredSpec:
    """A spec and the file it was read from (or will be written to)."""

    path: Path
    spec: PromptSpec


@dataclass(frozen=True)
class SpecProblem:
    """A spec file that could not be used, and why."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class SpecScan:
    specs: list[StoredSpec] = field(default_factory=list)
    problems: list[SpecProblem] = field(default_factory=list)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of spec file ``path`` (blocks while another process holds it)."""
    with flocked(path.with_name(f".{path.name}.lock")):
        yield


def file_stem(name: str) -> str:
    """A file-name-safe, bounded form of a spec name (other characters become ``_``)."""
    return safe_file_name(name, fallback="spec")


#: one spec; a folder of them is scanned, so each is read through the one door
SPEC_FILE = UserFile(
    what="spec file",
    max_bytes=16 * MiB,
    error=SpecError,
    fix="fix or delete it",
    missing="check the path or run list-specs",
    syntax="json",
)


def load_spec(path: Path) -> PromptSpec:
    """Read and validate one spec file; any problem is a :class:`SpecError` naming the file."""
    text = read_user_text(path, SPEC_FILE)
    try:
        data, replaced = clean_strings(json.loads(text))
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "fix or delete the file"
        ) from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path} holds a JSON {type(data).__name__}, not a spec object; fix or delete it")
    if replaced:
        log.warning("%s: %s", path, replacement_note(replaced))
    try:
        return PromptSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{path} is not a valid spec: {_describe(exc)}; fix or delete the file") from exc


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "spec"
        if error["type"] == "missing":
            parts.append(f"missing {where!r}")
        elif error["type"] == "extra_forbidden":
            parts.append(f"unknown key {where!r}")
        else:
            parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def write_spec(path: Path, spec: PromptSpec) -> None:
    """Atomic write; call it only while holding :func:`locked` for ``path``."""
    data = spec.model_dump(mode="json")
    if not spec.is_upsampled:
        del data["is_upsampled"]  # legacy flag: only kept in the files that had it
    write_json_atomic(path, data)


class SpecStore:
    """The spec folder: create, list, load, save and update specs."""

    def __init__(self, specs_dir: Path = DEFAULT_SPECS_DIR) -> None:
        self.specs_dir = specs_dir

    def path_for(self, spec: PromptSpec) -> Path:
        """Where a new spec goes: ``<specs_dir>/<date>/<name>_<id>.json``."""
        return self.specs_dir / spec.timestamp.date().isoformat() / f"{file_stem(spec.name)}_{spec.id}.json"

    def create(self, name: str, prompt: str, **fields: Unpack[SpecFields]) -> StoredSpec:
        """Write a new spec; the same prompt, video and controls twice is refused (same id)."""
        if not prompt.strip():
            raise SpecError(f"spec {name!r}: the prompt is empty; write a short prompt for the shot")
        video = fields.get("input_video_path")
        if video is not None and not video.strip():
            raise SpecError(f"spec {name!r}: the input video path is empty; pass the video's path")
        check_paths(folders=[self.specs_dir])
        try:
            spec = new_spec(name, prompt, **fields)
        except ValidationError as exc:
            raise SpecError(f"invalid spec {name!r}: {_describe(exc)}") from exc
        existing = self.find(spec.id)
        if existing is not None:
            raise SpecError(
                f"a spec with the same prompt, video and controls already exists: {existing.path}; "
                "use it, or change the prompt or inputs"
            )
        path = self.path_for(spec)
        self.save(spec, path)
        return StoredSpec(path, spec)

    def scan(self) -> SpecScan:
        """Every spec file under the folder (hidden files and folders skipped), sorted by path."""
        scan = SpecScan()
        if not self.specs_dir.is_dir():
            return scan
        for path in sorted(self.specs_dir.rglob("*.json")):
            if any(part.startswith(".") for part in path.relative_to(self.specs_dir).parts):
                continue
            try:
                scan.specs.append(StoredSpec(path, load_spec(path)))
            except SpecError as exc:
                message = str(exc).removeprefix(f"{SPEC_FILE.what} ").removeprefix(f"{path} ")
                scan.problems.append(SpecProblem(path, message))
        return scan

    def list(self) -> list[StoredSpec]:
        return self.scan().specs

    def find(self, spec_id: str) -> StoredSpec | None:
        return next((s for s in self.scan().specs if s.spec.id == spec_id), None)

    def load(self, path: Path) -> PromptSpec:
        return load_spec(path)

    def save(self, spec: PromptSpec, path: Path | None = None) -> Path:
        """Write ``spec`` atomically under the file's lock (replacing whatever is there)."""
        target = path or self.path_for(spec)
        with locked(target):
            write_spec(target, spec)
        return target

    def update(self, path: Path, change: Callable[[PromptSpec], PromptSpec | None]) -> PromptSpec:
        """Read-modify-write under the lock: ``change`` sees the file's current content.

        ``change`` returns the new spec, or None to leave the file as it is.
        """
        with locked(path):
            current = load_spec(path)
            updated = change(current)
            if updated is None:
                return current
            write_spec(path, updated)
            return updated
