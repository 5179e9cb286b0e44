"""Upsample PromptSpecs: choose each spec's video, run one batch, write the results back.

``upsample_spec_dir`` is what ``upsample-prompts --input-dir DIR`` runs. It picks the specs not
yet upsampled (all with ``force``), runs them through :func:`cosmos_workflow.api.upsample` (on any
executor: this process, or a remote host) with
the model loaded once and the journal in ``DIR/.upsampling`` (so an interrupted run resumes),
and writes each result into its spec file, under the file's lock, as soon as the journal has
saved it (its batch, or its chunk of a remote host's results). A spec that failed keeps its
previous content and is listed with the reason; a corrupt spec file is listed and skipped.

Only one run works on a folder at a time: a second run on the same folder waits for the first
(an exclusive lock on ``DIR/.upsampling/run.lock``) and then finds those specs done, so every
spec is upsampled exactly once.

Which video the upsampler sees follows Cosmos-Transfer1 (see :func:`choose_video`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import ValidationError

from cosmos_workflow import __version__, api
from cosmos_workflow.errors import InputFileError, SpecError
from cosmos_workflow.files import flocked
from cosmos_workflow.paths import describe_os_error
from cosmos_workflow.specs.batch import BatchItem
from cosmos_workflow.specs.prompt_spec import Modality, PromptSpec, UpsamplingParams, utc_now
from cosmos_workflow.specs.results import UpsampleRecord
from cosmos_workflow.specs.store import SpecStore, StoredSpec

if TYPE_CHECKING:
    from cosmos_workflow.config import RunOptions
    from cosmos_workflow.executors import Executor
    from cosmos_workflow.executors.remote import RemoteConfig
    from cosmos_workflow.journal import OnSaved
    from cosmos_workflow.runner import Progress

log = logging.getLogger("cosmos_workflow")

WORK_DIR = ".upsampling"
State = Literal["updated", "skipped", "failed", "invalid"]


@dataclass(frozen=True)
class VideoChoice:
    """The video the upsampler sees for a spec, and why."""

    path: str | None
    source: str
    note: str | None = None


def choose_video(spec: PromptSpec) -> VideoChoice:
    """Cosmos-Transfer1's rule: the upsampler looks at the control input.

    The first control listed decides (or ``upsample_from`` when not ``auto``): ``vis``/``edge``
    show the given control clip, else the input video they are computed from; ``seg``/``depth``
    show their control video. Without controls, or without a video for the chosen modality, the
    input video is used, and the note says so.
    """
    if spec.upsample_from == "input":
        return VideoChoice(spec.input_video_path, "input", "upsample_from is 'input'")
    modality = _deciding_modality(spec)
    if modality is None:
        return VideoChoice(spec.input_video_path, "input" if spec.input_video_path else "none")
    if modality not in spec.control_inputs:
        note = f"upsample_from is {modality!r} but the spec has no {modality} control; using the input video"
        return VideoChoice(spec.input_video_path, "input", note)
    control = spec.control_inputs[modality]
    if control:
        return VideoChoice(control, f"control:{modality}")
    note = f"no {modality} video given (computed from the input video at inference); using the input video"
    return VideoChoice(spec.input_video_path, "input", note)


def _deciding_modality(spec: PromptSpec) -> Modality | None:
    chosen = spec.upsample_from
    if chosen == "auto":
        return next(iter(spec.control_inputs), None)
    if chosen == "input":
        return None
    return chosen


def prompt_to_upsample(spec: PromptSpec) -> str:
    """The user's prompt; for a legacy upsampled spec, the prompt it was derived from."""
    if spec.is_upsampled and spec.parent_prompt_text:
        return spec.parent_prompt_text
    return spec.prompt


@dataclass(frozen=True)
class Prepared:
    spec: PromptSpec
    choice: VideoChoice
    item: BatchItem | None
    problem: str | None = None


def prepare(spec: PromptSpec, name: str) -> Prepared:
    """The batch item for a spec (named ``name``), or the reason there is none."""
    choice = choose_video(spec)
    video = Path(choice.path).expanduser() if choice.path else None
    try:
        item = BatchItem(name=name, prompt=prompt_to_upsample(spec), video_path=video)
    except ValidationError as exc:
        reason = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        return Prepared(spec, choice, None, reason)
    return Prepared(spec, choice, item)


def unique_names(specs: Sequence[PromptSpec]) -> list[str]:
    """Spec ids as item names; a repeated id (a copied spec file) gets ``~2``, ``~3``..."""
    seen: Counter[str] = Counter()
    names = []
    for spec in specs:
        seen[spec.id] += 1
        names.append(spec.id if seen[spec.id] == 1 else f"{spec.id}~{seen[spec.id]}")
    return names


