"""The few public functions the CLI, the scripts and the spec workflow call.

One flow, one direction::

    items -> keys -> resume (journals: which keys are done) -> this process' items (executor)
          -> plan each remaining item once -> executor runs the jobs -> journal -> output

Only the executor varies, chosen once from the options in :func:`upsample`
(:func:`cosmos_workflow.executors.choice.choose`). With ``num_gpu > 1`` in a single process,
torchrun runs as a child process whose ranks do all of it; this process follows their journals and
reads the result from them (:mod:`cosmos_workflow.executors.launcher`).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cosmos_workflow.config import RunOptions, default_clips_dir
from cosmos_workflow.errors import InputFileError
from cosmos_workflow.executors import Executor, KeyedItem, RunContext
from cosmos_workflow.executors.choice import choose
from cosmos_workflow.families import Family, family_for
from cosmos_workflow.files import exclusive_lock, lock_path_for, write_json_atomic
from cosmos_workflow.journal import Journal, OnSaved, done_keys, journal_path_for, journals_for, set_aside
from cosmos_workflow.journal_merge import MergeResult, by_key, merge_output, merge_records
from cosmos_workflow.paths import check_paths
from cosmos_workflow.planner import Plan, PlanSettings, plan_item, probe_item
from cosmos_workflow.runner import Job, Progress, RunResult, request_key
from cosmos_workflow.specs.batch import BatchItem, Problem, load_batch

if TYPE_CHECKING:
    from cosmos_workflow.executors.launcher import TorchrunLauncher
    from cosmos_workflow.executors.remote import RemoteConfig

log = logging.getLogger("cosmos_workflow")


def tokenizer_for(model: str | Path | None, system: str | None = None) -> Family:
    """The checkpoint's model family, with its own tokenizer (Pixtral's for a named model), its
    chats starting with the ``system`` prompt if any."""
    return family_for(model, system)


def plan(
    items: Sequence[BatchItem], settings: PlanSettings, *, model: str | Path | None = None
) -> Iterator[Plan]:
    """Plan each item (lazily, so 50,000 items stream): probe its video, count its tokens exactly."""
    tokenizer = tokenizer_for(model, settings.system_prompt)
    for item in items:
        yield plan_job(KeyedItem(item, ""), settings, tokenizer).plan


def plan_job(keyed: KeyedItem, settings: PlanSettings, tokenizer: Family) -> Job:
    """The planner's one call for an item: probe the video, fit the request, keep both on the job."""
    video, problem = probe_item(keyed.item)
    planned = plan_item(keyed.item.name, keyed.item.prompt, video, settings, tokenizer, video_problem=problem)
    if problem:
        log.warning("%s: %s", keyed.item.name, problem)
    return Job(item=keyed.item, key=keyed.key, plan=planned, video=video)


@dataclass
class PromptsFile:
    """A prompts file to read once the run's executor is chosen (only the primary process reports
    its bad items); :attr:`problems` holds them once read."""

    path: Path
    problems: list[Problem] = field(default_factory=list)

    def items(self, *, report: bool) -> list[BatchItem]:
        batch = load_batch(self.path)
        self.problems = batch.problems
        if report:
            for problem in batch.problems:
                log.warning("skipped %s", problem)
        if not batch.items:
            raise InputFileError(_no_items(self.path, batch.problems))
        return batch.items


def upsample(
    items: Sequence[BatchItem] | PromptsFile,
    options: RunOptions,
    *,
    output: Path,
    executor: Executor | None = None,
    remote: RemoteConfig | None = None,
    progress: Progress | None = None,
    shard: bool = True,
    inputs: Sequence[Path] = (),
    on_saved: OnSaved | None = None,
) -> RunResult:
    """Upsample ``items`` (or a prompts file's) into ``output``, resuming from its journals; only
    one run per output.

    Items already done in any journal of ``output`` are not redone (unless ``options.force``).
    ``executor`` decides where the jobs run; by default the options do
    (:func:`~cosmos_workflow.executors.choice.choose`: this process, this torchrun rank unless
    ``shard`` is off, a Ray cluster, the ``remote`` host, or with ``options.num_gpu > 1`` a
    torchrun child process). What is chosen here is closed at the end; the caller's executor stays
    open (it may keep an engine loaded). Every path is checked before any work
    (:func:`check_run_paths`); ``inputs`` are the files the items came from, which the output must
    not be. ``on_saved`` is called with the new records each time this process' journal has saved
    some (not for a torchrun child's: there, only the result).
    """
    runs = executor or choose(options, remote=remote, shard=shard)
    with closing(runs) if executor is None else nullcontext():
        source = None
        if isinstance(items, PromptsFile):  # torchrun's ranks read the same file: the same items
            source, inputs = items.path, [items.path]
            items = items.items(report=runs.primary)
        options = runs.adapt(options)
        check_run_paths(output, runs.journal_suffix, options, inputs=inputs)
        if isinstance(runs, Executor):
            return _run(runs, items, options, output=output, progress=progress, on_saved=on_saved)
        return launch(runs, items, options, output=output, progress=progress, source=source)


