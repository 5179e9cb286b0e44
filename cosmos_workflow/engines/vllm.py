"""vLLM offline engine: the model loaded once, a whole batch per ``LLM.generate`` call.

Requests go in pre-tokenized (``TokensPrompt``) with mistral-common's token ids, so the count the
planner made is the count vLLM sees. This is the same route vLLM's own ``LLM.chat`` takes for
``tokenizer_mode="mistral"`` (it tokenizes with mistral-common, then builds a ``TokensPrompt``), and
Pixtral's vLLM processor accepts prompts whose image tokens are already expanded.

Hugging Face-format (Llava) checkpoints are different: vLLM expands each ``[IMG]`` placeholder itself,
so each image's run of ``[IMG]``/``[IMG_BREAK]``/``[IMG_END]`` tokens is collapsed to one ``[IMG]``
before sending; vLLM's expansion uses the same arithmetic (patch 16, long side capped), so the
count is unchanged.

A run streams (``generate_stream``): requests go to vLLM's engine one by one as the runner prepares
them (``LLMEngine.add_request``), up to ``stream_window`` in flight, and each answer comes back as
soon as it finishes (``LLMEngine.step``), so vLLM's continuous batching sees one long queue, as with
one ``LLM.generate`` call over every request, while video decoding and planning go on beside it and
the journal saves each answer as it comes. ``generate`` (a batch, used for retries) is one
``LLM.generate`` call.

One bad request never fails the batch: every request is validated first; a request vLLM still
refuses fails alone (streaming: at ``add_request``; a batch: retried one request at a time).

Qwen2.5-VL checkpoints (Cosmos-Reason1-7B) go in the same way, with each visual's run of vision
pads collapsed to one pad that vLLM expands with the same arithmetic, the frames at the planned
size and the processor held to the family's pixel limits: :mod:`cosmos_workflow.engines.vllm_qwen`
says why, with the vLLM source it was read from.

``--model pixtral-12b-random`` starts Pixtral-12B's full-size architecture from a Mistral-format
folder (``params.json`` + ``tekken.json``, as the Cosmos checkpoint ships) with ``load_format="dummy"``:
random weights, real speed, no checkpoint (benchmarks only). The engine option
``load_format="dummy"`` does the same for any Hugging Face-format folder (a Qwen2.5-VL-7B
``config.json`` with a tokenizer, for benchmarks).

Every vLLM name this module uses is listed in the ``*_USED`` constants below; a contract test checks
them against the source of each release in ``VLLM_VERSIONS_CHECKED`` (no GPU, no vLLM install
needed). At load the installed vLLM is checked by feature, never by version string: the names this
module needs must be there (else one line says which are missing), and the optional ones are passed
only where the installed release accepts them.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from cosmos_workflow.engines import vllm_qwen
from cosmos_workflow.engines.base import EncodedRequest, Engine, EngineConfig, Generation, SamplingParams
from cosmos_workflow.engines.environment import hidden_torchrun_environment
from cosmos_workflow.engines.tiny import PIXTRAL_12B_PARAMS, RANDOM_12B_MODEL, cache_root
from cosmos_workflow.errors import ConfigError, EngineError, GPUOutOfMemoryError, ModelLoadError
from cosmos_workflow.families import Family, family_for, family_name
from cosmos_workflow.families.qwen2_5_vl import Qwen25VLFamily
from cosmos_workflow.files import write_json_atomic
from cosmos_workflow.tokenizer import TEKKEN_FILE, bundled_tokenizer_path, load_tokenizer, tokenizer_path_for

log = logging.getLogger(__name__)

#: The vLLM in the Cosmos-Transfer1 image: NVIDIA's Triton 25.04 vLLM container ships vLLM 0.8.1
#: (triton-inference-server/server at tag v2.57.0, the 25.04 release: build.py,
#: DEFAULT_TRITON_VERSION_MAP["vllm_version"]; also Triton's 25.04 release notes).
IMAGE_VLLM = "0.8.1"
#: The newest vLLM release when this module was last checked.
NEWEST_VLLM = "0.33.0"
#: The release that ran end to end on a GPU (H200, BENCHMARKS.md "vLLM beside the hf engine").
VLLM_RAN = "0.26.0"
#: The releases whose source the contract test checks; pyproject's ``vllm`` extra spans them.
VLLM_VERSIONS_CHECKED = (IMAGE_VLLM, VLLM_RAN, NEWEST_VLLM)
#: Names imported from vLLM, as (module, attribute).
IMPORTS_USED = (
    ("vllm", "LLM"),
    ("vllm", "SamplingParams"),
    ("vllm.inputs", "TokensPrompt"),
    ("vllm.sampling_params", "RequestOutputKind"),
)
#: Methods of ``LLM.llm_engine`` (``LLMEngine``) the streaming path calls.
LLM_ENGINE_METHODS_USED = frozenset({"add_request", "step", "abort_request"})
#: Keyword arguments passed to ``vllm.LLM`` (its own parameters or ``EngineArgs`` fields).
LLM_KWARGS_USED = frozenset(
    {
        "model",
        "tokenizer_mode",
        "load_format",
        "config_format",
        "max_model_len",
        "limit_mm_per_prompt",
        "mm_processor_kwargs",
        "max_num_seqs",
        "gpu_memory_utilization",
        "enable_prefix_caching",
        "seed",
    }
)
#: Keyword arguments passed to ``LLM.generate`` besides the prompts; ``use_tqdm`` only where accepted.
GENERATE_KWARGS_USED = frozenset({"sampling_params", "use_tqdm"})
GENERATE_KWARGS_OPTIONAL = frozenset({"use_tqdm"})
#: Fields set on ``vllm.SamplingParams``.
SAMPLING_FIELDS_USED = frozenset(
    {"temperature", "top_p", "max_tokens", "seed", "ignore_eos", "output_kind", "allowed_token_ids"}
)
#: Keys of ``vllm.inputs.TokensPrompt``.
PROMPT_KEYS_USED = frozenset({"prompt_token_ids", "multi_modal_data"})
#: Attributes read from ``RequestOutput`` and ``CompletionOutput``.
REQUEST_OUTPUT_ATTRS_USED = frozenset({"outputs", "request_id", "finished", "prompt_token_ids"})
COMPLETION_OUTPUT_ATTRS_USED = frozenset({"text", "finish_reason", "token_ids"})
#: String values vLLM must accept for ``tokenizer_mode``/``load_format``/``config_format``.
MISTRAL_MODE = "mistral"
#: ``load_format`` that fills the weights with random values instead of reading them.
DUMMY_LOAD = "dummy"
#: Requests in vLLM's queue at once while streaming: more than fit in its KV cache (about 450 of
#: Pixtral's 1,400-token requests on an H200), so the scheduler never runs short of work.
STREAM_WINDOW = 1024

#: the model families this engine serves
FAMILIES = ("pixtral", "qwen2_5_vl")
QWEN = "qwen2_5_vl"


CheckpointFormat = Literal["mistral", "hf"]
INSTALL_HINT = "pip install 'cosmos-workflow[vllm]' or use --engine hf"


def detect_format(model: str | Path) -> CheckpointFormat:
    """Mistral format (params.json + consolidated.safetensors) or Hugging Face (config.json)."""
    path = Path(model)
    if (path / "params.json").is_file() and (path / "consolidated.safetensors").is_file():
        return "mistral"
    if (path / "config.json").is_file():
        return "hf"
    variants = sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
    hint = f" It holds per-control variants {variants}: pass one of them." if variants else ""
    raise ModelLoadError(
        f"{path} is not a checkpoint folder: expected params.json + consolidated.safetensors "
        f"(Mistral format) or config.json (Hugging Face format).{hint}"
    )


def llm_kwargs(
    config: EngineConfig, fmt: CheckpointFormat, model: Path | None = None, family: Family | None = None
) -> dict[str, Any]:
    """The keyword arguments for ``vllm.LLM``: Cosmos's settings, except that the number of
    sequences in flight is vLLM's own default (it sizes it to the card) unless ``max_num_seqs`` is
    given: Cosmos's 2 leaves a GPU nearly idle. ``model`` replaces ``config.model`` (the folder made
    for ``pixtral-12b-random``); a Qwen2.5-VL ``family`` adds its visual limits and pixel limits."""
    opts = config.options
    kwargs: dict[str, Any] = {
        "model": str(model or config.model),
        "tokenizer_mode": MISTRAL_MODE if fmt == "mistral" else "auto",
        "max_model_len": config.max_model_len,
        "limit_mm_per_prompt": {"image": config.max_images_per_prompt},
        "gpu_memory_utilization": float(opts.get("gpu_memory_utilization") or 0.9),
        "enable_prefix_caching": bool(opts.get("enable_prefix_caching", True)),
        "seed": int(opts.get("seed") or 0),
    }
    if opts.get("max_num_seqs"):
        kwargs["max_num_seqs"] = int(opts["max_num_seqs"] or 0)
    if fmt == "mistral":
        kwargs.update(load_format=MISTRAL_MODE, config_format=MISTRAL_MODE)
    if config.model == RANDOM_12B_MODEL or _dummy_weights(opts.get("load_format")):
        kwargs["load_format"] = DUMMY_LOAD
    if isinstance(family, Qwen25VLFamily):
        kwargs.update(vllm_qwen.llm_kwargs(family.processor))
    return _only(kwargs, LLM_KWARGS_USED)


def _dummy_weights(load_format: object) -> bool:
    """The ``load_format`` engine option: ``"dummy"`` (random weights, benchmarks) or unset."""
    if load_format in (None, DUMMY_LOAD):
        return load_format == DUMMY_LOAD
    raise ConfigError(f"engine option load_format={load_format!r}: only {DUMMY_LOAD!r} is accepted")


def _only(kwargs: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    """Guard: every vLLM name we pass must be in the list the contract test checks."""
    unknown = set(kwargs) - allowed
    if unknown:
        raise AssertionError(f"vLLM names {sorted(unknown)} are not in the checked list; add them")
    return kwargs


@contextlib.contextmanager
def engine_start_environment(device: str | None = None) -> Iterator[None]:
    """Hide torchrun's variables and pin one GPU while vLLM starts; restore everything after.

    vLLM reads RANK/WORLD_SIZE/MASTER_* at start and would try to join torchrun's process group.
    Each torchrun rank runs its own single-GPU engine, so the GPU is pinned from LOCAL_RANK (or
    ``device="cuda:N"``) through CUDA_VISIBLE_DEVICES, which the engine's workers inherit.
    """
    saved = dict(os.environ)
    gpu = _pinned_gpu(device, os.environ)
    try:
        with hidden_torchrun_environment():
            if gpu is not None:
                os.environ["CUDA_VISIBLE_DEVICES"] = gpu
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _pinned_gpu(device: str | None, env: Mapping[str, str]) -> str | None:
    """The physical GPU for this process, or None to leave CUDA_VISIBLE_DEVICES alone."""
    if device is not None and device.startswith("cuda:"):
        index = int(device.split(":", 1)[1])
    elif "LOCAL_RANK" in env:
        index = int(env["LOCAL_RANK"])
    else:
        return None
    visible = [v for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if not visible:
        return str(index)
    if index >= len(visible):
        raise ConfigError(
            f"GPU index {index} but CUDA_VISIBLE_DEVICES lists only {len(visible)} device(s); "
            "run fewer ranks per node or widen CUDA_VISIBLE_DEVICES"
        )
    return visible[index].strip()


class VLLMEngine(Engine):
    """A loaded ``vllm.LLM``; ``llm`` is injectable for tests."""

    name = "vllm"
    streams = True
    needs_pixel_values = False

    def __init__(
        self,
        config: EngineConfig,
        *,
        llm: Any,
        vllm_module: Any,
        fmt: CheckpointFormat,
        video_metadata: bool = True,
    ) -> None:
        super().__init__(config)
        self._llm = llm
        self._vllm = vllm_module
        self._format = fmt
        family = family_for(config.model) if family_name(config.model) == QWEN else None
        self._qwen = family if isinstance(family, Qwen25VLFamily) else None
        self._video_metadata = video_metadata
        pixtral_hf = fmt == "hf" and self._qwen is None
        self._image_ids = _image_special_ids(Path(config.model)) if pixtral_hf else (-1, -1, -1)

    @property
    def tokenizer_path(self) -> Path | None:
        return None if self._qwen is not None else tokenizer_path_for(self.config.model)

    def generate(self, requests: Sequence[EncodedRequest], sampling: SamplingParams) -> list[Generation]:
        results: list[Generation | None] = [self._reject_reason(r, sampling) for r in requests]
        todo = [i for i, r in enumerate(results) if r is None]
        params = self._sampling_params(sampling)
        for index, generation in zip(todo, self._run([requests[i] for i in todo], params), strict=True):
            results[index] = generation
        return [r for r in results if r is not None]

    def _reject_reason(self, request: EncodedRequest, sampling: SamplingParams) -> Generation | None:
        """A failed Generation for a request vLLM would reject (and fail the whole call with)."""
        limit = self.config.max_model_len
        if request.num_tokens == 0:
            return Generation.failed("empty request: no token ids", prompt_tokens=0)
        if request.num_tokens + sampling.max_tokens > limit:
            return Generation.failed(
                f"request of {request.num_tokens} tokens + max_tokens {sampling.max_tokens} exceeds "
                f"max_model_len {limit}; pass a smaller --max-resolution or a larger --max-model-len",
                prompt_tokens=request.num_tokens,
                kind="context_length",
            )
        if len(request.frames) > self.config.max_images_per_prompt:
            return Generation.failed(
                f"{len(request.frames)} images but the engine allows {self.config.max_images_per_prompt} "
                "per prompt; pass fewer --frames or raise max_images_per_prompt",
                prompt_tokens=request.num_tokens,
            )
        return None

    def _sampling_params(self, sampling: SamplingParams, *, final_only: bool = False) -> Any:
        """vLLM's sampling settings. ``ignore_eos`` (an engine option) is for benchmarks: answers of
        exactly ``max_tokens``. ``final_only``: a streamed request reports once, when finished."""
        fields: dict[str, Any] = {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": sampling.seed,
        }
        if self.config.options.get("ignore_eos"):
            fields["ignore_eos"] = True
        if sampling.ascii_only:  # the refiner's ASCII-only answers: vLLM samples from these ids only
            fields["allowed_token_ids"] = self._ascii_ids()
        if final_only:
            fields["output_kind"] = self._vllm.sampling_params.RequestOutputKind.FINAL_ONLY
        return self._vllm.SamplingParams(**_only(fields, SAMPLING_FIELDS_USED))

    @functools.cache  # noqa: B019 - one list per loaded engine
    def _ascii_ids(self) -> list[int]:
        """The checkpoint tokenizer's ids whose text is ASCII, and EOS (the family's own tokenizer)."""
        return sorted(family_for(self.config.model).ascii_ids())

    def generate_stream(
        self, requests: Iterable[EncodedRequest], sampling: SamplingParams
    ) -> Iterator[list[tuple[str, Generation]]]:
        """Answers in finishing order; requests are added as they come, ``stream_window`` at most
        in vLLM's queue. Requests still in flight when the caller stops are aborted."""
        if not self.streams:  # a vLLM whose engine cannot be fed request by request
            yield from super().generate_stream(requests, sampling)
            return
        stream = _Stream(self._llm.llm_engine, self._sampling_params(sampling, final_only=True))
        window = int(self.config.options.get("stream_window") or STREAM_WINDOW)
        pending = iter(requests)
        try:
            while True:
                refused = [(r.key, g) for r, g in self._fill(stream, pending, window, sampling)]
                if refused:
                    yield refused
                if not stream.in_flight and stream.exhausted:
                    return
                finished = stream.step()
                if finished:
                    yield [(r.key, _generation(out, r)) for r, out in finished]
        finally:
            stream.abort()

    def _fill(
        self, stream: _Stream, pending: Iterator[EncodedRequest], window: int, sampling: SamplingParams
    ) -> Iterator[tuple[EncodedRequest, Generation]]:
        """Add requests until ``window`` are in flight; yield those refused before or at adding."""
        while not stream.exhausted and len(stream.in_flight) < window:
            request = next(pending, None)
            if request is None:
                stream.exhausted = True
                return
            failure = self._reject_reason(request, sampling) or stream.add(request, self._prompt(request))
            if failure is not None:
                yield request, failure

    def _run(self, requests: list[EncodedRequest], params: Any) -> list[Generation]:
        """One call for the batch; on an error, one call per request to isolate the bad one."""
        if not requests:
            return []
        try:
            outputs = self._call(requests, params)
        except Exception as exc:
            _raise_if_oom(exc)
            if len(requests) == 1:
                return [_failed_from(exc, requests[0])]
            log.warning("vLLM batch of %d failed (%s); retrying one by one", len(requests), exc)
            return [g for r in requests for g in self._run([r], params)]
        return [_generation(out, r) for out, r in zip(outputs, requests, strict=True)]

    def _call(self, requests: list[EncodedRequest], params: Any) -> list[Any]:
        prompts = [self._prompt(r) for r in requests]
        kwargs = _only({"sampling_params": params, "use_tqdm": False}, GENERATE_KWARGS_USED)
        optional = {k for k in GENERATE_KWARGS_OPTIONAL if not _accepts(self._llm.generate, k)}
        kwargs = {k: v for k, v in kwargs.items() if k not in optional}
        outputs: list[Any] = self._llm.generate(prompts, **kwargs)
        return outputs

    def _prompt(self, request: EncodedRequest) -> Any:
        from PIL import Image

        if self._qwen is not None:
            return self._qwen_prompt(request, self._qwen)
        ids = list(request.token_ids)
        if self._format == "hf":
            ids = collapse_image_runs(ids, self._image_ids)
        prompt: dict[str, Any] = {"prompt_token_ids": ids}
        if request.frames:
            prompt["multi_modal_data"] = {"image": [Image.fromarray(f) for f in request.frames]}
        return self._vllm.inputs.TokensPrompt(**_only(prompt, PROMPT_KEYS_USED))

    def _qwen_prompt(self, request: EncodedRequest, family: Qwen25VLFamily) -> Any:
        """One vision pad per visual (vLLM expands it to the planned run) and the frames as one
        image or one video (:mod:`cosmos_workflow.engines.vllm_qwen`)."""
        prompt: dict[str, Any] = {
            "prompt_token_ids": vllm_qwen.collapse_vision_pads(request.token_ids, family.ids)
        }
        if data := vllm_qwen.multi_modal_data(request, video_metadata=self._video_metadata):
            prompt["multi_modal_data"] = data
        return self._vllm.inputs.TokensPrompt(**_only(prompt, PROMPT_KEYS_USED))

    def close(self) -> None:
        """Drop the engine; vLLM frees GPU memory when the LLM object is collected."""
        self._llm = None


