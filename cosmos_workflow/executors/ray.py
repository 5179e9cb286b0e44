"""The Ray executor: the planned jobs run on a Ray cluster through a Ray Data pipeline.

::

    jobs (planned once, on the driver) -> batches, length-sorted exactly as the local runner makes them
      -> preprocessing: decode, resize, clip, encode  (CPU tasks, anywhere in the cluster)
      -> generation: an actor pool (map_batches), one engine loaded per actor, the same runner
         (out-of-memory back-off, cut-off retry, per-item failures) and the same engine contract
      -> records stream back to the driver, which alone writes the journal and the output

Each row of the dataset is one engine batch, so a Ray run sends the model the same batches as a
local run: with a fixed seed the records are the same. An actor asks for one GPU (``num_gpus=1``);
on a cluster without GPUs (or with the fake engine) it asks for a share of the CPUs, leaving a
share for preprocessing.

Faults. Ray restarts a killed actor (its engine is loaded again) and retries the batches it
held (Ray Data's defaults: no limit on either). So that a batch that kills its engine every time
does not loop forever, a small actor (:class:`Attempts`) counts the tries at each batch across
restarts: after :data:`BATCH_TRIES`, the batch's items get an error record naming the cause and
the run goes on. The driver appends a key only once, so no item is lost or written twice. A killed driver
loses nothing that reached the journal: rerunning the command resumes from it, like any run.
A failure of one item (its video, its plan, the engine's answer) stays that item's status.

Engines. ``hf`` and ``vllm`` run one engine per actor, loaded through the engine registry as in a
local run. Ray Data LLM's vLLM processor was read (Ray 2.60, ``ray.llm``) and not used: it pins
its own vLLM (``ray[llm]`` wants 0.29.0; the Cosmos image has 0.8.1); it drives vLLM's async
engine itself, so our runner would not see the batch: no out-of-memory back-off, no cut-off retry
with a new seed, no shrinking of a request the engine finds too long, and different records from
a local run; and with its defaults one failing row fails the whole dataset
(``should_continue_on_error`` off). One vLLM instance per actor keeps the planner's exact token
ids, per-item isolation and the records of a local run. ``openai`` is refused: its server
already batches.

The cluster: ``ray_address`` (``--ray-address``), else Ray's own rule (``$RAY_ADDRESS``, else the
cluster ``ray start`` last started on this machine, else a new local one, stopped at the end).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import pickle
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cosmos_workflow.engines import Engine, EngineConfig, engine_class, load_engine
from cosmos_workflow.errors import ClusterError, CosmosWorkflowError, ModelLoadError, UsageError
from cosmos_workflow.executors.base import Executor, RunContext
from cosmos_workflow.executors.local import write_fallbacks
from cosmos_workflow.families import family_for
from cosmos_workflow.media import SharedFrames
from cosmos_workflow.options import check_ray_engine
from cosmos_workflow.runner import Job, Runner, length_sorted_batches, prepare_job
from cosmos_workflow.specs.results import UpsampleRecord

if TYPE_CHECKING:
    from types import ModuleType

    from cosmos_workflow.config import RunOptions

log = logging.getLogger("cosmos_workflow")

EngineFactory = Callable[[EngineConfig], Engine]

#: with ``--batch-size auto`` the driver ships batches this large; each actor then sizes its
#: engine calls from its own free GPU memory
AUTO_BATCH = 256
#: Ray Data's loggers that would print over the CLI's progress bar, and the level they get
_CHATTY_LOGGERS = {
    "ray.data._internal.progress": logging.ERROR,  # "progress bars disabled"
    "ray.data._internal.execution.streaming_executor": logging.WARNING,  # start and end banners
}
#: how long the pipeline waits for every actor to load its engine before the run fails
ENGINE_START_S = 1800
#: tries at one engine batch, each ended by its actor's death, before its items are given up
BATCH_TRIES = 3
#: variables of the driver that the workers get too (the model cache, test hooks)
_FORWARDED_PREFIX = "COSMOS_WORKFLOW_"


@dataclass(frozen=True)
class Placement:
    """What the actor pool and the preprocessing tasks ask of the cluster."""

    actors: int
    #: per actor: 1 on a GPU cluster, else 0
    gpus: float
    #: per actor
    cpus: float

    @property
    def task_cpus(self) -> float:
        """Per preprocessing task: half an actor's share. Two can run where one actor does, and
        the requests differ, so Ray Data does not fuse preprocessing into the actors (it fuses
        a task stage into the next actor stage when their resource requests are equal)."""
        return self.cpus / 2


def placement(resources: Mapping[str, float], options: RunOptions) -> Placement:
    """One actor per GPU (or ``ray_actors``); each actor gets an equal share of the cluster's
    CPUs (up to one), with one share left for preprocessing, so preprocessing always runs."""
    gpus = int(resources.get("GPU", 0))
    on_gpu = gpus > 0 and engine_class(options.engine.engine).needs_gpu and not _cpu_device(options)
    actors = options.ray_actors or (gpus if on_gpu else 1)
    if on_gpu and actors > gpus:
        raise UsageError(
            f"--ray-actors {actors} needs {actors} GPUs but the Ray cluster has {gpus}; "
            f"pass --ray-actors {gpus} or add GPU nodes"
        )
    share = min(1.0, math.floor(100 * resources.get("CPU", 1) / (actors + 1)) / 100)
    if share < 0.02:
        raise UsageError(
            f"the Ray cluster's {resources.get('CPU', 0)} CPUs cannot hold {actors} actors and "
            "preprocessing; pass a smaller --ray-actors"
        )
    return Placement(actors=actors, gpus=1.0 if on_gpu else 0.0, cpus=share)


def _cpu_device(options: RunOptions) -> bool:
    return (options.engine.device or "").startswith("cpu")


def engine_batches(jobs: Sequence[Job], options: RunOptions, actors: int = 1) -> list[list[Job]]:
    """The engine batches of a local run (length-sorted; with ``first_batch``, a first batch of
    that many, at most a batch; each video's requests together for an engine that shares their
    frames), then one batch of the jobs whose plan does not fit (recorded with the plan's reason,
    never sent to the model). With ``batch_size`` 'auto', batches of :data:`AUTO_BATCH`, or fewer
    requests each where that would leave some of the ``actors`` without a batch."""
    fitting = [j for j in jobs if j.plan.fits]
    size = options.batch_size if isinstance(options.batch_size, int) else shipped_size(len(fitting), actors)
    first = min(options.first_batch, size)
    by_video = engine_class(options.engine.engine).shares_prefixes_with(options.engine.options)
    batches = length_sorted_batches(fitting, size, first=first, by_video=by_video)
    unfit = [j for j in jobs if not j.plan.fits]
    return [*batches, unfit] if unfit else batches


def shipped_size(count: int, actors: int) -> int:
    """The requests a batch ships with ``batch_size`` 'auto': :data:`AUTO_BATCH` (each actor
    splits it by its own memory), or an even share of ``count`` when that leaves every actor one
    (200 requests on 2 actors: 2 of 100, not 1 of 200 and an idle actor)."""
    return max(1, min(AUTO_BATCH, -(-count // max(actors, 1))))


class RayExecutor(Executor):
    """Runs the jobs on a Ray cluster; ``engine_factory`` (default: the registry) loads each
    actor's engine and must be picklable."""

    name = "ray"

    def __init__(self, engine_factory: EngineFactory | None = None) -> None:
        self.engine_factory = engine_factory

    def adapt(self, options: RunOptions) -> RunOptions:
        check_ray_engine(options.engine.engine)
        return options

    def execute(self, jobs: Sequence[Job], run: RunContext) -> None:
        if not jobs:
            return
        ray = import_ray()
        with connected(ray, run.options.ray_address):
            where = placement(ray.cluster_resources(), run.options)
            log.info(
                "ray: %d jobs, %d actor(s), %s GPU and %s CPU each",
                len(jobs),
                where.actors,
                where.gpus,
                where.cpus,
            )
            self._run(jobs, where, run)

    def _run(self, jobs: Sequence[Job], where: Placement, run: RunContext) -> None:
        """Stream the records into the journal, each key once (a job without one stays pending:
        the api names it, and a rerun does it)."""
        pending = {job.key: job for job in jobs}
        try:
            for records in stream(jobs, run.options, where, self.engine_factory):
                run.save([r for r in records if pending.pop(r.key, None) is not None])
        except Exception as exc:
            cause = our_error(exc)
            if isinstance(cause, ModelLoadError) and run.options.on_error == "original":
                write_fallbacks(list(pending.values()), run, _first_line(cause))
                return
            if cause is not None:  # its own line: Ray appends notes on its retries to the text
                raise type(cause)(_first_line(cause)) from exc
            raise ClusterError(
                f"the Ray pipeline failed ({type(exc).__name__}: {_first_line(exc)}); the finished "
                "items are in the journal: rerun the same command to do the rest"
            ) from exc


