"""The run's options: the one frozen :class:`RunOptions` a run carries from start to end, built
from the settings by :func:`cosmos_workflow.config.run_options` (or by a caller that needs no
settings file: tests, scripts)."""

from __future__ import annotations

from copy import copy
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cosmos_workflow.engines import EngineConfig, SamplingParams, engine_class
from cosmos_workflow.errors import UsageError
from cosmos_workflow.planner import PlanSettings
from cosmos_workflow.settings import BatchSize, Executor, OnError, UpsampleSettings


def setting(name: str) -> Any:
    """``[upsample] name`` as :mod:`cosmos_workflow.settings` declares it (default, bounds and
    description), for a run field that carries that setting as it is."""
    return copy(UpsampleSettings.model_fields[name])


class RunOptions(BaseModel):
    """Everything that shapes a run besides the items; built once by
    :func:`cosmos_workflow.config.run_options`. A field that carries a setting as it is takes the
    setting's declaration (:func:`setting`); the others are worked out from the settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plan: PlanSettings = Field(default_factory=PlanSettings)
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    batch_size: BatchSize = setting("batch_size")
    on_error: OnError = setting("on_error")
    force: bool = False
    clips_dir: Path | None = Field(None, description="where preprocessed clips go; None writes none")
    workers: int = setting("workers")
    prefetch_batches: int = setting("prefetch_batches")
    offload_prompt_upsampler: bool = setting("offload_prompt_upsampler")
    num_gpu: int = setting("num_gpu")
    cuda_devices: str | None = setting("cuda_devices")
    executor: Executor = setting("executor")
    ray_address: str | None = setting("ray_address")
    ray_actors: int | None = setting("ray_actors")
    encoder_tokenizer: Path | None = setting("encoder_tokenizer")
    encoder_limit: int | None = Field(None, ge=1, description="answer tokens the encoder takes")

    @model_validator(mode="after")
    def _encoder_limit_needs_a_tokenizer(self) -> RunOptions:
        if self.encoder_limit is not None and self.encoder_tokenizer is None:
            raise UsageError(
                f"--encoder-limit {self.encoder_limit} needs --encoder-tokenizer PATH, the tokenizer "
                "to count the answers with (e.g. the generator's T5 tokenizer folder)"
            )
        return self

    @model_validator(mode="after")
    def _runs_on_the_executor(self) -> RunOptions:
        if self.executor == "ray":
            check_ray_engine(self.engine.engine)
            if self.num_gpu > 1 or self.cuda_devices:
                raise UsageError(
                    "--num-gpu and --cuda-devices start torchrun on this host; with --executor ray the "
                    "cluster gives each actor its GPU: drop them and pass --ray-actors N"
                )
        return self

    def clips_folder(self, output: Path) -> Path:
        """The folder the clips of ``output``'s records must lie in: ``clips_dir``, else the default
        beside ``output`` (so a ``--no-clips`` rerun still accepts the clips an earlier run wrote)."""
        return self.clips_dir or default_clips_dir(output)


def default_clips_dir(output: Path) -> Path:
    """``<output stem>_clips`` beside ``output``: where a run writes its clips unless told."""
    return output.with_name(f"{output.stem}_clips")


def check_ray_engine(engine: str) -> None:
    """An engine whose class gives a :attr:`~cosmos_workflow.engines.Engine.ray_refusal` does not
    run on Ray (``openai``: its server already batches): a UsageError with that reason."""
    refusal = engine_class(engine).ray_refusal
    if refusal is not None:
        raise UsageError(f"--executor ray does not take --engine {engine}: {refusal}; drop --executor ray")