class _Stream:
    """The requests one ``generate_stream`` call has in vLLM's engine, by vLLM request id."""

    def __init__(self, llm_engine: Any, params: Any) -> None:
        self._engine = llm_engine
        self._params = params
        self._ids = itertools.count()
        self.in_flight: dict[str, EncodedRequest] = {}
        self.exhausted = False

    def add(self, request: EncodedRequest, prompt: Any) -> Generation | None:
        """Queue ``request``; a request vLLM refuses fails alone (the Generation says why)."""
        request_id = f"{next(self._ids)}-{request.key}"
        try:
            self._engine.add_request(request_id, prompt, self._params)
        except Exception as exc:
            _raise_if_oom(exc)
            return _failed_from(exc, request)
        self.in_flight[request_id] = request
        return None

    def step(self) -> list[tuple[EncodedRequest, Any]]:
        """One engine step; the requests it finished, with their outputs."""
        try:
            outputs = self._engine.step()
        except Exception as exc:
            _raise_if_oom(exc)
            message = f"vLLM failed while generating: {exc}; rerun the same command to resume"
            raise EngineError(message) from exc
        return [(self.in_flight.pop(out.request_id), out) for out in outputs if out.finished]

    def abort(self) -> None:
        if self.in_flight:
            with contextlib.suppress(Exception):
                self._engine.abort_request(list(self.in_flight))
            self.in_flight.clear()