# --------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------


def stream(
    jobs: Sequence[Job], options: RunOptions, where: Placement, factory: EngineFactory | None
) -> Iterator[list[UpsampleRecord]]:
    """Records as each engine batch finishes, in completion order (Ray must be connected)."""
    import ray.data

    batches = engine_batches(jobs, options, where.actors)
    longest = max((j.plan.total_tokens for j in jobs if j.plan.fits), default=0)
    forwarded = forwarded_environment()
    environment = {"env_vars": forwarded} if forwarded else None  # none: the idle workers serve
    rows = [{"batch": batch[0].key, "jobs": _dumps(batch)} for batch in batches]
    attempts = ray.remote(num_cpus=0)(Attempts).remote()  # type: ignore[call-overload]
    with data_context():
        dataset = (
            ray.data.from_items(rows, override_num_blocks=len(rows))
            .map(
                functools.partial(prepare_row, options=options),
                num_cpus=where.task_cpus,
                runtime_env=environment,
            )
            .map_batches(
                EngineActor,
                batch_size=1,
                fn_constructor_kwargs={
                    "options": options,
                    "factory": factory,
                    "longest": longest,
                    "attempts": attempts,
                },
                compute=ray.data.ActorPoolStrategy(size=where.actors),
                num_cpus=where.cpus,
                num_gpus=where.gpus,
                runtime_env=environment,
            )
        )
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            yield [UpsampleRecord.model_validate_json(str(line)) for line in batch["record"]]


