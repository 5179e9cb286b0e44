"""The settings: each one's name, type, default, bounds and description, in the sections of the
TOML file (``[upsample]``, ``[remote]``, ``[paths]``, ``[docker]``). Where their values come from
(defaults < a preset < the file < the environment < flags) is :mod:`cosmos_workflow.config`. The
CLI's flags (:mod:`cosmos_workflow.cli.options`) take their help, default and bounds from
``[upsample]``'s declarations here; the part of ``[upsample]`` that a run carries as it is,
:class:`RunSettings`, is also the base of :class:`~cosmos_workflow.options.RunOptions`. Each
setting is declared once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cosmos_workflow.checkpoint.discovery import CHECKPOINT_DIR_ENV, UPSAMPLER_CHECKPOINT
from cosmos_workflow.defaults import (
    ENCODER_LIMIT,
    MAX_MODEL_LEN,
    MAX_RESOLUTION,
    MAX_TOKENS,
    NUM_FRAMES,
    TEMPERATURE,
    TOP_P,
)
from cosmos_workflow.engines import engine_list
from cosmos_workflow.media import FrameSampling

DEFAULT_IMAGE = "nvcr.io/ubuntu/cosmos-transfer1:latest"

#: one entry of CUDA_VISIBLE_DEVICES: an index, or a GPU / MIG UUID
_DEVICE = re.compile(r"\d+|(?:GPU|MIG)-[0-9A-Za-z/-]+")

OnError = Literal["error", "original"]
#: an executor's name: one of :data:`EXECUTORS`
Executor = str
BatchSize = Annotated[int, Field(ge=1)] | Literal["auto"]
Control = Literal["vis", "edge", "depth", "seg"]
EngineOptionValue = str | int | float | bool | None


#: ``executor``'s choices, each declared here once: its name -> what it runs the batch on, and the
#: class that does (``module:Class``, imported only when chosen, by
#: :func:`cosmos_workflow.executors.choice.choose`). ``local`` is this process, or torchrun's ranks
#: with ``num_gpu > 1``; any other runs the batch in this process' stead, as its class does.
EXECUTORS: dict[str, tuple[str, str]] = {
    "local": ("this process, or torchrun's ranks", "cosmos_workflow.executors.local:LocalExecutor"),
    "ray": ("a Ray cluster's actor pool", "cosmos_workflow.executors.ray:RayExecutor"),
}


def _listed(names: tuple[str, ...]) -> str:
    """``a, b, c or d``: a Literal's values, for a description."""
    return f"{', '.join(names[:-1])} or {names[-1]}"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunSettings(Section):
    """The ``[upsample]`` settings a run carries as they are: :class:`UpsampleSettings` and
    :class:`~cosmos_workflow.options.RunOptions` both have these fields, declared once here."""

    batch_size: BatchSize = Field(
        "auto",
        description="requests per engine call, or 'auto': what fits free GPU memory, evened out over the "
        "run (hf engine on a GPU; 8 where the engine cannot say: CPU, vllm, fake, openai); halved on "
        "out-of-memory",
    )
    first_batch: int = Field(
        0,
        ge=0,
        description="requests in the first batch (the shortest), so the first answers come early; the rest "
        "as batch_size says (0: off; vllm, which schedules requests itself, ignores it)",
    )
    on_error: OnError = Field(
        "error", description="'original': write the original prompt (status fallback) when an item fails"
    )
    workers: int = Field(2, ge=1, description="background preprocessing threads")
    prefetch_batches: int = Field(2, ge=1, description="batches prepared ahead of the engine")
    offload_prompt_upsampler: bool = Field(
        True,
        description="free the model after each batch, or keep it for the next batch of a long-lived process "
        "(the orchestrator)",
    )
    num_gpu: int = Field(
        1,
        ge=1,
        description="processes, one GPU each; more than 1 starts torchrun; more than the devices there are "
        "is refused",
    )
    cuda_devices: str | None = Field(
        None,
        description="the GPUs to use, as CUDA_VISIBLE_DEVICES: indices or UUIDs, e.g. 0,1 "
        "(default: all visible)",
    )

    @field_validator("cuda_devices", mode="before")
    @classmethod
    def _device_list(cls, value: object) -> object:
        """``"0, 1"``, ``[0, 1]`` or ``1`` -> ``"0,1"`` / ``"1"``; indices or GPU/MIG UUIDs."""
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        if not isinstance(value, str):
            return value
        devices = [d.strip() for d in value.split(",")]
        if not all(_DEVICE.fullmatch(d) for d in devices):
            raise ValueError("list GPU indices (or GPU UUIDs) separated by commas, e.g. '0,1'")
        if len(set(devices)) != len(devices):
            raise ValueError("a GPU is listed twice; list each once, e.g. '0,1'")
        return ",".join(devices)

    executor: Executor = Field(
        "local",
        description="where the batch runs: "
        + _listed(tuple(f"{name} ({where})" for name, (where, _) in EXECUTORS.items())),
    )

    @field_validator("executor")
    @classmethod
    def _known_executor(cls, value: str) -> str:
        if value not in EXECUTORS:
            raise ValueError(f"{value!r} is not an executor; choose {_listed(tuple(EXECUTORS))}")
        return value

    ray_address: str | None = Field(
        None, description="with executor ray: the running cluster (HEAD:6379); default: start a local one"
    )
    ray_actors: int | None = Field(
        None, ge=1, description="engines in the Ray actor pool (default: one per GPU, 1 without GPUs)"
    )
    encoder_tokenizer: Path | None = Field(
        None,
        description="the generator's text encoder's tokenizer (a folder or tokenizer.json, e.g. T5's): "
        "answers longer than the encoder limit are generated again shorter, or fail",
    )