def collapse_image_runs(ids: Sequence[int], image_ids: tuple[int, int, int]) -> list[int]:
    """Replace each image's expanded run (``[IMG]..[IMG_BREAK]..[IMG_END]``) by one ``[IMG]``."""
    img, img_break, img_end = image_ids
    out: list[int] = []
    in_run = False
    for token in ids:
        if token in (img, img_break) and in_run:
            continue
        if token == img_end:
            in_run = False
            continue
        in_run = token == img
        out.append(token)
    return out


def _image_special_ids(model: Path) -> tuple[int, int, int]:
    """(img, img_break, img_end) from the checkpoint's tokenizer (or the bundled Pixtral one)."""
    return load_tokenizer(tokenizer_path_for(model)).image_ids


def _generation(output: Any, request: EncodedRequest) -> Generation:
    """Map one ``RequestOutput`` to a Generation; anything unexpected becomes a failed item."""
    completion = output.outputs[0]
    reason = completion.finish_reason
    if reason not in ("stop", "length"):
        return Generation.failed(f"vLLM finished with {reason!r}", prompt_tokens=request.num_tokens)
    return Generation(
        text=str(completion.text),
        finish_reason=reason,
        prompt_tokens=_prompt_tokens(output, request),
        completion_tokens=len(completion.token_ids),
    )


