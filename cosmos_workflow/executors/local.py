"""The local executor: the jobs run in this process, through one engine loaded once per batch.

With ``offload_prompt_upsampler`` (the default) the engine is closed, and its memory freed, after
each batch. Without it the engine stays in the executor's :class:`EngineCache` for the next batch
of the same engine settings, until :meth:`LocalExecutor.close`: an owner that lives across batches
(the orchestrator) keeps one executor and closes it when done.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from cosmos_workflow.engines import Engine, engine_class
from cosmos_workflow.engines.cache import EngineCache
from cosmos_workflow.errors import ConfigError, ModelLoadError
from cosmos_workflow.executors.base import Executor, RunContext
from cosmos_workflow.runner import Runner, build_record

if TYPE_CHECKING:
    from cosmos_workflow.config import RunOptions
    from cosmos_workflow.runner import Job

log = logging.getLogger("cosmos_workflow")


class LocalExecutor(Executor):
    """Runs the jobs here, on the caller's engine (never closed here) or on one it loads."""

    name = "local"

    def __init__(self, engine: Engine | None = None, *, engines: EngineCache | None = None) -> None:
        self.engine = engine
        self.engines = engines or EngineCache()

    def adapt(self, options: RunOptions) -> RunOptions:
        """``cuda_devices`` in one process: the engine runs on the first GPU listed."""
        engine = options.engine
        nothing_to_pin = engine.device is not None or not engine_class(engine.engine).needs_gpu
        if options.cuda_devices is None or nothing_to_pin:
            return options
        first = options.cuda_devices.split(",")[0]
        device = f"cuda:{visible_index(first, os.environ)}"
        return options.model_copy(update={"engine": engine.model_copy(update={"device": device})})

    def preload(self, options: RunOptions) -> None:
        """The engine starts loading in the background (where its class allows it) while the items
        are probed and planned: for a large run, seconds to minutes of each beside the other."""
        if self.engine is None and engine_class(options.engine.engine).loads_in_background:
            self.engines.preload(options.engine)

    def execute(self, jobs: Sequence[Job], run: RunContext) -> None:
        if not jobs:
            return
        if self.engine is not None:
            Runner(self.engine, run.tokenizer, run.options, run.journal).run(jobs, run.progress)
            return
        try:
            loaded = self.engines.get(run.options.engine)
        except ModelLoadError as exc:
            if run.options.on_error != "original":
                raise
            write_fallbacks(jobs, run, str(exc))
            return
        try:
            Runner(loaded, run.tokenizer, run.options, run.journal).run(jobs, run.progress)
        finally:
            if run.options.offload_prompt_upsampler:
                self.engines.close()

    def close(self) -> None:
        """Free the engine kept by ``offload_prompt_upsampler=False`` (the caller's is left open)."""
        self.engines.close()


def visible_index(device: str, env: Mapping[str, str]) -> int:
    """The CUDA index this process sees GPU ``device`` (an index or UUID, as in
    CUDA_VISIBLE_DEVICES) at: its place in this process' CUDA_VISIBLE_DEVICES, if that is set."""
    visible = [v.strip() for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if device in visible:
        return visible.index(device)
    if not visible and device.isdigit():
        return int(device)
    where = f"CUDA_VISIBLE_DEVICES={','.join(visible)}" if visible else "no CUDA_VISIBLE_DEVICES"
    raise ConfigError(
        f"cuda_devices names GPU {device!r}, which this process cannot see ({where}); "
        "list a visible GPU, or widen CUDA_VISIBLE_DEVICES"
    )


def write_fallbacks(jobs: Sequence[Job], run: RunContext, reason: str) -> None:
    """``--on-error original`` when the model cannot load: every item gets its original prompt."""
    log.error("%s; writing the original prompts (status 'fallback')", reason)
    for job in jobs:
        job.failure = reason
    run.save([build_record(job, None, None, run.options) for job in jobs])