def apply_record(
    spec: PromptSpec, record: UpsampleRecord, choice: VideoChoice, options: RunOptions
) -> PromptSpec:
    """The spec with the result added; ``prompt`` and every other field unchanged."""
    notes = [n for n in (choice.note, record.warning) if n]
    params = UpsamplingParams(
        tool_version=__version__,
        model=record.model,
        engine=record.engine,
        status="text_only" if record.status == "text_only" else "ok",
        video_path=choice.path if record.frames else None,
        video_source=choice.source,
        video_note="; ".join(notes) or None,
        preprocess=options.plan.preprocess,
        max_resolution=options.plan.max_resolution,
        frame_sampling=options.plan.frame_sampling,
        **record.figures(),
        sampling=record.sampling,
        preprocessed_video=record.preprocessed_video,
        request_key=record.key,
    )
    return spec.model_copy(
        update={
            "upsampled_prompt": record.upsampled_prompt,
            "upsampled_at": utc_now(),
            "upsampling_params": params,
        }
    )


def upsample_specs(
    specs: Sequence[PromptSpec],
    options: RunOptions,
    *,
    output: Path,
    executor: Executor | None = None,
    remote: RemoteConfig | None = None,
    progress: Progress | None = None,
    on_done: Callable[[int, PromptSpec], None] | None = None,
) -> list[tuple[PromptSpec, str | None]]:
    """Upsample in one batch; per spec, in input order: (updated spec, None) or (spec, reason).
    ``executor``/``remote``: where the batch runs, as :func:`cosmos_workflow.api.upsample` takes them.

    ``on_done(index, updated spec)`` is called as soon as a spec's result is saved in the run's
    journal, before the batch ends (results resumed from an earlier run come only at the end).
    """
    prepared = [prepare(spec, name) for spec, name in zip(specs, unique_names(specs), strict=True)]
    sendable = [p for p in prepared if p.item is not None]
    records: dict[int, UpsampleRecord] = {}
    if sendable:
        items = [p.item for p in sendable if p.item is not None]
        # spec runs are not sharded: every process of a torchrun job would wait on the folder lock
        # (num_gpu > 1 from one process does shard them, in the torchrun child it starts)
        result = api.upsample(
            items,
            options,
            output=output,
            executor=executor,
            remote=remote,
            progress=progress,
            shard=False,
            on_saved=_saved_specs(prepared, options, on_done) if on_done else None,
        )
        records = {id(p): r for p, r in zip(sendable, result.records, strict=True)}
    return [_finish(p, records.get(id(p)), options) for p in prepared]


def _saved_specs(
    prepared: Sequence[Prepared], options: RunOptions, on_done: Callable[[int, PromptSpec], None]
) -> OnSaved:
    """The journal's listener: each finished record, as its spec updated, to ``on_done``."""
    index_of = {p.item.name: i for i, p in enumerate(prepared) if p.item is not None}

    def saved(records: Sequence[UpsampleRecord]) -> None:
        for record in records:
            index = index_of.get(record.name)
            if index is not None and record.done:
                on_done(index, _finish(prepared[index], record, options)[0])

    return saved


def _finish(
    prepared: Prepared, record: UpsampleRecord | None, options: RunOptions
) -> tuple[PromptSpec, str | None]:
    if prepared.problem is not None or record is None:
        return prepared.spec, prepared.problem or "no result came back for this spec"
    if not record.done:
        return prepared.spec, record.error or f"upsampling ended with status {record.status}"
    return apply_record(prepared.spec, record, prepared.choice, options), None


@dataclass(frozen=True)
class SpecOutcome:
    """What happened to one spec file."""

    path: Path
    name: str
    state: State
    reason: str = ""
    spec: PromptSpec | None = None

    @property
    def updated(self) -> bool:
        return self.state == "updated"


@dataclass
class SpecRunSummary:
    """Outcomes of a spec run, sorted by file; ``describe()`` is the human summary."""

    input_dir: Path | None
    outcomes: list[SpecOutcome] = field(default_factory=list)

    def of(self, state: State) -> list[SpecOutcome]:
        return [o for o in self.outcomes if o.state == state]

    @property
    def failed(self) -> int:
        return len(self.of("failed"))

    @property
    def complete(self) -> bool:
        """No spec failed and no spec file is invalid: what exit 0 means, as for a prompts file."""
        return not self.failed and not self.of("invalid")

    def describe(self) -> str:
        counts = {state: len(self.of(state)) for state in ("updated", "skipped", "failed", "invalid")}
        where = f" in {self.input_dir}" if self.input_dir else ""
        lines = [
            f"specs{where}: {counts['updated']} updated, {counts['skipped']} skipped (already upsampled), "
            f"{counts['failed']} failed, {counts['invalid']} invalid files"
        ]
        if not counts["updated"] and not counts["failed"]:
            lines.append("nothing to do; pass --force to upsample every spec again")
        lines += [
            f"updated  {o.name}: {o.path}" + (f" ({o.reason})" if o.reason else "")
            for o in self.of("updated")
        ]
        lines += _skipped_lines(self.of("skipped"))
        lines += [f"failed   {o.name}: {o.reason} (file unchanged: {o.path})" for o in self.of("failed")]
        lines += [f"invalid  {o.path}: {o.reason}" for o in self.of("invalid")]
        return "\n".join(lines)


def _skipped_lines(skipped: list[SpecOutcome], shown: int = 10) -> list[str]:
    lines = [f"skipped  {o.name}: {o.reason}" for o in skipped[:shown]]
    if len(skipped) > shown:
        lines.append(f"skipped  ... and {len(skipped) - shown} more already upsampled")
    return lines