def _prompt_tokens(output: Any, request: EncodedRequest) -> int:
    """The prompt length vLLM itself reports (its image expansion included), else the request's."""
    ids = getattr(output, "prompt_token_ids", None)
    return len(ids) if ids is not None else request.num_tokens


def _failed_from(exc: Exception, request: EncodedRequest) -> Generation:
    message = str(exc)
    too_long = "maximum model length" in message or "longer than the maximum" in message
    kind: Literal["context_length", "engine"] = "context_length" if too_long else "engine"
    return Generation.failed(
        f"vLLM rejected the request: {message}", prompt_tokens=request.num_tokens, kind=kind
    )


def _raise_if_oom(exc: Exception) -> None:
    if "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError":
        raise GPUOutOfMemoryError(
            f"vLLM ran out of GPU memory ({exc}); lower --batch-size, max_num_seqs or gpu_memory_utilization"
        ) from exc


def _import_vllm() -> Any:
    try:
        import vllm
        import vllm.inputs
        import vllm.sampling_params
    except ImportError as exc:
        raise ModelLoadError(f"vLLM is not installed ({exc}); {INSTALL_HINT}") from exc
    check_features(vllm)
    return vllm


def missing_features(vllm: Any) -> list[str]:
    """The names this engine needs that the installed vLLM lacks (empty when it has them all)."""
    missing = [f"vllm.{name}" for name in ("LLM", "SamplingParams") if not hasattr(vllm, name)]
    missing += [] if hasattr(vllm.inputs, "TokensPrompt") else ["vllm.inputs.TokensPrompt"]
    if missing:
        return missing
    required = GENERATE_KWARGS_USED - GENERATE_KWARGS_OPTIONAL
    missing += [f"LLM.generate({k}=)" for k in _lacks(vllm.LLM.generate, required)]
    missing += [f"SamplingParams.{k}" for k in _lacks(vllm.SamplingParams, SAMPLING_FIELDS_USED)]
    return missing + [f"TokensPrompt[{k!r}]" for k in _lacks(vllm.inputs.TokensPrompt, PROMPT_KEYS_USED)]


