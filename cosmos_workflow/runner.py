"""One executor's loop over planned jobs: preprocess ahead of the model, generate in
length-sorted batches, postprocess, journal.

The runner never plans: it receives jobs whose plans were made once, upstream. The engine is
loaded once per run. Video decoding and encoding run in background threads a few batches ahead,
so the model does not wait on preprocessing. Out-of-memory halves the batch; a request the engine
still finds too long shrinks its own plan and is retried once; an answer cut off at
``max_tokens`` is generated once more with a new seed before the item fails.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cosmos_workflow.config import RunOptions
from cosmos_workflow.defaults import ENCODER_LIMIT
from cosmos_workflow.engines import EncodedRequest, Engine, Generation, SamplingParams
from cosmos_workflow.errors import CosmosWorkflowError, EngineError, GPUOutOfMemoryError
from cosmos_workflow.families import Family
from cosmos_workflow.journal import Journal
from cosmos_workflow.media import SharedFrames
from cosmos_workflow.planner import Plan
from cosmos_workflow.postprocess import accept, clean_text
from cosmos_workflow.specs.batch import BatchItem
from cosmos_workflow.specs.results import Status, UpsampleRecord
from cosmos_workflow.tokenizer import EncoderTokenizer, load_encoder_tokenizer

if TYPE_CHECKING:
    import numpy as np

    from cosmos_workflow.media import VideoInfo

log = logging.getLogger("cosmos_workflow")
#: how many times an answer too long for the generator's encoder is generated again, shorter
ENCODER_RETRIES = 2
#: The start of a record's warning when the engine's prompt count differs from the plan's.
PROMPT_COUNT_MISMATCH = "prompt token count differs"


class Progress(Protocol):
    """Told how many items finished (and, once, how many there are in all)."""

    def __call__(self, count: int, total: int | None = None) -> None: ...


@dataclass
class Job:
    """One item on its way through the run."""

    item: BatchItem
    key: str
    plan: Plan
    video: VideoInfo | None = None
    request: EncodedRequest | None = None
    preprocessed_video: Path | None = None
    failure: str | None = None
    retried: bool = False
    attempts: int = 1
    retry_note: str | None = None
    #: the answer's count with the generator's encoder tokenizer (None: no encoder given)
    encoder_tokens: int | None = None


@dataclass
class RunResult:
    records: list[UpsampleRecord]
    elapsed_s: float
    resumed: int = 0
    counts: Counter[Status] = field(default_factory=Counter)
    #: False for a torchrun rank that did not write the output (``records`` are its shard's)
    wrote_output: bool = True
    #: names of the items with no result in any journal (not in the output: the run is partial)
    missing: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return self.counts["error"] + self.counts["fallback"]


def request_key(item: BatchItem, options: RunOptions) -> str:
    """Hash of everything that determines the answer: a rerun with the same inputs finds it."""
    payload = {
        "name": item.name,
        "prompt": item.prompt,
        "video": _video_identity(item.video_path),
        "plan": _plan_key(options),
        "sampling": options.sampling.key(),
        "engine": options.engine.engine,
        "model": options.engine.model,
        "max_model_len": options.engine.max_model_len,
    }
    if options.encoder_tokenizer is not None:  # left out without one: earlier keys stay as they were
        payload["encoder"] = [str(options.encoder_tokenizer.expanduser().resolve()), options.encoder_limit]
    blob = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def _plan_key(options: RunOptions) -> dict[str, object]:
    """The plan settings in a key: a setting added later is left out at its default, so the keys
    of earlier runs (and their resume) stay as they were."""
    plan: dict[str, object] = options.plan.model_dump(mode="json")
    for later in ("max_vision_tokens", "system_prompt"):
        if plan.get(later) is None:
            del plan[later]
    return plan


def _video_identity(path: Path | None) -> list[object] | None:
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return [str(path), None]
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


class Runner:
    """Runs items through one loaded engine and records every outcome in the journal."""

    def __init__(
        self,
        engine: Engine,
        tokenizer: Family | Callable[[], Family],
        options: RunOptions,
        journal: Journal | None = None,
    ) -> None:
        self.engine = engine
        self._tokenizer = tokenizer
        self.options = options
        self.journal = journal
        self.batch_size = options.batch_size if isinstance(options.batch_size, int) else 8
        #: the first batch's size (0: the first is as the others); never above ``batch_size``
        #: with a fixed one, nor above what fits with 'auto'
        self.first_batch = min(options.first_batch, self.batch_size)
        #: frames (and clips) that several requests want, decoded (written) once this run
        self.frames = SharedFrames()

    @functools.cached_property
    def tokenizer(self) -> Family:
        """The tokenizer; given as a loader, it loads on first use (a Ray actor seldom needs one)."""
        return self._tokenizer if isinstance(self._tokenizer, Family) else self._tokenizer()

    def run(self, jobs: Sequence[Job], progress: Progress | None = None) -> list[UpsampleRecord]:
        """Process jobs; records come back in the order of ``jobs`` (and go to the journal, if any)."""
        done: dict[str, UpsampleRecord] = {}

        def save(records: list[UpsampleRecord]) -> None:
            if records:
                self._append(records)
            done.update((r.key, r) for r in records)
            if progress:
                progress(len(records))

        sendable = [j for j in jobs if j.plan.fits]
        if sendable:
            self.size_batches(max(j.plan.total_tokens for j in sendable), len(sendable), sendable)
        save([self._record(job, None) for job in jobs if not job.plan.fits])
        with ThreadPoolExecutor(self.options.workers, thread_name_prefix="preprocess") as pool:
            if self.engine.streams:
                self._run_streaming(pool, sendable, save)
            else:
                for batch in self._prepared_batches(pool, sendable):
                    save(self.generate_batch(batch))
        return [done[j.key] for j in jobs]

    def _run_streaming(
        self, pool: ThreadPoolExecutor, jobs: list[Job], save: Callable[[list[UpsampleRecord]], None]
    ) -> None:
        """Feed a streaming engine requests in input order as they are prepared, and save each
        answer as it comes. Answers to redo (cut off, or too long for the engine) wait for the end.
        ``first_batch`` has no part here: the engine schedules the requests itself."""
        sent: dict[str, Job] = {}

        def requests() -> Iterator[EncodedRequest]:
            for job in self._prepared_in_order(pool, jobs):
                if job.request is None:
                    save([self._record(job, None)])  # preprocessing failed: nothing to send
                    continue
                sent[job.key] = job
                yield job.request

        redo: list[Job] = []
        results: dict[str, Generation | None] = {}
        with closing(PacedSaver(save)) as saver:
            for answers in self.engine.generate_stream(requests(), self.options.sampling):
                finished = [(sent.pop(key), generation) for key, generation in answers]
                retry = [(job, g) for job, g in finished if self._needs_retry(g)]
                redo += [job for job, _ in retry]
                results.update((job.key, g) for job, g in retry)
                saver.add([self._record(job, g) for job, g in finished if job.key not in results])
        save(self._finish(redo, results))

    def _needs_retry(self, generation: Generation) -> bool:
        cut = _cut_off(generation) and not self.options.engine.options.get("ignore_eos")
        return cut or generation.error_kind == "context_length" or self._over_encoder_limit(generation)

    @functools.cached_property
    def encoder(self) -> EncoderTokenizer | None:
        """The generator's text encoder's tokenizer, when the run counts answers with one."""
        path = self.options.encoder_tokenizer
        return None if path is None else load_encoder_tokenizer(path.expanduser())

    def _encoder_count(self, generation: Generation) -> int | None:
        """The answer's tokens for the encoder, as it will be written (None: no encoder, no answer)."""
        if self.encoder is None or generation.error is not None or generation.finish_reason != "stop":
            return None
        return self.encoder.count(clean_text(generation.text))

    def _over_encoder_limit(self, generation: Generation) -> bool:
        count = self._encoder_count(generation)
        return count is not None and count > (self.options.encoder_limit or ENCODER_LIMIT)

    def _fit_encoder(self, job: Job, generation: Generation | None) -> Generation | None:
        """An answer too long for the generator's encoder is generated again with an answer budget
        cut in proportion (at most :data:`ENCODER_RETRIES` times); a retry's answer that runs into
        its budget ends at its last full sentence. ``job.encoder_tokens`` holds the final count."""
        limit = self.options.encoder_limit or ENCODER_LIMIT
        for _ in range(ENCODER_RETRIES):
            if generation is None or job.request is None or not self._over_encoder_limit(generation):
                break
            count = self._encoder_count(generation) or 0
            budget = max(1, generation.completion_tokens * limit * 9 // (count * 10))
            log.warning(
                "%s: the answer has %d tokens for the generator's encoder, over its limit %d; "
                "generating it again with at most %d tokens",
                job.item.name, count, limit, budget,
            )  # fmt: skip
            job.attempts += 1
            job.retry_note = (
                f"the answer had {count} encoder tokens, over the limit {limit}; "
                f"generated again with at most {budget} tokens"
            )
            sampling = self.options.sampling.model_copy(update={"max_tokens": budget})
            generation = _to_last_sentence(self._generate([job.request], sampling)[0])
        job.encoder_tokens = self._encoder_count(generation) if generation is not None else None
        return generation

    def _prepared_in_order(self, pool: ThreadPoolExecutor, jobs: list[Job]) -> Iterator[Job]:
        """Jobs in their order, each preprocessed in the pool, a window of them ahead of the engine."""
        window = max(64, self.batch_size * (self.options.prefetch_batches + 1))
        pending: deque[Future[Job]] = deque()
        for job in jobs:
            pending.append(pool.submit(self.prepare, job))
            if len(pending) > window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def _append(self, records: Iterable[UpsampleRecord]) -> None:
        if self.journal is not None:
            self.journal.append(records)

    def size_batches(self, longest: int, count: int | None = None, jobs: Sequence[Job] = ()) -> None:
        """With ``batch_size`` 'auto': what fits the engine's free memory for the longest planned
        request (``longest`` prompt tokens; 8 if the engine cannot say), evened out over ``count``
        requests when known: as few batches as fit, of equal size (1024 requests where 335 fit:
        4 of 256, not 3 of 335 and one of 19, a shape the GPU would compile again for). With
        ``first_batch``, a first batch of that many (at most what fits), the rest evened out
        (:func:`ramped_batch_sizes`). An engine that shares frames within a batch
        (``shares_prefixes``) is asked with the ``jobs``' sharing too (:func:`shared_fits`)."""
        if self.options.batch_size != "auto":
            return
        estimate = getattr(self.engine, "max_batch_size", None)
        max_tokens = self.options.sampling.max_tokens
        fits = max(1, int(estimate(longest, max_tokens)) if callable(estimate) else 8)
        if callable(estimate) and self.engine.shares_prefixes and jobs:
            fits = max(fits, shared_fits(jobs, estimate, max_tokens))
        first, size = ramped_batch_sizes(count, fits, self.options.first_batch) if count else (0, fits)
        if callable(estimate):
            why = f"{fits} fit for requests of up to {longest} prompt tokens"
        else:
            why = "this engine does not size batches from free memory"
        log.info("batch size %d (auto: %s)", size, why)
        if first:
            log.info("first batch %d (first_batch), so the first answers come early", first)
        self.batch_size, self.first_batch = size, first

    def _prepared_batches(self, pool: ThreadPoolExecutor, jobs: list[Job]) -> Iterator[list[Job]]:
        """Length-sorted batches whose preprocessing runs ``prefetch_batches`` ahead of the model."""
        pending: deque[list[Future[Job]]] = deque()
        by_video = self.engine.shares_prefixes
        for chunk in length_sorted_batches(jobs, self.batch_size, first=self.first_batch, by_video=by_video):
            pending.append([pool.submit(self.prepare, job) for job in chunk])
            if len(pending) > self.options.prefetch_batches:
                yield [f.result() for f in pending.popleft()]
        while pending:
            yield [f.result() for f in pending.popleft()]

    def prepare(self, job: Job) -> Job:
        """Decode, resize, optionally write the clip, and encode; failures stay on the job."""
        return prepare_job(
            job, self.tokenizer, self.options, pixel_values=self.engine.needs_pixel_values, shared=self.frames
        )

    def generate_batch(self, batch: list[Job]) -> list[UpsampleRecord]:
        """One batch of prepared jobs through the engine: a record per job, in batch order."""
        ready = [j for j in batch if j.request is not None]
        generations: list[Generation] = []
        start = 0
        while start < len(ready):  # each call as large as the sizes are now (out-of-memory shrinks them)
            size = max(self.batch_size, self.first_batch)  # the first batch may be the larger
            generations += self._generate([j.request for j in ready[start : start + size] if j.request])
            start += size
        results: dict[str, Generation | None] = dict(zip((j.key for j in ready), generations, strict=True))
        return self._finish(batch, results)

    def _finish(self, jobs: list[Job], results: dict[str, Generation | None]) -> list[UpsampleRecord]:
        """Records for answered jobs, after the retries: answers cut off at ``max_tokens`` once more
        with a new seed, requests the engine found too long once more at a smaller size."""
        self._retry_cut_off([j for j in jobs if _cut_off(results.get(j.key))], results)
        records = []
        for job in jobs:
            generation = results.get(job.key)
            if generation is not None and generation.error_kind == "context_length" and not job.retried:
                generation = self._retry_smaller(job)
            records.append(self._record(job, self._fit_encoder(job, generation)))
        return records

    def _retry_cut_off(self, jobs: list[Job], results: dict[str, Generation | None]) -> None:
        """Answers cut off at ``max_tokens`` are generated once more, with a new seed, together."""
        if not jobs or self.options.engine.options.get("ignore_eos"):
            return  # ignore_eos (benchmarks) cuts every answer on purpose
        seed = _next_seed(self.options.sampling.seed)
        sampling = self.options.sampling.model_copy(update={"seed": seed})
        log.warning("%d answer(s) cut off at max_tokens; retrying them once with seed %d", len(jobs), seed)
        again = self._generate([j.request for j in jobs if j.request], sampling)
        for job, generation in zip(jobs, again, strict=True):
            job.attempts += 1
            job.retry_note = (
                f"the first answer was cut off at {self.options.sampling.max_tokens} tokens; "
                f"generated again with seed {seed}"
            )
            results[job.key] = generation

    def _generate(
        self, requests: list[EncodedRequest], sampling: SamplingParams | None = None
    ) -> list[Generation]:
        """One engine call. Out of memory halves the batch, down to a single request; any other
        engine error is isolated by retrying the requests one at a time.

        Retries happen after the ``except`` block, so the failed attempt's traceback (and the GPU
        memory its frames hold) is released first.
        """
        sampling = sampling or self.options.sampling
        try:
            return self.engine.generate(requests, sampling)
        except GPUOutOfMemoryError as exc:
            failure: EngineError = exc
        except EngineError as exc:
            failure = exc
        if len(requests) == 1:
            message = str(failure)
            if isinstance(failure, GPUOutOfMemoryError):
                message = f"out of GPU memory even alone ({failure}); lower --max-resolution or --num-frames"
            return [Generation.failed(message, prompt_tokens=requests[0].num_tokens)]
        if isinstance(failure, GPUOutOfMemoryError):
            half = len(requests) // 2
            self.batch_size = max(1, min(self.batch_size, half))
            self.first_batch = min(self.first_batch, self.batch_size)
            log.warning(
                "out of GPU memory with %d requests; retrying as %d + %d",
                len(requests),
                half,
                len(requests) - half,
            )
            return self._generate(requests[:half], sampling) + self._generate(requests[half:], sampling)
        log.warning("engine failed on a batch of %d (%s); retrying one at a time", len(requests), failure)
        return [g for request in requests for g in self._generate([request], sampling)]

    def _retry_smaller(self, job: Job) -> Generation | None:
        """The engine found the request too long: the plan shrinks itself, and is tried once more."""
        job.retried = True
        smaller = job.plan.shrunk(self.tokenizer, "the engine reported the request too long")
        if smaller is None or job.video is None:
            return None
        log.warning(
            "%s: the engine reported the request too long; retrying at %sx%s",
            job.item.name,
            smaller.width,
            smaller.height,
        )
        job.plan = smaller
        self.prepare(job)
        if job.request is None:
            return None
        return self._generate([job.request])[0]

    def _record(self, job: Job, generation: Generation | None) -> UpsampleRecord:
        return build_record(job, generation, self.engine, self.options)

    def failed_records(self, jobs: Sequence[Job], message: str) -> list[UpsampleRecord]:
        """A record for each job that the engine never answered, failed with ``message`` (the
        ``--on-error`` policy applies as to any failure)."""
        return [
            self._record(job, Generation.failed(message, prompt_tokens=job.plan.total_tokens)) for job in jobs
        ]


class PacedSaver:
    """Saves records at most every ``every`` seconds. Each save is an fsync'd journal append, and a
    streaming engine finishes a few answers at each of its steps: an fsync per step would hold up
    the thread that feeds the engine. What is held back is saved on close, also when the run is
    interrupted, so at most ``every`` seconds of answers wait in memory."""

    def __init__(self, save: Callable[[list[UpsampleRecord]], None], every: float = 0.5) -> None:
        self._save = save
        self._every = every
        self._held: list[UpsampleRecord] = []
        self._last = time.monotonic()

    def add(self, records: list[UpsampleRecord]) -> None:
        self._held += records
        if self._held and time.monotonic() - self._last >= self._every:
            self.close()

    def close(self) -> None:
        held, self._held = self._held, []
        self._last = time.monotonic()
        if held:
            self._save(held)


def evened_batch_size(count: int, fits: int) -> int:
    """The size of as few equal batches as hold ``count`` items when ``fits`` fit in one."""
    batches = -(-count // fits)
    return -(-count // batches)


def ramped_batch_sizes(count: int, fits: int, first: int) -> tuple[int, int]:
    """The first batch's size and the others' for ``count`` items when ``fits`` fit in one batch:
    the first holds ``first`` items (at most ``fits``; 0: no first batch of its own), the rest go
    in as few equal batches as hold them (:func:`evened_batch_size`). 200 where 256 fit, first
    16: 16, then 184 (not 200 at once: the first answers come after a batch of 16)."""
    head = min(first, fits, count)
    rest = count - head
    return head, evened_batch_size(rest, fits) if rest else max(head, 1)


def length_sorted_batches(
    jobs: Sequence[Job], size: int, *, first: int = 0, by_video: bool = False
) -> list[list[Job]]:
    """Batches of ``size`` jobs, shortest requests first (similar lengths pad little); with
    ``first``, the first batch holds that many (the shortest, so they finish soonest). With
    ``by_video`` (an engine that shares the frames of requests in one batch: ``shares_prefixes``)
    the requests of one video and plan stay next to each other: by image tokens, then video, then
    length."""
    ordered = sorted(jobs, key=_video_order if by_video else _length_order)
    head, rest = ([ordered[:first]], ordered[first:]) if first and ordered else ([], ordered)
    return head + [rest[i : i + size] for i in range(0, len(rest), size)]


def shared_fits(jobs: Sequence[Job], estimate: Callable[..., int], max_tokens: int) -> int:
    """The largest batch of ``jobs`` that fits where requests of one video and plan share their
    frames' prefix: ``estimate(prompt_tokens, max_tokens, prefix_tokens=, prefixes=)`` says how
    many fit with at most ``prefixes`` distinct prefixes in a batch (an engine's
    ``max_batch_size``); a batch of ``size`` holds at most :func:`most_prefixes` of them."""
    prefix = max(j.plan.image_tokens for j in jobs)
    prompt = prefix + max(j.plan.total_tokens - j.plan.image_tokens for j in jobs)
    ordered = [_prefix_key(j) for j in sorted(jobs, key=_video_order)]

    def fits(size: int) -> bool:
        most = most_prefixes(ordered, size)
        return size <= int(estimate(prompt, max_tokens, prefix_tokens=prefix, prefixes=most))

    low, high = 1, min(len(jobs), int(estimate(prompt, max_tokens, prefix_tokens=prefix, prefixes=1)))
    while low < high:  # the largest size that fits (fewer prefixes fit more requests: monotone)
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def most_prefixes(keys: Sequence[object], size: int) -> int:
    """The most distinct ``keys`` in any ``size`` consecutive ones: a bound on the distinct
    prefixes of a batch of at most ``size`` of them, wherever the batches are cut."""
    window: Counter[object] = Counter(keys[:size])
    most = len(window)
    for leaving, entering in zip(keys, keys[size:], strict=False):
        window[entering] += 1
        window[leaving] -= 1
        if not window[leaving]:
            del window[leaving]
        most = max(most, len(window))
    return most


def _prefix_key(job: Job) -> tuple[int, str, tuple[int, ...], int, int]:
    """What requests that share one prefix have in common: the frames' tokens, the video, its
    frames and their size."""
    plan = job.plan
    video = str(job.item.video_path or "")
    return (plan.image_tokens, video, tuple(plan.frame_indices), plan.width or 0, plan.height or 0)


def _length_order(job: Job) -> int:
    return job.plan.total_tokens


def _video_order(job: Job) -> tuple[tuple[int, str, tuple[int, ...], int, int], int]:
    """Each prefix's requests together (by image tokens, video, frames, size), then by length."""
    return (_prefix_key(job), job.plan.total_tokens)


def prepare_job(
    job: Job,
    tokenizer: Family,
    options: RunOptions,
    *,
    pixel_values: bool = True,
    shared: SharedFrames | None = None,
) -> Job:
    """Decode, resize, optionally write the clip, and encode; failures stay on the job. ``shared``:
    frames and clips another request of the run wanted too come from there."""
    try:
        prepared = prepare_request(job, tokenizer, options, pixel_values=pixel_values, shared=shared)
        job.request, job.preprocessed_video = prepared
    except CosmosWorkflowError as exc:
        job.failure = str(exc)
    except Exception as exc:  # one bad item never stops the batch
        log.debug("preprocessing %s failed", job.item.name, exc_info=True)
        job.failure = f"preprocessing failed unexpectedly ({type(exc).__name__}: {exc}); please report it"
    return job


def prepare_request(
    job: Job,
    tokenizer: Family,
    options: RunOptions,
    *,
    pixel_values: bool = True,
    shared: SharedFrames | None = None,
) -> tuple[EncodedRequest, Path | None]:
    """Frames at the planned size, the optional clip, and the exact token ids."""
    from cosmos_workflow.errors import BudgetError
    from cosmos_workflow.media import clip_path

    plan = job.plan
    frames: list[np.ndarray] = []
    clip: Path | None = None
    if job.video is not None and plan.frames > 0:
        assert plan.width is not None and plan.height is not None
        path = None
        if options.clips_dir is not None and options.plan.preprocess:
            path = clip_path(options.clips_dir, job.item.name, job.key)
        frames, clip = (shared or SharedFrames(0)).frames_and_clip(
            job.video, plan.frame_indices, (plan.width, plan.height), clip=path
        )
    encoding = tokenizer.encode(job.item.prompt, frames, pixel_values=pixel_values)
    if options.plan.preprocess and len(encoding.token_ids) != plan.total_tokens:
        raise BudgetError(
            f"encoded {len(encoding.token_ids)} tokens but planned {plan.total_tokens}; "
            "please report this with the video's size",
            item=job.item.name,
        )
    request = EncodedRequest(
        key=job.key,
        prompt=job.item.prompt,
        token_ids=encoding.token_ids,
        frames=frames,
        pixel_values=encoding.pixel_values,
        grid_thw=encoding.grid_thw,
        video=encoding.video,
        frame_interval=frame_interval(plan.frame_indices, job.video.fps if job.video else None),
        system=tokenizer.system,
    )
    return request, clip


def frame_interval(indices: Sequence[int], fps: float | None) -> float | None:
    """Mean seconds between the frames sent (None for fewer than two frames or an unknown fps)."""
    if len(indices) < 2 or not fps:
        return None
    return (indices[-1] - indices[0]) / (len(indices) - 1) / fps


def build_record(
    job: Job, generation: Generation | None, engine: Engine | None, options: RunOptions
) -> UpsampleRecord:
    """The output record for one job, applying the ``--on-error`` policy to any failure."""
    plan = job.plan
    problem = _problem(job, generation)
    text: str | None = None
    if problem is None and generation is not None:
        cleaned = accept(generation, options.sampling.max_tokens, ascii_only=options.sampling.ascii_only)
        problem, text = cleaned.problem, cleaned.text
    if problem is None:
        problem = _over_limit(job, options)
    status = "text_only" if plan.frames == 0 else "ok"
    if problem is not None:
        status, text = ("fallback", job.item.prompt) if options.on_error == "original" else ("error", None)
    return UpsampleRecord(
        name=job.item.name,
        original_prompt=job.item.prompt,
        upsampled_prompt=text,
        video_path=str(job.item.video_path) if job.item.video_path else None,
        preprocessed_video=str(job.preprocessed_video) if job.preprocessed_video else None,
        status=status,
        error=problem,
        warning=record_warning(job, generation),
        frames=plan.frames,
        frame_indices=plan.frame_indices,
        width=plan.width,
        height=plan.height,
        source_width=plan.source_width,
        source_height=plan.source_height,
        prompt_tokens=plan.total_tokens,
        image_tokens=plan.image_tokens,
        text_tokens=plan.text_tokens,
        completion_tokens=generation.completion_tokens if generation else 0,
        max_tokens=options.sampling.max_tokens,
        max_model_len=plan.max_model_len,
        finish_reason=generation.finish_reason if generation else None,
        plan_changes=plan.changes,
        model=engine.model_name if engine else options.engine.model,
        engine=engine.name if engine else options.engine.engine,
        sampling=options.sampling.key(),
        attempts=job.attempts,
        retry=job.retry_note,
        encoder_tokens=job.encoder_tokens,
        key=job.key,
    )


def record_warning(job: Job, generation: Generation | None = None) -> str | None:
    """What the loader changed in the item, why a video was not used, and a prompt the engine
    counted otherwise than the plan (never expected: the plan's count is the engine's tokenizer's)."""
    video = job.plan.message if job.plan.status == "text_only" and job.item.video_path else None
    return "; ".join(w for w in (job.item.warning, video, _count_mismatch(job, generation)) if w) or None


def _count_mismatch(job: Job, generation: Generation | None) -> str | None:
    if generation is None or generation.error is not None or job.request is None:
        return None
    if generation.prompt_tokens == job.request.num_tokens:
        return None
    return (
        f"{PROMPT_COUNT_MISMATCH}: the engine counted {generation.prompt_tokens}, the plan "
        f"{job.request.num_tokens}; please report it with the video's size"
    )


def _over_limit(job: Job, options: RunOptions) -> str | None:
    """The line for an answer still too long for the generator's encoder after the retries."""
    limit = options.encoder_limit or ENCODER_LIMIT
    if job.encoder_tokens is None or job.encoder_tokens <= limit:
        return None
    return (
        f"{job.item.name}: the answer has {job.encoder_tokens} tokens for the generator's text encoder "
        f"({options.encoder_tokenizer}), over its limit of {limit}, after {ENCODER_RETRIES} shorter tries; "
        "lower --max-tokens, or raise --encoder-limit if the encoder takes more"
    )


def _to_last_sentence(generation: Generation) -> Generation:
    """A retry's answer cut at its budget, ended at its last full sentence (unchanged when it
    finished, or has no sentence end to cut at)."""
    if not _cut_off(generation):
        return generation
    text = clean_text(generation.text)
    end = max(text.rfind(mark) for mark in ".!?")
    if end <= 0:
        return generation
    return replace(generation, text=text[: end + 1], finish_reason="stop")


def _cut_off(generation: Generation | None) -> bool:
    return generation is not None and generation.error is None and generation.finish_reason == "length"


def _next_seed(seed: int | None) -> int:
    """A reproducible run stays reproducible (seed + 1); an unseeded one draws a fresh seed."""
    return seed + 1 if seed is not None else secrets.randbelow(2**31)


def _problem(job: Job, generation: Generation | None) -> str | None:
    if not job.plan.fits:
        return job.plan.message
    if job.failure is not None:
        return job.failure
    if generation is None:
        return "the engine still found the request too long after replanning; lower --max-resolution"
    return None