class UpsampleSettings(RunSettings):
    """``[upsample]``: what ``upsample-prompts`` and ``plan`` take, named like their flags (the
    run's own in :class:`RunSettings`)."""

    preprocess_videos: bool = Field(True, description="fit frames to the token budget")
    max_resolution: Annotated[int, Field(ge=16)] | Literal["auto"] = Field(
        MAX_RESOLUTION,
        description="long side cap in pixels (16-px grid), or 'auto' for the largest that fits",
    )
    num_frames: int = Field(NUM_FRAMES, ge=0, le=16, description="frames per video")
    frame_sampling: FrameSampling = Field(
        "first",
        description="'first' frames (what the Cosmos checkpoint saw in training) or spread 'uniform'ly",
    )
    engine: str = Field(
        "auto", description=engine_list({"auto": "vLLM with a GPU, else transformers"}, last=", or ")
    )
    model: str | None = Field(
        None,
        description="checkpoint folder (its tekken.json is the tokenizer), 'tiny-random', or a served model "
        f"name (default: {UPSAMPLER_CHECKPOINT} under ${CHECKPOINT_DIR_ENV}, else under ./checkpoints)",
    )
    control: Control | None = Field(
        None,
        description=f"{_listed(get_args(Control))}: picks the matching folder of a per-control checkpoint",
    )
    device: str | None = Field(
        None, description="the engine's device, e.g. cuda:0 or cpu (default: automatic)"
    )
    engine_options: dict[str, EngineOptionValue] = Field(
        default_factory=dict, description="the engine's own settings by name (e.g. base_url, timeout)"
    )
    max_model_len: int = Field(MAX_MODEL_LEN, ge=16, description="the model's context: prompt + answer")
    max_vision_tokens: int | None = Field(
        None, ge=1, description="cap on the frames' tokens (memory and time); default: the context"
    )
    max_tokens: int = Field(MAX_TOKENS, ge=1, description="tokens reserved for the answer")
    temperature: float = Field(TEMPERATURE, ge=0.0, le=2.0, description="sampling temperature; 0 is greedy")
    top_p: float = Field(
        TOP_P,
        gt=0.0,
        le=1.0,
        description="nucleus sampling: the likeliest tokens whose probabilities add up to this (1.0: all)",
    )
    seed: int | None = Field(None, description="seed for reproducible sampling")
    clips: bool = Field(True, description="write each preprocessed clip (the output's preprocessed_video)")
    clips_dir: Path | None = Field(
        None, description="folder for the preprocessed clips (default: <output>_clips beside the output)"
    )
    # issue 25: the refiner's preset, a system prompt, answers that fit the generator's encoder
    preset: Literal["predict2-refiner"] | None = Field(
        None,
        description="predict2-refiner: Cosmos-Predict2's refiner settings (greedy, 512 new tokens, "
        "ASCII-only answers, a system prompt asking for an 80-100 word paragraph); flags, env and the config "
        "file win",
    )
    system_prompt: str | None = Field(
        None,
        description="the system prompt's text (how torchrun's ranks and the remote host are given it); "
        "system_prompt_file wins",
    )
    system_prompt_file: Path | None = Field(
        None, description="a text file (64 KiB at most) whose content is the system prompt of every request"
    )
    ascii_only: bool = Field(
        False,
        description="answers of ASCII tokens only (hf: a logits mask; vLLM: allowed_token_ids), "
        "checked again when written",
    )
    encoder_limit: int | None = Field(
        None,
        ge=1,
        description=f"answer tokens the encoder takes (default {ENCODER_LIMIT} with an encoder "
        "tokenizer); needs encoder_tokenizer",
    )