def prepare_row(row: dict[str, Any], options: RunOptions) -> dict[str, Any]:
    """A CPU task: decode, resize and encode one engine batch (in ``options.workers`` threads);
    frames that several of its requests want, once."""
    jobs = _loads(row["jobs"])
    tokenizer = family_for(options.engine.model, options.plan.system_prompt)
    shared = SharedFrames()

    def prepare(job: Job) -> Job:
        return prepare_job(job, tokenizer, options, shared=shared) if job.plan.fits else job

    with ThreadPoolExecutor(options.workers, thread_name_prefix="preprocess") as pool:
        return {"batch": row["batch"], "jobs": _dumps(list(pool.map(prepare, jobs)))}


class Attempts:
    """A Ray actor of the run: how many times each engine batch was started, across the restarts
    of the actors that died on it."""

    def __init__(self) -> None:
        self.started: Counter[str] = Counter()

    def start(self, batch: str) -> int:
        self.started[batch] += 1
        return self.started[batch]


class EngineActor:
    """One actor of the pool: an engine loaded once, and the runner's batch step around it."""

    def __init__(
        self, options: RunOptions, factory: EngineFactory | None, longest: int, attempts: Any
    ) -> None:
        self.runner: Runner | None = None
        self.load_error: ModelLoadError | None = None
        self.attempts = attempts
        try:
            engine = (factory or load_engine)(options.engine)
        except ModelLoadError as exc:
            # raised from the first batch instead: Ray reports an actor's failed start without
            # its exception, and a batch's failure with it (so the driver can name the cause)
            self.load_error = exc
            return
        # the tokenizer loads only if a request must shrink: the batches come encoded
        tokenizer = functools.partial(family_for, options.engine.model, options.plan.system_prompt)
        self.runner = Runner(engine, tokenizer, options)
        self.runner.size_batches(longest)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        if self.runner is None:
            raise self.load_error or ModelLoadError("the engine did not load")
        records = [
            r for name, blob in zip(batch["batch"], batch["jobs"], strict=True) for r in self._one(name, blob)
        ]
        return {"key": [r.key for r in records], "record": [r.model_dump_json() for r in records]}

    def _one(self, name: str, blob: bytes) -> list[UpsampleRecord]:
        """One engine batch; given up (an error record for each item) if its earlier tries each
        killed the actor that held it."""
        import ray

        assert self.runner is not None
        jobs = _loads(blob)
        tries = ray.get(self.attempts.start.remote(str(name)))
        if tries <= BATCH_TRIES:
            return self.runner.generate_batch(jobs)
        message = (
            f"the engine's process died on each of {BATCH_TRIES} tries at this item's batch "
            f"({len(jobs)} items; a crash in the engine or the host out of memory); rerun these "
            "items alone (--batch-size 1) to find the one that kills it"
        )
        return self.runner.failed_records(jobs, message)

    def __del__(self) -> None:
        if self.runner is not None:
            self.runner.engine.close()


