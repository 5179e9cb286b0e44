"""Merge the journals beside an output (one per torchrun rank, plus the single-process one) into it.

The merge is a file step, not a collective: it reads journals and writes the output JSON list
atomically, in the order of the prompts file, each item exactly once.

Which record an item gets: among the records that match it, the latest *done* one (status ok or
text_only); if none is done, the latest of any status (so a failed item shows its error); if no
record matches, the item is listed as missing and left out of the output. "Latest" is the record's
timestamp, ties broken by reading order (single-process journal first, then rank 0, 1, ...; within a
journal, later lines win), so a ``--force`` rerun's records replace the older ones.

Matching comes in two kinds:

* by request key (:func:`by_key`): exact, used inside a torchrun run, where every rank knows the
  options and so each item's :func:`~cosmos_workflow.runner.request_key`;
* by item name and original prompt: used by the ``merge`` command. Keys hash every option and the
  video's absolute path, size and mtime, so a merge run later, elsewhere (a Docker mount, a copied
  folder) or with one flag spelled differently would find nothing. Names are unique within a
  prompts file and the prompt must be identical, so a record cannot land on the wrong item.

Every record is read back as input (:meth:`UpsampleRecord.read_back`): one that breaks the
record's rules is reported and never chosen.

:func:`merge_output` (the ``merge`` command) also takes the records the output already holds, read
first (so a journal's record wins a tie), and follows a run's output rules: the output is never
replaced by less than it holds (a record dropped, a done record replaced by a failed one, an
entry or a whole file that is not a valid record) unless ``force``; then the old file is kept
beside it as ``<output>.bak-<UTC time>``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path

from cosmos_workflow.errors import InputFileError, OutputShrinkError
from cosmos_workflow.files import keep_copy, write_json_atomic
from cosmos_workflow.journal import journals_for, read_records
from cosmos_workflow.specs.batch import BatchItem
from cosmos_workflow.specs.results import UpsampleRecord
from cosmos_workflow.userfiles import GiB, UserFile, read_user_text

log = logging.getLogger("cosmos_workflow")

Ident = str | tuple[str, str]


@dataclass(frozen=True)
class Matching:
    """How records are paired with items: both sides map to the same identity."""

    of_item: Callable[[BatchItem], Ident]
    of_record: Callable[[UpsampleRecord], Ident]


#: by item name and original prompt (the ``merge`` command)
BY_NAME = Matching(lambda item: (item.name, item.prompt), lambda rec: (rec.name, rec.original_prompt))


def by_key(keys: Mapping[str, str]) -> Matching:
    """By request key, exact (inside a run); ``keys`` maps item name -> key."""
    return Matching(lambda item: keys[item.name], lambda rec: rec.key)


@dataclass(frozen=True)
class MergeResult:
    """The merged records in input order, and the names of items no journal holds."""

    records: list[UpsampleRecord]
    missing: list[str]
    journals: list[Path] = field(default_factory=list)
    #: valid records the output held before the merge (``merge_output`` only)
    held: int = 0
    #: where the replaced output was kept, when the merge dropped something it held (``force``)
    kept: Path | None = None

    @property
    def complete(self) -> bool:
        return not self.missing


def merge_records(
    items: Sequence[BatchItem],
    journals: Sequence[Path],
    match: Matching = BY_NAME,
    *,
    clips_dir: Path,
    earlier: Iterable[UpsampleRecord] = (),
) -> MergeResult:
    """Pick one record per item from ``earlier`` then ``journals`` (see the module docstring for
    which); ``clips_dir`` is the run's clips folder, the only place a record's clip may be."""
    wanted = {match.of_item(item) for item in items}
    best: dict[Ident, UpsampleRecord] = {}
    journaled = (read_records(path, clips_dir=clips_dir) for path in journals)
    for record in chain(earlier, *journaled):
        ident = match.of_record(record)
        if ident in wanted and _better(record, best.get(ident)):
            best[ident] = record
    records: list[UpsampleRecord] = []
    missing: list[str] = []
    for item in items:
        chosen = best.get(match.of_item(item))
        if chosen is None:
            missing.append(item.name)
        else:
            records.append(chosen)
    return MergeResult(records=records, missing=missing, journals=list(journals))


def _better(new: UpsampleRecord, old: UpsampleRecord | None) -> bool:
    """Done beats not done; then the later timestamp; a tie goes to the one read later."""
    if old is None:
        return True
    if new.done != old.done:
        return new.done
    return new.timestamp >= old.timestamp


@dataclass(frozen=True)
class Held:
    """What an output file holds: its valid records, and what else it holds that a merge would drop."""

    records: list[UpsampleRecord]
    invalid: list[str]


def merge_output(
    items: Sequence[BatchItem],
    output: Path,
    *,
    clips_dir: Path,
    force: bool = False,
    now: datetime | None = None,
) -> MergeResult:
    """Merge what ``output`` holds and every journal beside it into ``output``, atomically, in
    input order. Raises :class:`OutputShrinkError` (nothing written) when that would drop
    something the output holds, unless ``force``: then the old file is kept beside it first."""
    held = held_records(output, clips_dir=clips_dir)
    merged = merge_records(items, journals_for(output), BY_NAME, clips_dir=clips_dir, earlier=held.records)
    lost = [*held.invalid, *dropped(held.records, merged.records)]
    kept = None
    if lost:
        if not force:
            raise OutputShrinkError(_shrink_message(output, lost))
        kept = keep_copy(output, now=now or datetime.now(UTC))
    write_json_atomic(output, [r.model_dump(mode="json") for r in merged.records])
    return MergeResult(merged.records, merged.missing, merged.journals, held=len(held.records), kept=kept)


#: the output ``merge`` would replace, read back like any file a user names
OUTPUT_FILE = UserFile(
    what="output",
    max_bytes=4 * GiB,
    error=InputFileError,
    fix="move it aside or pass another --output-file",
    syntax="json",
)


def held_records(output: Path, *, clips_dir: Path) -> Held:
    """The output's entries read back as records; an entry (or the whole file) that is not a valid
    record is listed in ``invalid`` (its replacement would lose it)."""
    if not output.exists():
        return Held([], [])
    try:
        data = json.loads(read_user_text(output, OUTPUT_FILE))
    except (InputFileError, ValueError) as exc:  # too large, not UTF-8, nested too deep, not JSON
        return Held([], [f"the whole file ({_first_line(exc)}: not a JSON list of records)"])
    if not isinstance(data, list):
        return Held([], ["the whole file (not a JSON list of records)"])
    records: list[UpsampleRecord] = []
    invalid: list[str] = []
    for number, entry in enumerate(data, start=1):
        try:
            if not isinstance(entry, dict):  # a string is not read as JSON text of a record
                raise ValueError(type(entry).__name__)
            records.append(UpsampleRecord.read_back(entry, clips_dir=clips_dir))
        except ValueError as exc:  # pydantic's ValidationError is one
            invalid.append(f"entry {number} (not a valid record: {_first_line(exc)})")
    return Held(records, invalid)


def dropped(before: Sequence[UpsampleRecord], after: Sequence[UpsampleRecord]) -> list[str]:
    """Records of ``before`` that ``after`` has no match for (same name; done if it was done)."""
    now = {r.name: r for r in after}
    return [
        f"{r.name!r} ({r.status})" for r in before if r.name not in now or (r.done and not now[r.name].done)
    ]


def _shrink_message(output: Path, lost: Sequence[str]) -> str:
    shown = ", ".join(lost[:5]) + (f" and {len(lost) - 5} more" if len(lost) > 5 else "")
    return (
        f"merging would replace {output} with less than it holds: {shown} would be lost; it is left "
        f"unchanged. Check the journals and the prompts file, or pass --force to replace it (the "
        f"current file is then kept beside it as {output.name}.bak-<time>)"
    )


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
