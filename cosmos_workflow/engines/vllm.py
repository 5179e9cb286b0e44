"""vLLM offline engine: the model loaded once, a whole batch per ``LLM.generate`` call.

Requests go in pre-tokenized (``TokensPrompt``) with mistral-common's token ids, so the count the
planner made is the count vLLM sees. This is the same route vLLM's own ``LLM.chat`` takes for
``tokenizer_mode="mistral"`` (it tokenizes with mistral-common, then builds a ``TokensPrompt``), and
Pixtral's vLLM processor accepts prompts whose image tokens are already expanded.

Hugging Face-format (Llava) checkpoints are different: vLLM expands each ``[IMG]`` placeholder itself,
so each image's run of ``[IMG]``/``[IMG_BREAK]``/``[IMG_END]`` tokens is collapsed to one ``[IMG]``
before sending; vLLM's expansion uses the same arithmetic (patch 16, long side capped), so the
count is unchanged.

One bad request never fails the batch: every request is validated first, and if ``generate`` still
raises, the batch is retried one request at a time to isolate the culprit.

Every vLLM name this module uses is listed in the ``*_USED`` constants below; a contract test checks
them against the source of each release in ``VLLM_VERSIONS_CHECKED`` (no GPU, no vLLM install
needed). At load the installed vLLM is checked by feature, never by version string: the names this
module needs must be there (else one line says which are missing), and the optional ones are passed
only where the installed release accepts them.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from cosmos_workflow.engines.base import EncodedRequest, Engine, EngineConfig, Generation, SamplingParams
from cosmos_workflow.engines.environment import hidden_torchrun_environment
from cosmos_workflow.errors import ConfigError, GPUOutOfMemoryError, ModelLoadError
from cosmos_workflow.tokenizer import load_tokenizer, tokenizer_path_for

log = logging.getLogger(__name__)

#: The vLLM in the Cosmos-Transfer1 image: NVIDIA's Triton 25.04 vLLM container ships vLLM 0.8.1
#: (triton-inference-server/server at tag v2.57.0, the 25.04 release: build.py,
#: DEFAULT_TRITON_VERSION_MAP["vllm_version"]; also Triton's 25.04 release notes).
IMAGE_VLLM = "0.8.1"
#: The newest vLLM release when this module was last checked.
NEWEST_VLLM = "0.33.0"
#: The releases whose source the contract test checks; pyproject's ``vllm`` extra spans them.
VLLM_VERSIONS_CHECKED = (IMAGE_VLLM, NEWEST_VLLM)
#: Names imported from vLLM, as (module, attribute).
IMPORTS_USED = (("vllm", "LLM"), ("vllm", "SamplingParams"), ("vllm.inputs", "TokensPrompt"))
#: Keyword arguments passed to ``vllm.LLM`` (its own parameters or ``EngineArgs`` fields).
LLM_KWARGS_USED = frozenset(
    {
        "model",
        "tokenizer_mode",
        "load_format",
        "config_format",
        "max_model_len",
        "limit_mm_per_prompt",
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
SAMPLING_FIELDS_USED = frozenset({"temperature", "top_p", "max_tokens", "seed"})
#: Keys of ``vllm.inputs.TokensPrompt``.
PROMPT_KEYS_USED = frozenset({"prompt_token_ids", "multi_modal_data"})
#: Attributes read from ``RequestOutput`` and ``CompletionOutput``.
REQUEST_OUTPUT_ATTRS_USED = frozenset({"outputs"})
COMPLETION_OUTPUT_ATTRS_USED = frozenset({"text", "finish_reason", "token_ids"})
#: String values vLLM must accept for ``tokenizer_mode``/``load_format``/``config_format``.
MISTRAL_MODE = "mistral"


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


def llm_kwargs(config: EngineConfig, fmt: CheckpointFormat) -> dict[str, Any]:
    """The keyword arguments for ``vllm.LLM``; defaults as Cosmos, tuned for throughput."""
    opts = config.options
    kwargs: dict[str, Any] = {
        "model": str(config.model),
        "tokenizer_mode": MISTRAL_MODE if fmt == "mistral" else "auto",
        "max_model_len": config.max_model_len,
        "limit_mm_per_prompt": {"image": config.max_images_per_prompt},
        "max_num_seqs": int(opts.get("max_num_seqs") or 32),
        "gpu_memory_utilization": float(opts.get("gpu_memory_utilization") or 0.9),
        "enable_prefix_caching": bool(opts.get("enable_prefix_caching", True)),
        "seed": int(opts.get("seed") or 0),
    }
    if fmt == "mistral":
        kwargs.update(load_format=MISTRAL_MODE, config_format=MISTRAL_MODE)
    return _only(kwargs, LLM_KWARGS_USED)


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

    def __init__(self, config: EngineConfig, *, llm: Any, vllm_module: Any, fmt: CheckpointFormat) -> None:
        super().__init__(config)
        self._llm = llm
        self._vllm = vllm_module
        self._format = fmt
        self._image_ids = _image_special_ids(Path(config.model)) if fmt == "hf" else (-1, -1, -1)

    @property
    def tokenizer_path(self) -> Path | None:
        return tokenizer_path_for(self.config.model)

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

    def _sampling_params(self, sampling: SamplingParams) -> Any:
        fields = {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": sampling.seed,
        }
        return self._vllm.SamplingParams(**_only(fields, SAMPLING_FIELDS_USED))

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

        ids = list(request.token_ids)
        if self._format == "hf":
            ids = collapse_image_runs(ids, self._image_ids)
        prompt: dict[str, Any] = {"prompt_token_ids": ids}
        if request.frames:
            prompt["multi_modal_data"] = {"image": [Image.fromarray(f) for f in request.frames]}
        return self._vllm.inputs.TokensPrompt(**_only(prompt, PROMPT_KEYS_USED))

    def close(self) -> None:
        """Drop the engine; vLLM frees GPU memory when the LLM object is collected."""
        self._llm = None


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
        prompt_tokens=request.num_tokens,
        completion_tokens=len(completion.token_ids),
    )


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
            f"vLLM {' and '.join(VLLM_VERSIONS_CHECKED)}: {INSTALL_HINT}"
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
    vllm = _import_vllm()
    fmt = _checkpoint_format(config)
    kwargs = llm_kwargs(config, fmt)
    log.info("starting vLLM on %s (%s format): %s", config.model, fmt, json.dumps(kwargs, default=str))
    with engine_start_environment(config.device):
        try:
            llm = vllm.LLM(**kwargs)
        except Exception as exc:
            raise ModelLoadError(
                f"vLLM could not load {config.model}: {exc}; check the checkpoint and free GPU memory, "
                "or use --engine hf"
            ) from exc
    return VLLMEngine(config, llm=llm, vllm_module=vllm, fmt=fmt)


def _checkpoint_format(config: EngineConfig) -> CheckpointFormat:
    forced = config.options.get("checkpoint_format")
    if forced in ("mistral", "hf"):
        return "mistral" if forced == "mistral" else "hf"
    if forced is not None:
        raise ConfigError(f"checkpoint_format {forced!r} is not 'mistral' or 'hf'")
    return detect_format(config.model)