def check_features(vllm: Any) -> None:
    missing = missing_features(vllm)
    if missing:
        version = getattr(vllm, "__version__", "of unknown version")
        raise ModelLoadError(
            f"the installed vLLM {version} lacks {', '.join(missing)}; this engine is checked against "
            f"vLLM {', '.join(VLLM_VERSIONS_CHECKED)}: {INSTALL_HINT}"
        )


def _lacks(target: Any, names: frozenset[str]) -> list[str]:
    accepted = _keywords(target)
    return [] if accepted is None else sorted(names - accepted)


def _accepts(target: Any, name: str) -> bool:
    accepted = _keywords(target)
    return accepted is None or name in accepted


def _keywords(target: Any) -> frozenset[str] | None:
    """Names ``target`` accepts: a TypedDict's keys, a msgspec struct's fields, or a callable's
    keyword parameters; None when it takes any (``**kwargs``) or cannot be inspected."""
    if hasattr(target, "__required_keys__"):  # TypedDict, inherited keys included
        return frozenset(target.__required_keys__ | target.__optional_keys__)
    if hasattr(target, "__struct_fields__"):  # msgspec.Struct (vLLM's SamplingParams)
        return frozenset(target.__struct_fields__)
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL)


def load(config: EngineConfig) -> VLLMEngine:
    """Start ``vllm.LLM`` on the checkpoint, hiding torchrun's variables while it starts."""
    if (name := family_name(config.model)) not in FAMILIES:
        raise ModelLoadError(
            f"the vllm engine serves {', '.join(FAMILIES)} checkpoints, and {config.model} is {name}; "
            "use --engine hf"
        )
    vllm = _import_vllm()
    folder = random_12b_folder() if config.model == RANDOM_12B_MODEL else None
    fmt = "mistral" if folder is not None else _checkpoint_format(config)
    family = family_for(config.model) if name == QWEN else None
    kwargs = llm_kwargs(config, fmt, folder, family)
    log.info("starting vLLM on %s (%s format): %s", config.model, fmt, json.dumps(kwargs, default=str))
    with engine_start_environment(config.device):
        try:
            llm = vllm.LLM(**kwargs)
        except Exception as exc:
            raise ModelLoadError(
                f"vLLM could not load {config.model}: {exc}; check the checkpoint and free GPU memory, "
                "or use --engine hf"
            ) from exc
    video_metadata = vllm_qwen.takes_video_metadata()
    engine = VLLMEngine(config, llm=llm, vllm_module=vllm, fmt=fmt, video_metadata=video_metadata)
    engine.streams = can_stream(llm)
    return engine


