"""The executor seam: where planned jobs run. Nothing else varies between tiers of scale.

The pipeline (:func:`cosmos_workflow.api.upsample`) loads and keys the items, asks the journals
which are already done, plans every remaining item of this process exactly once, and hands the
jobs to an executor. An executor decides *where* they run (this process, this torchrun rank's
shard, a Ray actor pool, a remote host) and appends one record per job to the journal it is given.
It never plans again: a plan that must shrink shrinks itself (:meth:`Plan.shrunk`).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cosmos_workflow.config import RunOptions
    from cosmos_workflow.families import Family
    from cosmos_workflow.journal import Journal
    from cosmos_workflow.runner import Job, Progress
    from cosmos_workflow.specs.batch import BatchItem
    from cosmos_workflow.specs.results import UpsampleRecord


@dataclass(frozen=True)
class Finished:
    """What :meth:`Executor.finish` reports: whether this process writes the output (for every
    item), and how many of the items it covers were already done before the run."""

    writes_output: bool
    resumed: int


@dataclass(frozen=True)
class KeyedItem:
    """An item and its request key (the hash of everything that determines its answer)."""

    item: BatchItem
    key: str


@dataclass(frozen=True)
class RunContext:
    """What a run gives its executor besides the jobs: the options as adapted, the tokenizer, and
    where the records go (this process' journal, and the progress bar if there is one)."""

    options: RunOptions
    tokenizer: Family
    journal: Journal
    progress: Progress | None = None

    def save(self, records: Sequence[UpsampleRecord]) -> None:
        """Append ``records`` to the journal (on disk when this returns), then count them."""
        self.journal.append(records)
        if self.progress and records:
            self.progress(len(records))


class Executor(abc.ABC):
    """Runs planned jobs somewhere and appends their records to the journal."""

    name: str = "executor"
    #: this process' journal: ``<output><suffix>.journal.jsonl``
    journal_suffix: str = ""
    #: whether this process reports invalid input items (one process of a job does)
    primary: bool = True

    def adapt(self, options: RunOptions) -> RunOptions:
        """The options as this executor runs them (e.g. a torchrun rank pins its GPU)."""
        return options

    def select(self, items: Sequence[KeyedItem], options: RunOptions, tokenizer: Family) -> list[KeyedItem]:
        """The items this process is responsible for (all of them, unless the work is sharded)."""
        return list(items)

    def start(self, output: Path, options: RunOptions) -> None:  # noqa: B027 - optional hook
        """Called once, under the output's lock, before anything runs."""

    def preload(self, options: RunOptions) -> None:  # noqa: B027 - optional hook
        """Called once there is work to do, before the items are planned: an executor that loads
        its engine here may start loading it now, beside the planning."""

    @abc.abstractmethod
    def execute(self, jobs: Sequence[Job], run: RunContext) -> None:
        """Run ``jobs`` and save one record per job (:meth:`RunContext.save`) as results arrive."""

    def finish(self, output: Path, selected: Sequence[KeyedItem], resumed: int) -> Finished:
        """Called after :meth:`execute`, under the lock (``resumed``: of ``selected``)."""
        return Finished(writes_output=True, resumed=resumed)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the executor keeps between runs (a loaded engine). Safe to call twice;
        the executor stays usable (the next run loads again)."""