#: a host name, IPv4 or IPv6 literal: no spaces, quotes or leading dash
_HOST = re.compile(r"[A-Za-z0-9_.:%-]+")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*\$?")


def remote_path(value: str | None) -> str | None:
    """An absolute path on the host, or one under its home (``~/...``); no NUL or newline."""
    if value is None:
        return None
    if not value or "\0" in value or "\n" in value:
        raise ValueError("must be a non-empty path without NUL or newline characters")
    if not (value.startswith("/") or value == "~" or value.startswith("~/")):
        raise ValueError(f"{value!r} must be absolute (/data/cosmos) or under the remote home (~/cosmos)")
    return value


class RemoteSettings(Section):
    """``[remote]``: the GPU host that ``--remote`` runs on."""

    host: str | None = None
    port: int = Field(22, ge=1, le=65535)
    user: str | None = None
    ssh_key: Path | None = Field(None, description="private key file; None uses the SSH agent")
    known_hosts: Path = Path("~/.ssh/known_hosts")
    host_key_policy: Literal["strict", "accept-new"] = "strict"
    mode: Literal["docker", "venv"] = "docker"
    python: str = Field("python3", description="venv mode: the remote interpreter")
    gpus: int = Field(1, ge=1)

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str | None) -> str | None:
        if value is not None and (not _HOST.fullmatch(value) or value.startswith("-")):
            raise ValueError(f"{value!r} is not a host name or IP address")
        return value

    @field_validator("user")
    @classmethod
    def _check_user(cls, value: str | None) -> str | None:
        if value is not None and not _USER.fullmatch(value):
            raise ValueError(f"{value!r} is not a user name")
        return value

    @field_validator("python")
    @classmethod
    def _check_python(cls, value: str) -> str:
        if not value or "\0" in value or "\n" in value:
            raise ValueError("must be an interpreter name or path")
        return value


class PathsSettings(Section):
    """``[paths]``: where things live on the remote host."""

    remote_dir: str | None = None

    _check_remote_dir = field_validator("remote_dir")(remote_path)


class DockerSettings(Section):
    """``[docker]``: the image the remote job runs in, and the checkpoint on the host (both modes)."""

    image: str = Field(DEFAULT_IMAGE, min_length=1)
    checkpoint_dir: str | None = None

    _check_checkpoint_dir = field_validator("checkpoint_dir")(remote_path)


class Settings(Section):
    upsample: UpsampleSettings = Field(default_factory=UpsampleSettings)
    remote: RemoteSettings = Field(default_factory=RemoteSettings)
    paths: PathsSettings = Field(default_factory=PathsSettings)
    docker: DockerSettings = Field(default_factory=DockerSettings)


SECTIONS: dict[str, type[Section]] = {
    "upsample": UpsampleSettings,
    "remote": RemoteSettings,
    "paths": PathsSettings,
    "docker": DockerSettings,
}
