"""Append-only, fsync'd results keyed by request: a crash loses nothing, a rerun resumes.

One JSON record per line. A line torn by a crash (SIGKILL mid-write) is ignored on reading; the
item it held is simply done again. The final output is written atomically from the journal.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from cosmos_workflow.errors import InputFileError
from cosmos_workflow.specs.results import UpsampleRecord
from cosmos_workflow.text import clean_strings, replacement_note
from cosmos_workflow.userfiles import GiB, UserFile, open_user_file_if_exists

log = logging.getLogger("cosmos_workflow")

#: told of each group of records a journal has just saved (the run's result stream)
OnSaved = Callable[[Sequence[UpsampleRecord]], None]

#: records appended by this process, per journal: what an interrupted run reports as saved
_saved: Counter[Path] = Counter()


def saved_this_process() -> dict[Path, int]:
    """Journal path -> records this process appended to it (for the interrupt message)."""
    return dict(_saved)


def journal_path_for(output: Path, suffix: str = "") -> Path:
    """``out.json`` -> ``out.json.journal.jsonl`` (``suffix`` e.g. ``.rank1`` for a torchrun rank)."""
    return output.with_name(f"{output.name}{suffix}.journal.jsonl")


class Journal:
    """An append-only JSONL journal of :class:`UpsampleRecord` s."""

    def __init__(self, path: Path, on_saved: OnSaved | None = None) -> None:
        self.path = path
        #: called with each appended group of records once they are on disk
        self.on_saved = on_saved

    def read(self) -> dict[str, UpsampleRecord]:
        """Latest record per key; torn or invalid lines are skipped."""
        return {record.key: record for record in read_records(self.path)}

    def append(self, records: Iterable[UpsampleRecord]) -> None:
        records = list(records)
        encoded = [_json_line(r) for r in records]
        lines = "".join(encoded)
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            if handle.tell() > 0 and not _ends_with_newline(self.path):
                handle.write("\n")  # seal a line torn by an earlier crash
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())
        _saved[self.path] += len(encoded)
        if self.on_saved is not None:
            self.on_saved(records)

    def reset(self) -> None:
        """Start over (``--force``): the old journal is kept aside, not deleted."""
        if self.path.exists():
            os.replace(self.path, self.path.with_name(self.path.name + ".old"))


#: a journal is read like any file a user names: regular, bounded (it is read line by line)
JOURNAL = UserFile(
    what="journal",
    max_bytes=4 * GiB,
    error=InputFileError,
    fix="move it aside (its items are then redone) or pass another --output-file",
)


def read_records(path: Path, *, warn: bool = True) -> Iterator[UpsampleRecord]:
    """Records of one journal; a torn line (a crash mid-write, or a writer still appending) is
    skipped, with a warning unless ``warn=False`` (reading another rank's live journal)."""
    raw = open_user_file_if_exists(path, JOURNAL)
    if raw is None:
        return
    with io.TextIOWrapper(raw, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield UpsampleRecord.model_validate_json(line)
            except ValidationError:
                if warn:
                    log.warning(
                        "%s line %d is incomplete (interrupted write); that item will be redone",
                        path.name,
                        number,
                    )


def _json_line(record: UpsampleRecord) -> str:
    """One journal line; never fails on text UTF-8 cannot hold (the record then says what changed)."""
    try:
        return record.model_dump_json() + "\n"
    except PydanticSerializationError:
        data, fields = clean_strings(record.model_dump())
        note = replacement_note(fields)
        data["warning"] = f"{data['warning']}; {note}" if data.get("warning") else note
        return UpsampleRecord.model_validate(data).model_dump_json() + "\n"


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def rank_journal_suffix(rank: int) -> str:
    """The journal suffix of torchrun rank ``rank``: ``out.json.rank1.journal.jsonl``."""
    return f".rank{rank}"


def journals_for(output: Path) -> list[Path]:
    """Every journal of ``output`` that exists: single-process first, then ranks in order."""
    single = journal_path_for(output)
    pattern = re.compile(re.escape(output.name) + r"\.rank(\d+)\.journal\.jsonl")
    ranked: list[tuple[int, Path]] = []
    if output.parent.is_dir():
        for path in output.parent.iterdir():
            found = pattern.fullmatch(path.name)
            if found:
                ranked.append((int(found.group(1)), path))
    paths = [single] if single.is_file() else []
    return paths + [path for _, path in sorted(ranked)]


def done_keys(output: Path) -> set[str]:
    """Resume, the one question asked of the journals: which request keys are finished (any
    journal of ``output``: this process', another rank's, an earlier run's)."""
    done: set[str] = set()
    for path in journals_for(output):
        # another rank may be appending right now: a torn last line is normal there
        done.update(r.key for r in read_records(path, warn=False) if r.done)
    return done


def set_aside(journals: Iterable[Path]) -> None:
    """``--force``: keep each journal as ``.old`` so nothing in it counts as done any more."""
    for path in journals:
        Journal(path).reset()