def _run(
    executor: Executor,
    items: Sequence[BatchItem],
    options: RunOptions,
    *,
    output: Path,
    progress: Progress | None,
    on_saved: OnSaved | None,
) -> RunResult:
    started = time.monotonic()
    journal = Journal(journal_path_for(output, executor.journal_suffix), on_saved)
    keyed = [KeyedItem(item, request_key(item, options)) for item in items]
    tokenizer = tokenizer_for(options.engine.model, options.plan.system_prompt)
    with exclusive_lock(journal.path, owner_of=output):
        executor.start(output, options)
        if options.force:
            set_aside(_own_journals(output, journal.path, executor))
        mine = executor.select(keyed, options, tokenizer)
        done = set() if options.force else done_keys(output, clips_dir=options.clips_folder(output))
        todo = [k for k in mine if k.key not in done]
        if progress:
            progress(len(mine) - len(todo), total=len(mine))
        if todo:
            executor.preload(options)
        jobs = [plan_job(k, options.plan, tokenizer) for k in todo]
        executor.execute(jobs, RunContext(options, tokenizer, journal, progress))
        finished = executor.finish(output, mine, len(mine) - len(todo))
    complete = finished.writes_output
    return _result(keyed if complete else mine, output, options, complete, started, resumed=finished.resumed)


def launch(
    launcher: TorchrunLauncher,
    items: Sequence[BatchItem],
    options: RunOptions,
    *,
    output: Path,
    progress: Progress | None = None,
    source: Path | None = None,
) -> RunResult:
    """Run ``items`` in the processes ``launcher`` starts (their ranks plan, run and merge);
    ``source`` is the prompts file they came from, if any. One run per output, as always."""
    started = time.monotonic()
    keyed = [KeyedItem(item, request_key(item, options)) for item in items]
    with exclusive_lock(journal_path_for(output), owner_of=output):
        resumed = launcher.run(keyed, options, output=output, source=source, progress=progress)
    return _result(keyed, output, options, True, started, resumed=resumed)


def check_run_paths(output: Path, suffix: str, options: RunOptions, *, inputs: Sequence[Path] = ()) -> None:
    """Refuse, before the lock, the plan or the model, every path this run would fail on or harm:
    the output, its journal and lock (a device, a folder, the input itself, an unwritable
    folder, a name too long) and the clips folder."""
    check_paths(read=inputs, write=[output])
    journal = journal_path_for(output, suffix)
    check_paths(
        write=[journal, lock_path_for(journal)],
        folders=[options.clips_dir] if options.clips_dir is not None else [],
    )


def _own_journals(output: Path, own: Path, executor: Executor) -> list[Path]:
    """``--force`` sets aside this process' journal and the single-process one (a rank never
    touches another rank's live journal)."""
    single = journal_path_for(output)
    if executor.journal_suffix:
        return [own, single]
    return journals_for(output)


def _result(
    keyed: Sequence[KeyedItem],
    output: Path,
    options: RunOptions,
    complete: bool,
    started: float,
    *,
    resumed: int,
) -> RunResult:
    """Records from the journals in input order; the output JSON is written when ``complete``."""
    keys = {k.item.name: k.key for k in keyed}
    clips = options.clips_folder(output)
    merged = merge_records([k.item for k in keyed], journals_for(output), by_key(keys), clips_dir=clips)
    if merged.missing:
        log.error(
            "%d item(s) have no result in any journal (%s); rerun the same command to do them",
            len(merged.missing),
            ", ".join(merged.missing[:10]),
        )
    if complete:
        write_json_atomic(output, [r.model_dump(mode="json") for r in merged.records])
    counts = Counter(r.status for r in merged.records)
    return RunResult(
        merged.records,
        time.monotonic() - started,
        resumed=resumed,
        counts=counts,
        wrote_output=complete,
        missing=merged.missing,
    )


def upsample_file(
    prompts_file: Path,
    output: Path,
    options: RunOptions,
    *,
    executor: Executor | None = None,
    remote: RemoteConfig | None = None,
    progress: Progress | None = None,
) -> tuple[RunResult, list[Problem]]:
    """Read a prompts file, report its bad items, upsample the good ones into ``output``."""
    source = PromptsFile(prompts_file)
    result = upsample(source, options, output=output, executor=executor, remote=remote, progress=progress)
    return result, source.problems


def _no_items(prompts_file: Path, problems: Sequence[Problem]) -> str:
    if problems:
        return f"{prompts_file} has no valid items; fix the problems listed above"
    return f"{prompts_file} holds no items; add {{name, prompt, video_path}} objects to its list"


def merge(
    prompts_file: Path, output: Path, *, clips_dir: Path | None = None, force: bool = False
) -> tuple[MergeResult, list[Problem]]:
    """The ``merge`` command: what ``output`` holds and every journal beside it, into ``output``,
    in the prompts file's order, by a run's output rules: the paths checked as a run checks them
    (never the prompts file), one writer at a time, never replaced by less than it holds unless
    ``force`` (see :func:`~cosmos_workflow.journal_merge.merge_output`). ``clips_dir``: the
    folder the run wrote its clips to (default: beside ``output``); records naming others are
    refused."""
    journal = journal_path_for(output)
    check_paths(read=[prompts_file], write=[output, lock_path_for(journal)])
    batch = load_batch(prompts_file)
    for problem in batch.problems:
        log.warning("skipped %s", problem)
    if not journals_for(output):
        raise InputFileError(
            f"no journal found beside {output} (expected {output.name}.journal.jsonl or "
            f"{output.name}.rank<N>.journal.jsonl); pass the same --output-file as the upsample run"
        )
    with exclusive_lock(journal, owner_of=output):
        clips = clips_dir or default_clips_dir(output)
        return merge_output(batch.items, output, clips_dir=clips, force=force), batch.problems
