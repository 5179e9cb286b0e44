"""The engine contract: a batch of encoded requests in, results out in the same order.

Nothing else is required of an engine. Engines never see prompts files, videos or plans: the
runner hands them :class:`EncodedRequest` records whose token ids were produced by the model's
own tokenizer (mistral-common), so the count the planner made is the count the model sees.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cosmos_workflow.defaults import MAX_MODEL_LEN, MAX_TOKENS, TEMPERATURE, TOP_P
from cosmos_workflow.lifetime import Closes

FinishReason = Literal["stop", "length", "error"]
ErrorKind = Literal["context_length", "engine"]


class SamplingParams(BaseModel):
    """Sampling settings; the defaults are those of the Cosmos-Transfer1 upsampler."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(TEMPERATURE, ge=0.0, le=2.0, description="0 means greedy decoding")
    top_p: float = Field(TOP_P, gt=0.0, le=1.0)
    max_tokens: int = Field(MAX_TOKENS, ge=1, description="tokens reserved for, and allowed in, the answer")
    seed: int | None = Field(None, description="seed for reproducible sampling")
    ascii_only: bool = Field(False, description="answers made of tokens whose text is ASCII only")

    def key(self) -> dict[str, object]:
        """The settings as request keys and records hold them: a setting added later is left out
        at its default, so earlier runs' keys (and their resume) and records stay as they were."""
        values: dict[str, object] = self.model_dump(mode="json")
        if not self.ascii_only:
            del values["ascii_only"]
        return values


class EngineConfig(BaseModel):
    """What an engine needs to start. Engine-specific options go in ``options``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: str = "hf"
    model: str = Field("tiny-random", description="checkpoint path, 'tiny-random', or a served model name")
    max_model_len: int = Field(MAX_MODEL_LEN, ge=16)
    max_images_per_prompt: int = Field(2, ge=0)
    device: str | None = Field(None, description="e.g. 'cuda:1' or 'cpu'; None picks automatically")
    options: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class EncodedRequest:
    """One request as the model will see it.

    ``token_ids`` include the image placeholder tokens; ``pixel_values`` are mistral-common's
    normalised CHW float32 arrays (one per image, already at the planned size); ``frames`` are
    the same images as RGB uint8 HxWx3 arrays, for engines that re-encode images themselves
    (vLLM, OpenAI-compatible servers).
    """

    key: str
    prompt: str
    token_ids: Sequence[int]
    frames: Sequence[np.ndarray] = field(default_factory=tuple)
    pixel_values: Sequence[np.ndarray] = field(default_factory=tuple)
    #: (t, h, w) patch grid per visual, for families whose model takes it (Qwen2.5-VL)
    grid_thw: Sequence[tuple[int, int, int]] = field(default_factory=tuple)
    #: True when the visuals are one video (Qwen2.5-VL's ``pixel_values_videos``), not images
    video: bool = False
    #: seconds between consecutive frames sent (from the video's fps and the frames chosen), for
    #: models that place frames in time (Qwen2.5-VL's M-RoPE); None when unknown
    frame_interval: float | None = None
    #: the system prompt already in ``token_ids``, for engines that send text, not ids (OpenAI)
    system: str | None = None

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


@dataclass(frozen=True, kw_only=True)
class Generation:
    """What an engine produced for one request."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None
    error_kind: ErrorKind | None = None

    @classmethod
    def failed(cls, message: str, *, prompt_tokens: int, kind: ErrorKind = "engine") -> Generation:
        return cls(
            text="",
            finish_reason="error",
            prompt_tokens=prompt_tokens,
            completion_tokens=0,
            error=message,
            error_kind=kind,
        )


class Engine(Closes, abc.ABC):
    """A loaded model. Use it as a context manager so its memory is released on exit."""

    name: str = "engine"
    #: True where the engine schedules requests itself (continuous batching, as vLLM does): the
    #: runner then feeds it a stream of requests as they are prepared and saves each answer as it
    #: comes (:meth:`generate_stream`), instead of cutting length-sorted batches for it.
    streams: bool = False
    #: False where the engine encodes the frames itself (vLLM): the runner then sends no
    #: normalised pixel arrays, which saves most of the tokenizer's work per request.
    needs_pixel_values: bool = True
    #: True where requests of one batch that share their frames share work (the hf engine's
    #: ``share_prefix``): the runner then keeps each video's requests together in its batches.
    shares_prefixes: bool = False
    #: How many requests the default :meth:`generate_stream` sends in one :meth:`generate` call.
    stream_group: int = 64
    #: False where the engine never touches a local GPU (it asks a server, or scripts its answers):
    #: executors then pin it no device, and count CPU cores, not GPUs, as the places it can run.
    needs_gpu: bool = True
    #: Why the engine does not run in a Ray actor pool (None: it does); the refusal's reason.
    ray_refusal: str | None = None
    #: The model it runs when none is given (None: a checkpoint must be found or named).
    default_model: str | None = None
    #: True where the engine may be loaded in a background thread while the run plans its items
    #: (torch and transformers can; vLLM starts its engine process from the main thread, as tested).
    loads_in_background: bool = False

    @classmethod
    def shares_prefixes_with(cls, options: Mapping[str, str | int | float | bool | None]) -> bool:
        """Whether an engine of this class loaded with these engine ``options`` shares the frames
        of a batch's requests (:attr:`shares_prefixes`), asked before any engine is loaded (Ray's
        driver cuts the batches its actors run)."""
        return bool(cls.shares_prefixes)

    def __init__(self, config: EngineConfig) -> None:
        self.config = config

    @property
    def model_name(self) -> str:
        return self.config.model

    @property
    def tokenizer_path(self) -> Path | None:
        """The checkpoint's own tokenizer file, when the engine knows one."""
        return None

    @abc.abstractmethod
    def generate(self, requests: Sequence[EncodedRequest], sampling: SamplingParams) -> list[Generation]:
        """Generate one answer per request, in input order.

        A request the engine cannot serve yields ``Generation.failed``; a batch that does not fit
        in memory raises :class:`~cosmos_workflow.errors.GPUOutOfMemoryError`.
        """

    def generate_stream(
        self, requests: Iterable[EncodedRequest], sampling: SamplingParams
    ) -> Iterator[list[tuple[str, Generation]]]:
        """Answers as they finish, as ``(request key, generation)`` pairs, a list at a time.

        ``requests`` may be a generator that blocks while the next request is prepared. This
        default answers each group of ``stream_group`` requests with one :meth:`generate` call;
        an engine that schedules requests itself overrides it and answers in finishing order.
        """
        pending = iter(requests)
        while group := list(itertools.islice(pending, self.stream_group)):
            yield [(r.key, g) for r, g in zip(group, self.generate(group, sampling), strict=True)]

    def close(self) -> None:
        """Release the model's memory. Safe to call twice."""
