"""The run's options: the one frozen :class:`RunOptions` a run carries from start to end, built
from the ``[upsample]`` settings by :func:`run_options` (or by a caller that needs no settings
file: tests, scripts). Where the settings come from is :mod:`cosmos_workflow.config`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator

from cosmos_workflow.checkpoint.discovery import checkpoint_for
from cosmos_workflow.defaults import ENCODER_LIMIT, PRESET_SYSTEM_PROMPTS
from cosmos_workflow.engines import EngineConfig, SamplingParams, engine_class
from cosmos_workflow.errors import UsageError
from cosmos_workflow.planner import PlanSettings
from cosmos_workflow.settings import RunSettings, UpsampleSettings
from cosmos_workflow.userfiles import KiB, UserFile, read_user_text


class RunOptions(RunSettings):
    """Everything that shapes a run besides the items; built once by :func:`run_options`. The
    settings a run carries as they are are :class:`~cosmos_workflow.settings.RunSettings`' fields,
    declared there once; the fields here are worked out from the settings."""

    plan: PlanSettings = Field(default_factory=PlanSettings)
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    force: bool = False
    clips_dir: Path | None = Field(None, description="where preprocessed clips go; None writes none")
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


# --------------------------------------------------------------------------------------------
# From the settings to the run's options
# --------------------------------------------------------------------------------------------


def plan_settings(settings: UpsampleSettings) -> PlanSettings:
    return PlanSettings(
        preprocess=settings.preprocess_videos,
        system_prompt=system_prompt_of(settings),
        **_named(settings, PlanSettings, derived={"system_prompt"}),
    )


#: ``--system-prompt-file``: a paragraph or a page of instructions
SYSTEM_PROMPT_FILE = UserFile(
    what="system prompt file",
    max_bytes=64 * KiB,
    error=UsageError,
    fix="pass a UTF-8 text file with the system prompt to --system-prompt-file",
)


def system_prompt_of(settings: UpsampleSettings) -> str | None:
    """The system prompt every chat starts with: ``system_prompt_file``'s text, else
    ``system_prompt`` (how torchrun's ranks and the remote host are given it), else the preset's,
    else none."""
    if settings.system_prompt_file is None:
        if settings.system_prompt:
            return settings.system_prompt
        return PRESET_SYSTEM_PROMPTS.get(settings.preset) if settings.preset else None
    text = read_user_text(settings.system_prompt_file, SYSTEM_PROMPT_FILE).strip()
    if not text:
        raise SYSTEM_PROMPT_FILE.refuse(settings.system_prompt_file, "is empty")
    return text


def run_options(settings: UpsampleSettings, *, output: Path | None = None, force: bool = False) -> RunOptions:
    """The run's options; clips go to ``clips_dir``, else ``<output stem>_clips`` beside ``output``.
    The settings of the same name in :class:`RunOptions`, :class:`SamplingParams` and
    :class:`EngineConfig` are taken by name; the others are derived here."""
    return RunOptions(
        plan=plan_settings(settings),
        sampling=SamplingParams(**_named(settings, SamplingParams)),
        engine=EngineConfig(
            **_named(settings, EngineConfig, derived={"model"}),
            model=resolve_model(settings),
            max_images_per_prompt=settings.num_frames,
            options=dict(settings.engine_options),
        ),
        force=force,
        clips_dir=_clips_dir(settings, output),
        encoder_limit=encoder_limit_of(settings),
        **_named(settings, RunOptions, derived={"engine", "clips_dir", "encoder_limit"}),
    )


def encoder_limit_of(settings: UpsampleSettings) -> int | None:
    """The answers' limit: ``encoder_limit``, else 512 when an encoder tokenizer is given."""
    return settings.encoder_limit or (ENCODER_LIMIT if settings.encoder_tokenizer else None)


def _named(
    settings: UpsampleSettings, model: type[BaseModel], *, derived: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    """The settings named as ``model``'s fields, as they are, but for the ``derived`` ones."""
    shared = model.model_fields.keys() & UpsampleSettings.model_fields.keys()
    return {name: getattr(settings, name) for name in sorted(shared - derived)}


def _clips_dir(settings: UpsampleSettings, output: Path | None) -> Path | None:
    if not (settings.clips and settings.preprocess_videos):
        return None
    if settings.clips_dir is not None:
        return settings.clips_dir
    # no name ("-o ''" is Path('.')): no clips folder; the run refuses that output (paths.check_paths)
    return default_clips_dir(output) if output is not None and output.name else None


def resolve_model(
    settings: UpsampleSettings, *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> str:
    """The checkpoint to load: ``model``, else the engine's own default (``fake``), else
    Cosmos-Transfer1's upsampler where its download script puts it
    (:func:`~cosmos_workflow.checkpoint.discovery.checkpoint_for`); a per-control folder is picked
    by ``control``."""
    default = engine_class(settings.engine).default_model
    if not settings.model and default is not None:
        return default
    return checkpoint_for(
        settings.model, settings.control, env=os.environ if env is None else env, cwd=cwd or Path.cwd()
    )
