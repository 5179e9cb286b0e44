"""WorkflowOrchestrator: upsample a list of PromptSpecs in one batch, the model loaded once.

The batch runs through an executor (:mod:`cosmos_workflow.executors`), chosen from the options as
the CLI's is: by default this process (or, with ``num_gpu > 1``, a torchrun child process on that
many GPUs); the ``[remote]`` host or a Ray cluster runs the same plans elsewhere without touching
this class, which passes only the settings. Options come from the same place as
the CLI's (:mod:`cosmos_workflow.config`): the keyword arguments here take the flags' place above
the config file and the environment.

The orchestrator keeps one local executor for its whole life: with
``offload_prompt_upsampler=False`` the engine it loads stays loaded from one
``upsample_prompts_batch`` call to the next of the same engine settings, until :meth:`close`
(or the end of a ``with`` block). With the default (``True``) it is freed after each batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cosmos_workflow.config import options_from_keywords, resolve_settings
from cosmos_workflow.defaults import MAX_RESOLUTION
from cosmos_workflow.errors import ConfigError
from cosmos_workflow.executors import LocalExecutor
from cosmos_workflow.lifetime import Closes
from cosmos_workflow.specs.prompt_spec import PromptSpec
from cosmos_workflow.workflow.spec_runs import upsample_specs

if TYPE_CHECKING:
    from cosmos_workflow.config import RunOptions
    from cosmos_workflow.engines import Engine
    from cosmos_workflow.executors import Executor
    from cosmos_workflow.executors.remote import RemoteConfig
    from cosmos_workflow.runner import Progress

log = logging.getLogger("cosmos_workflow")


class WorkflowOrchestrator(Closes):
    """Runs spec batches through an executor; the journal and clips go under ``work_dir``.

    Use it as a context manager (or call :meth:`close`) when an engine may be kept loaded.
    """

    def __init__(
        self,
        *,
        work_dir: Path = Path("outputs/upsampling"),
        executor: Executor | None = None,
        engine: Engine | None = None,
        progress: Progress | None = None,
        config_file: Path | None = None,
        remote: bool | None = None,
    ) -> None:
        """``remote``: run on the GPU host of ``[remote]`` (None: when the config names a host)."""
        if executor is not None and engine is not None:
            raise ConfigError("give an executor or an engine, not both; the executor decides where it runs")
        self.work_dir = work_dir
        self.config_file = config_file
        #: the GPU host of ``[remote]`` the batches run on, if any (never with a given executor or engine)
        self.remote = _remote_config(config_file, remote) if executor is None and engine is None else None
        self.executor = executor
        self.engine = engine
        #: the executor of this process' batches, kept across calls (and its engine, if kept)
        self.local = LocalExecutor(engine)
        self.progress = progress
        #: spec id -> reason, for the specs of the last batch that were not upsampled
        self.failures: dict[str, str] = {}

    def upsample_prompts_batch(
        self,
        prompt_specs: Sequence[PromptSpec],
        preprocess_videos: bool = True,
        max_resolution: int | Literal["auto"] = MAX_RESOLUTION,
        *,
        force: bool = False,
        **options: Any,
    ) -> list[PromptSpec]:
        """Upsample multiple prompts without running inference; same order as ``prompt_specs``.

        ``options`` are the ``[upsample]`` settings by name (``num_frames=2``, ``temperature=0.6``,
        ``model=...`` or ``checkpoint_dir=...``, ``num_gpu=2``, ``cuda_devices="0,1"``,
        ``offload_prompt_upsampler=False``). Each returned spec carries ``upsampled_prompt``,
        ``upsampled_at`` and ``upsampling_params``; a spec that failed comes back unchanged and its
        reason is in :attr:`failures`. Rerunning with the same ``work_dir`` resumes from the journal.
        """
        output = self.work_dir / "results.json"
        if options.get("clips", True) and "clips_dir" not in options:
            options["clips_dir"] = self.work_dir / "clips"
        run_options = options_from_keywords(
            output=output,
            force=force,
            config_file=self.config_file,
            preprocess_videos=preprocess_videos,
            max_resolution=max_resolution,
            **options,
        )
        results = upsample_specs(
            prompt_specs,
            run_options,
            output=output,
            executor=self._executor_for(run_options),
            remote=self.remote,
            progress=self.progress,
        )
        self.failures = {spec.id: reason for spec, reason in results if reason is not None}
        for spec, reason in results:
            if reason is not None:
                log.warning("%s (%s) not upsampled: %s", spec.name, spec.id, reason)
        return [spec for spec, _ in results]

    def _executor_for(self, options: RunOptions) -> Executor | None:
        """The caller's executor; for the remote host, an executor named in the options (a Ray
        cluster) or several GPUs none (the api chooses from the options); else ours."""
        if self.executor is not None or self.remote is not None:
            return self.executor
        if options.executor != "local":
            if self.engine is not None:
                raise ConfigError(
                    f"executor {options.executor!r} loads its own engine and cannot use the engine given "
                    "to this orchestrator; drop engine= or executor"
                )
            return None
        if options.num_gpu == 1:
            return self.local
        if self.engine is not None:
            raise ConfigError(
                f"num_gpu {options.num_gpu} runs the batch in other processes, which cannot use the engine "
                "given to this orchestrator; drop engine= or num_gpu"
            )
        if not options.offload_prompt_upsampler:
            log.warning(
                "offload_prompt_upsampler=False keeps nothing loaded with num_gpu %d: each batch starts "
                "its own processes, which load the model and exit",
                options.num_gpu,
            )
        return None

    def close(self) -> None:
        """Free the engine kept by ``offload_prompt_upsampler=False``. A given engine or executor
        is the caller's to close. The orchestrator stays usable (the next batch loads again)."""
        self.local.close()


def _remote_config(config_file: Path | None, remote: bool | None) -> RemoteConfig | None:
    """The remote host's settings when asked for, or (``remote`` None) when the config names a host."""
    if remote is False:
        return None
    resolved = resolve_settings(config_file=config_file)
    if remote is None and resolved.settings.remote.host is None:
        return None
    from cosmos_workflow.executors.remote import remote_config

    return remote_config(resolved)
