"""The local executor: the jobs run in this process, through one engine loaded once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cosmos_workflow.engines import Engine, load_engine
from cosmos_workflow.errors import ModelLoadError
from cosmos_workflow.executors.base import Executor
from cosmos_workflow.runner import Runner, build_record

if TYPE_CHECKING:
    from cosmos_workflow.config import RunOptions
    from cosmos_workflow.journal import Journal
    from cosmos_workflow.runner import Job, Progress
    from cosmos_workflow.tokenizer import Tokenizer

log = logging.getLogger("cosmos_workflow")


class LocalExecutor(Executor):
    """Loads the engine (or uses the caller's, without closing it) and runs the jobs here."""

    name = "local"

    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine

    def execute(
        self,
        jobs: Sequence[Job],
        options: RunOptions,
        tokenizer: Tokenizer,
        journal: Journal,
        progress: Progress | None,
    ) -> None:
        if not jobs:
            return
        if self.engine is not None:
            Runner(self.engine, tokenizer, options, journal).run(jobs, progress)
            return
        try:
            loaded = load_engine(options.engine)
        except ModelLoadError as exc:
            if options.on_error != "original":
                raise
            _write_fallbacks(jobs, options, journal, str(exc), progress)
            return
        with loaded:
            Runner(loaded, tokenizer, options, journal).run(jobs, progress)


def _write_fallbacks(
    jobs: Sequence[Job], options: RunOptions, journal: Journal, reason: str, progress: Progress | None
) -> None:
    """``--on-error original`` when the model cannot load: every item gets its original prompt."""
    log.error("%s; writing the original prompts (status 'fallback')", reason)
    for job in jobs:
        job.failure = reason
    journal.append(build_record(job, None, None, options) for job in jobs)
    if progress:
        progress(len(jobs))