def can_stream(llm: Any) -> bool:
    """Whether ``llm.llm_engine`` has what streaming calls; without it, batches of ``LLM.generate``."""
    missing = sorted(m for m in LLM_ENGINE_METHODS_USED if not hasattr(getattr(llm, "llm_engine", None), m))
    if missing:
        log.warning("this vLLM's engine lacks %s: requests go in batches, not streamed", ", ".join(missing))
    return not missing


def random_12b_folder(root: Path | None = None) -> Path:
    """A Mistral-format folder for Pixtral-12B's architecture, without weights (vLLM fills them
    with random values): ``params.json`` and Pixtral's ``tekken.json``, written once."""
    folder = (root or cache_root()) / f"{RANDOM_12B_MODEL}-mistral"
    params = folder / "params.json"
    if not params.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundled_tokenizer_path(), folder / TEKKEN_FILE)
        write_json_atomic(params, PIXTRAL_12B_PARAMS)
    return folder


def _checkpoint_format(config: EngineConfig) -> CheckpointFormat:
    forced = config.options.get("checkpoint_format")
    if forced in ("mistral", "hf"):
        return "mistral" if forced == "mistral" else "hf"
    if forced is not None:
        raise ConfigError(f"checkpoint_format {forced!r} is not 'mistral' or 'hf'")
    return detect_format(config.model)
