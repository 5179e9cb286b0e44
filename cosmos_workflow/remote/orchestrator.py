"""WorkflowOrchestrator: upsample a list of PromptSpecs in one batch, the model loaded once.

The batch runs through an injected executor (``Executor`` in :mod:`cosmos_workflow.specs.workflow`:
items, options, output path, progress -> ``RunResult`` in input order). The default runs it in
this process with :func:`cosmos_workflow.api.upsample`; a remote executor that copies the items to
a GPU host and runs the same command there can replace it later without touching this class.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cosmos_workflow.budget import PlanSettings
from cosmos_workflow.engines import EngineConfig, SamplingParams
from cosmos_workflow.errors import ConfigError
from cosmos_workflow.runner import RunOptions
from cosmos_workflow.specs.prompt_spec import PromptSpec
from cosmos_workflow.specs.workflow import Executor, local_executor, upsample_specs

if TYPE_CHECKING:
    from cosmos_workflow.engines import Engine
    from cosmos_workflow.runner import Progress

log = logging.getLogger("cosmos_workflow")

_PLAN_KEYS = frozenset({"num_frames", "frame_sampling", "max_tokens", "max_model_len"})
_SAMPLING_KEYS = frozenset({"temperature", "top_p", "max_tokens", "seed"})
_ENGINE_KEYS = frozenset({"engine", "model", "max_model_len", "device"})
_RUN_KEYS = frozenset({"batch_size", "on_error", "force", "clips_dir", "workers", "prefetch_batches"})
_ALIASES = {"checkpoint_dir": "model", "engine_options": "options"}
ALLOWED_OPTIONS = sorted(_PLAN_KEYS | _SAMPLING_KEYS | _ENGINE_KEYS | _RUN_KEYS | set(_ALIASES))


def build_run_options(
    *, preprocess_videos: bool = True, max_resolution: int | Literal["auto"] = 480, **options: Any
) -> RunOptions:
    """RunOptions from the seed's keyword arguments (``num_frames=2, temperature=0.6, ...``)."""
    options = {_ALIASES.get(k, k): v for k, v in options.items()}
    unknown = sorted(set(options) - _PLAN_KEYS - _SAMPLING_KEYS - _ENGINE_KEYS - _RUN_KEYS - {"options"})
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(ALLOWED_OPTIONS)}")
    plan = PlanSettings.model_validate(
        {"preprocess": preprocess_videos, "max_resolution": max_resolution, **_pick(options, _PLAN_KEYS)}
    )
    engine = EngineConfig.model_validate(
        {"max_images_per_prompt": plan.num_frames, **_pick(options, _ENGINE_KEYS | {"options"})}
    )
    return RunOptions.model_validate(
        {
            "plan": plan,
            "sampling": SamplingParams.model_validate(_pick(options, _SAMPLING_KEYS)),
            "engine": engine,
            **_pick(options, _RUN_KEYS),
        }
    )


def _pick(options: dict[str, Any], keys: frozenset[str] | set[str]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in keys}


class WorkflowOrchestrator:
    """Runs spec batches through an executor; the journal and clips go under ``work_dir``."""

    def __init__(
        self,
        *,
        work_dir: Path = Path("outputs/upsampling"),
        executor: Executor | None = None,
        engine: Engine | None = None,
        progress: Progress | None = None,
    ) -> None:
        if executor is not None and engine is not None:
            raise ConfigError("give an executor or an engine, not both; the executor decides where it runs")
        self.work_dir = work_dir
        self.executor = executor or local_executor(engine)
        self.progress = progress
        #: spec id -> reason, for the specs of the last batch that were not upsampled
        self.failures: dict[str, str] = {}

    def upsample_prompts_batch(
        self,
        prompt_specs: Sequence[PromptSpec],
        preprocess_videos: bool = True,
        max_resolution: int | Literal["auto"] = 480,
        **options: Any,
    ) -> list[PromptSpec]:
        """Upsample multiple prompts without running inference; same order as ``prompt_specs``.

        Each returned spec carries ``upsampled_prompt``, ``upsampled_at`` and
        ``upsampling_params``; a spec that failed comes back unchanged and its reason is in
        :attr:`failures`. Rerunning with the same ``work_dir`` resumes from the journal.
        """
        run_options = build_run_options(
            preprocess_videos=preprocess_videos, max_resolution=max_resolution, **options
        )
        if run_options.clips_dir is None and preprocess_videos:
            run_options = run_options.model_copy(update={"clips_dir": self.work_dir / "clips"})
        results = upsample_specs(
            prompt_specs,
            run_options,
            output=self.work_dir / "results.json",
            executor=self.executor,
            progress=self.progress,
        )
        self.failures = {spec.id: reason for spec, reason in results if reason is not None}
        for spec, reason in results:
            if reason is not None:
                log.warning("%s (%s) not upsampled: %s", spec.name, spec.id, reason)
        return [spec for spec, _ in results]