def upsample_spec_dir(
    input_dir: Path,
    options: RunOptions,
    *,
    progress: Progress | None = None,
    executor: Executor | None = None,
    remote: RemoteConfig | None = None,
) -> SpecRunSummary:
    """Upsample the folder's specs that need it and write the results into their files."""
    if not input_dir.is_dir():
        raise InputFileError(f"spec folder {input_dir} not found; check --input-dir or run create-spec first")
    _warn_if_a_torchrun_rank()
    with _run_lock(input_dir / WORK_DIR / "run.lock"):
        scan = SpecStore(input_dir).scan()
        outcomes = [SpecOutcome(p.path, p.path.name, "invalid", p.message) for p in scan.problems]
        todo = [s for s in scan.specs if options.force or not s.spec.upsampled]
        outcomes += [_skipped(s) for s in scan.specs if not (options.force or not s.spec.upsampled)]
        summary = upsample_stored(
            todo,
            options,
            output=input_dir / WORK_DIR / "results.json",
            executor=executor,
            remote=remote,
            progress=progress,
        )
    summary.input_dir = input_dir
    summary.outcomes = sorted(outcomes + summary.outcomes, key=lambda o: str(o.path))
    return summary


def _skipped(stored: StoredSpec) -> SpecOutcome:
    when = stored.spec.upsampled_at.isoformat() if stored.spec.upsampled_at else "by an earlier version"
    return SpecOutcome(stored.path, stored.spec.name, "skipped", f"upsampled {when}", stored.spec)


def upsample_stored(
    stored: Sequence[StoredSpec],
    options: RunOptions,
    *,
    output: Path,
    executor: Executor | None = None,
    remote: RemoteConfig | None = None,
    progress: Progress | None = None,
) -> SpecRunSummary:
    """Upsample specs read from files and write each success back under the file's lock, as
    soon as it is saved (an interrupted run leaves the finished specs written)."""
    written: dict[int, SpecOutcome] = {}

    def write(index: int, spec: PromptSpec) -> None:
        if index not in written:
            written[index] = _write_back(stored[index], spec, None)

    results = upsample_specs(
        [s.spec for s in stored],
        options,
        output=output,
        executor=executor,
        remote=remote,
        progress=progress,
        on_done=write,
    )
    outcomes = [
        written.get(i) or _write_back(s, spec, reason)
        for i, (s, (spec, reason)) in enumerate(zip(stored, results, strict=True))
    ]
    return SpecRunSummary(None, outcomes)


def _write_back(stored: StoredSpec, result: PromptSpec, reason: str | None) -> SpecOutcome:
    name = stored.spec.name
    if reason is not None:
        return SpecOutcome(stored.path, name, "failed", reason, stored.spec)
    changed: list[bool] = []

    def merge(current: PromptSpec) -> PromptSpec | None:
        if _inputs(current) != _inputs(stored.spec):
            changed.append(True)
            return None  # edited during the run: this result describes the old inputs
        return current.model_copy(update=_result_fields(result))

    try:
        written = SpecStore(stored.path.parent).update(stored.path, merge)
    except (SpecError, OSError) as exc:  # this spec's file only: the run and the other specs go on
        problem = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        return SpecOutcome(stored.path, name, "failed", f"could not write the result: {problem}", stored.spec)
    if changed:
        return SpecOutcome(
            stored.path, name, "failed", "the spec was edited during the run; rerun to upsample it", written
        )
    params = written.upsampling_params
    note = f"text only: {params.video_note}" if params and params.status == "text_only" else ""
    return SpecOutcome(stored.path, name, "updated", note, written)


def _inputs(spec: PromptSpec) -> tuple[object, ...]:
    return (
        spec.prompt,
        spec.input_video_path,
        spec.control_inputs,
        spec.upsample_from,
        spec.parent_prompt_text,
    )


def _result_fields(spec: PromptSpec) -> dict[str, object]:
    return {
        "upsampled_prompt": spec.upsampled_prompt,
        "upsampled_at": spec.upsampled_at,
        "upsampling_params": spec.upsampling_params,
    }


def _warn_if_a_torchrun_rank() -> None:
    """Spec folders are not split over the ranks of a torchrun someone started by hand: the first
    rank to take the folder's lock does every spec, the others then find them done. Say so once
    (rank 0), with the way that does split them."""
    from cosmos_workflow.executors.torchrun import rank_info

    info = rank_info()
    if info is not None and info.rank == 0:
        log.warning(
            "a spec folder is not split over the %d ranks of this torchrun: one rank upsamples every "
            "spec on one GPU; run without torchrun and pass --num-gpu %d to use %d GPUs",
            info.world_size,
            info.world_size,
            info.world_size,
        )


@contextmanager
def _run_lock(path: Path) -> Iterator[None]:
    """One run per spec folder; a second run waits here, then finds the specs done."""

    def say_waiting() -> None:
        log.warning("another run is upsampling %s; waiting for it to finish", path.parent.parent)

    with flocked(path, on_wait=say_waiting):
        yield
