"""The few public functions the CLI, the scripts and the orchestrator call."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmos_workflow.budget import Plan, PlanSettings, plan_for, plan_item, probe_item
from cosmos_workflow.engines import Engine, load_engine
from cosmos_workflow.errors import InputFileError, ModelLoadError
from cosmos_workflow.journal import Journal, journal_path_for, write_json_atomic
from cosmos_workflow.runner import Job, Progress, Runner, RunOptions, RunResult, build_record, request_key
from cosmos_workflow.specs.batch import BatchItem, Problem, load_batch
from cosmos_workflow.specs.results import UpsampleRecord
from cosmos_workflow.tokenizer import Tokenizer, load_tokenizer, tokenizer_path_for

log = logging.getLogger("cosmos_workflow")


@dataclass(frozen=True)
class PlanReport:
    plans: Iterator[Plan]
    """Planned one by one as they are read (a 50,000-item file streams): iterate once."""
    problems: list[Problem]


def tokenizer_for(model: str | Path | None) -> Tokenizer:
    """The checkpoint's own tokenizer when ``model`` is a folder with ``tekken.json``, else Pixtral's."""
    return load_tokenizer(tokenizer_path_for(model))


def plan(prompts_file: Path, settings: PlanSettings, *, model: str | Path | None = None) -> PlanReport:
    """Validate a prompts file and plan every good item; bad items come back as problems."""
    batch = load_batch(prompts_file)
    tokenizer = tokenizer_for(model)
    plans = (plan_for(item, settings, tokenizer) for item in batch.items)
    return PlanReport(plans=plans, problems=batch.problems)


def upsample(
    items: Sequence[BatchItem],
    options: RunOptions,
    *,
    output: Path,
    journal_suffix: str = "",
    engine: Engine | None = None,
    progress: Progress | None = None,
    write_output: bool = True,
) -> RunResult:
    """Upsample ``items`` with the engine loaded once; resume from the journal beside ``output``.

    Items already done in the journal are not redone (unless ``options.force``). The output JSON
    list, in input order, is written atomically at the end.
    """
    started = time.monotonic()
    journal = Journal(journal_path_for(output, journal_suffix))
    if options.force:
        journal.reset()
    previous = journal.read()
    keyed = [(item, request_key(item, options)) for item in items]
    todo = [(item, key) for item, key in keyed if not (key in previous and previous[key].done)]
    tokenizer = tokenizer_for(options.engine.model)
    jobs = [_job(item, key, options, tokenizer) for item, key in todo]
    if progress:
        progress(len(keyed) - len(todo), total=len(keyed))
    fresh = {r.key: r for r in _run_jobs(jobs, options, tokenizer, journal, engine, progress)}
    records = [fresh.get(key) or previous[key] for _, key in keyed]
    if write_output:
        write_json_atomic(output, [r.model_dump(mode="json") for r in records])
    counts = Counter(r.status for r in records)
    return RunResult(records, time.monotonic() - started, resumed=len(keyed) - len(todo), counts=counts)


def _job(item: BatchItem, key: str, options: RunOptions, tokenizer: Tokenizer) -> Job:
    video, problem = probe_item(item)
    plan = plan_item(item.name, item.prompt, video, options.plan, tokenizer, video_problem=problem)
    if problem:
        log.warning("%s: %s", item.name, problem)
    return Job(item=item, key=key, plan=plan, video=video)


def _run_jobs(
    jobs: list[Job],
    options: RunOptions,
    tokenizer: Tokenizer,
    journal: Journal,
    engine: Engine | None,
    progress: Progress | None,
) -> list[UpsampleRecord]:
    if not jobs:
        return []
    if engine is not None:  # the caller's engine: used, not closed
        return Runner(engine, tokenizer, options, journal).run(jobs, progress)
    try:
        loaded = load_engine(options.engine)
    except ModelLoadError as exc:
        if options.on_error != "original":
            raise
        log.error("%s; writing the original prompts (status 'fallback')", exc)
        failed = [replace_failure(job, str(exc)) for job in jobs]
        return [build_record(job, None, None, options) for job in failed]
    with loaded:
        return Runner(loaded, tokenizer, options, journal).run(jobs, progress)


def replace_failure(job: Job, message: str) -> Job:
    job.failure = message
    return job


def upsample_file(
    prompts_file: Path, output: Path, options: RunOptions, **kwargs: Any
) -> tuple[RunResult, list[Problem]]:
    """Read a prompts file, report its bad items, upsample the good ones into ``output``."""
    batch = load_batch(prompts_file)
    for problem in batch.problems:
        log.warning("skipped %s", problem)
    if not batch.items:
        raise InputFileError(f"{prompts_file} has no valid items; fix the problems above")
    return upsample(batch.items, options, output=output, **kwargs), batch.problems
