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
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cosmos_workflow.files import write_json_atomic
from cosmos_workflow.journal import journals_for, read_records
from cosmos_workflow.specs.batch import BatchItem
from cosmos_workflow.specs.results import UpsampleRecord

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

    @property
    def complete(self) -> bool:
        return not self.missing


def merge_records(
    items: Sequence[BatchItem], journals: Sequence[Path], match: Matching = BY_NAME
) -> MergeResult:
    """Pick one record per item from ``journals`` (see the module docstring for which)."""
    wanted = {match.of_item(item) for item in items}
    best: dict[Ident, UpsampleRecord] = {}
    for path in journals:
        for record in read_records(path):
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


def merge_output(
    items: Sequence[BatchItem], output: Path, match: Matching = BY_NAME, *, write: bool = True
) -> MergeResult:
    """Merge every journal beside ``output`` and write ``output`` atomically (in input order)."""
    result = merge_records(items, journals_for(output), match)
    if write:
        write_json_atomic(output, [r.model_dump(mode="json") for r in result.records])
    return result