def _dumps(jobs: list[Job]) -> bytes:
    return pickle.dumps(jobs, protocol=pickle.HIGHEST_PROTOCOL)


def _loads(blob: bytes) -> list[Job]:
    jobs: list[Job] = pickle.loads(blob)  # noqa: S301 - our own jobs, between our own processes
    return jobs


# --------------------------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------------------------


def import_ray() -> ModuleType:
    try:
        import ray
        import ray.data  # the Data library runs the pipeline
    except ImportError as exc:
        raise UsageError(
            f"--executor ray needs Ray Data ({exc}); install it with: pip install 'cosmos-workflow[ray]'"
        ) from exc
    return ray


@contextmanager
def connected(ray: ModuleType, address: str | None) -> Iterator[None]:
    """Joins the cluster at ``address`` (or by Ray's rule) unless this process already has; a
    connection made here is closed here (and a local cluster started here is stopped)."""
    if ray.is_initialized():
        yield
        return
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"at {address}" if address else "(none given: a local one)"
        raise ClusterError(
            f"cannot reach the Ray cluster {where}: {_first_line(exc)}; start it with `ray start --head` "
            "on the head node, or leave out --ray-address to start a local one"
        ) from exc
    try:
        yield
    finally:
        ray.shutdown()


def forwarded_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The driver's ``COSMOS_WORKFLOW_*`` variables (e.g. the model cache), for every worker."""
    env = os.environ if env is None else env
    return {name: value for name, value in env.items() if name.startswith(_FORWARDED_PREFIX)}


@contextmanager
def data_context() -> Iterator[None]:
    """Ray Data as the CLI wants it: no progress bars or banners (it shows its own progress;
    warnings stay); a failing batch raises its own exception (a cosmos-workflow error the driver
    can name) rather than a generic one; and batches go out once every actor has its engine, so
    the first actor up does not take them all (Ray gives each batch to the least busy actor)."""
    from ray.data import DataContext

    context = DataContext.get_current()
    fields = {
        "enable_progress_bars": False,
        "print_on_execution_start": False,
        "raise_original_map_exception": True,
        "wait_for_min_actors_s": ENGINE_START_S,
    }
    saved = {name: getattr(context, name) for name in fields}
    levels = {name: logging.getLogger(name).level for name in _CHATTY_LOGGERS}
    for name, value in fields.items():
        setattr(context, name, value)
    for name, level in _CHATTY_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(context, name, value)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def our_error(exc: BaseException) -> CosmosWorkflowError | None:
    """The cosmos-workflow error that Ray wrapped (raised in an actor or a task), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        cause = getattr(current, "cause", None)  # a RayTaskError's original exception
        if isinstance(cause, BaseException):
            current = cause
        elif isinstance(current, CosmosWorkflowError):
            return current
        else:
            current = current.__cause__ or current.__context__
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
