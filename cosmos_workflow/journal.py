"""Append-only, fsync'd results keyed by request: a crash loses nothing, a rerun resumes.

One JSON record per line. A journal is input like any other: each line read back is checked by
the record's rules (:meth:`UpsampleRecord.read_back`, with the run's clips folder), and a line
that fails is reported once, naming the journal, the line and the fix, and skipped: its item is
not done, so a rerun redoes it and a merge lists it as missing. Only a last line without its
newline is an interrupted write (a crash mid-append, or a writer still appending); the next
append seals it with :data:`SEAL`, so it is known for what it is ever after. Any other line that
fails is corrupt. The final output is written atomically from the journal.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
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
#: lines already reported by this process (a run reads its journals more than once)
_reported: set[tuple[Path, int]] = set()

#: what an append writes after a last line torn by an earlier crash: it ends that line, keeps it
#: invalid JSON (it adds no closing brace or quote), and tells a reader (or a person) what it is
SEAL = " <- cut short by an interrupted write\n"


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

    def read(self, *, clips_dir: Path) -> dict[str, UpsampleRecord]:
        """Latest valid record per key (see :func:`read_records`)."""
        return {record.key: record for record in read_records(self.path, clips_dir=clips_dir)}

    def append(self, records: Iterable[UpsampleRecord]) -> None:
        records = list(records)
        encoded = [_json_line(r) for r in records]
        lines = "".join(encoded)
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _interrupts_held(), self.path.open("a", encoding="utf-8") as handle:
            if handle.tell() > 0 and not _ends_with_newline(self.path):
                handle.write(SEAL)
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


#: signals that arrived while a journal write held interrupts (raised again when it ends)
_deferred: list[int] = []
_holding = threading.Event()


def defer_interrupt(signum: int) -> bool:
    """For the interrupt handler: True (and ``signum`` kept for later) while a journal write holds
    interrupts; the write raises it again when it ends."""
    if not _holding.is_set():
        return False
    _deferred.append(signum)
    return True


@contextmanager
def _interrupts_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block ends: a saved line and the count of saved lines
    (which the interrupt message reports) never disagree. Only the main thread runs Python's
    signal handlers; it blocks the signals here, but another thread of the process (the
    preprocessing pool, OpenMP's) may take one, and its handler then runs in the main thread at
    once: so the handler asks :func:`defer_interrupt` first, and the signal is raised again here."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    _holding.set()
    try:
        yield
    finally:
        _holding.clear()
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        if _deferred:
            signum = _deferred[0]
            _deferred.clear()
            signal.raise_signal(signum)


def read_records(path: Path, *, clips_dir: Path, warn: bool = True) -> Iterator[UpsampleRecord]:
    """The valid records of one journal (``clips_dir``: the run's clips folder, which the records'
    clips must lie in). An invalid line is reported and skipped (see the module docstring); an
    unfinished last line is reported only with ``warn`` (not for another rank's live journal)."""
    raw = open_user_file_if_exists(path, JOURNAL)
    if raw is None:
        return
    with raw as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield UpsampleRecord.read_back(line, clips_dir=clips_dir)
            except ValidationError as exc:
                _report(path, number, line, exc, warn=warn)


def _report(path: Path, number: int, line: bytes, exc: ValidationError, *, warn: bool) -> None:
    """One line for a journal line that holds no valid record, once per process."""
    if line.endswith(SEAL.encode()):
        log.debug("%s line %d was cut short by an interrupted write; its item was redone", path, number)
    elif not line.endswith(b"\n"):
        if warn and _first_report(path, number):
            log.warning(
                "%s line %d is incomplete (an interrupted write); ignored: its item counts as not done "
                "(an upsample run redoes it)",
                path,
                number,
            )
    elif _first_report(path, number):
        log.warning(
            "%s line %d is corrupt (%s); ignored: its item counts as not done (an upsample run "
            "redoes it); delete the line to stop this warning",
            path,
            number,
            _reason(exc),
        )


def _first_report(path: Path, number: int) -> bool:
    new = (path, number) not in _reported
    _reported.add((path, number))
    return new


def _reason(exc: ValidationError, shown: int = 3) -> str:
    """What is wrong with a line, in a few words: not JSON, or which fields break which rule."""
    errors = exc.errors(include_url=False, include_input=False)
    if any(error["type"] == "json_invalid" for error in errors):
        return "not a JSON record"
    parts = [_error_text(error["loc"], error["msg"]) for error in errors[:shown]]
    more = f"; and {len(errors) - shown} more" if len(errors) > shown else ""
    return "; ".join(parts) + more


def _error_text(loc: tuple[int | str, ...], message: str) -> str:
    message = message.removeprefix("Value error, ")
    return f"{'.'.join(map(str, loc))}: {message}" if loc else message


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


def done_keys(output: Path, *, clips_dir: Path) -> set[str]:
    """Resume, the one question asked of the journals: which request keys are finished (any
    journal of ``output``: this process', another rank's, an earlier run's; valid records only,
    ``clips_dir`` being the run's clips folder)."""
    done: set[str] = set()
    for path in journals_for(output):
        # another rank may be appending right now: an unfinished last line is normal there
        done.update(r.key for r in read_records(path, clips_dir=clips_dir, warn=False) if r.done)
    return done


def set_aside(journals: Iterable[Path]) -> None:
    """``--force``: keep each journal as ``.old`` so nothing in it counts as done any more."""
    for path in journals:
        Journal(path).reset()
