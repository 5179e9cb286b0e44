"""The Hugging Face transformers engine: a local Llava/Pixtral checkpoint, batched ``generate``.

The model is fed with mistral-common's token ids and image arrays exactly as the planner
counted them (image placeholders are ordinary ids in the sequence), so no transformers
processor, and no torchvision, is involved. Batches are left-padded; images of different sizes
are zero-padded into one tensor and their real sizes passed alongside, as Pixtral expects.

Speed on CUDA (issue 7, figures in BENCHMARKS.md): a static KV cache lets transformers compile the
decoding step (CUDA graphs) once per shape; padding the prompt length up to a bucket limits how
many shapes (and compilations) occur. Two changes to the stock transformers path matter at large
batches: one-token decoding steps of grouped-query attention read each KV head once instead of
through transformers' 4x ``repeat_kv`` copy (``gqa_decode``), and the Pixtral vision tower runs a
few images at a time (``vision_chunk``) instead of one sequence of every patch in the batch, whose
dense block mask alone would need tens of GB at batch 128.
"""

from __future__ import annotations

import gc
import logging
import os
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cosmos_workflow.engines.base import EncodedRequest, Engine, EngineConfig, Generation, SamplingParams
from cosmos_workflow.errors import ConfigError, EngineError, GPUOutOfMemoryError, ModelLoadError
from cosmos_workflow.tokenizer import TEKKEN_FILE, Tokenizer, load_tokenizer, tokenizer_path_for

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("cosmos_workflow")

TINY_MODEL = "tiny-random"
PAD_ID = 11
INSTALL_HINT = "pip install 'cosmos-workflow[hf]'"
KNOWN_OPTIONS = (
    "static_cache",
    "batch_bucket",
    "compile",
    "gqa_decode",
    "vision_chunk",
    "prefill_chunk",
    "ignore_eos",
)
#: The attention implementation registered with transformers for the text decoder (see gqa_decode).
GQA_ATTENTION = "cosmos_gqa_sdpa"
#: GPU memory kept free beside the weights, the KV cache and prefill activations (allocator slack,
#: CUDA graphs, the vision tower's chunk).
GPU_RESERVE_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class HFOptions:
    """Speed options, from ``EngineConfig.options``; defaults depend on the device.

    ``static_cache``: preallocated KV cache; on CUDA transformers then compiles the decoding step.
    ``batch_bucket``: prompt length padded up to a multiple of this (fewer compiled shapes).
    ``compile``: let transformers compile the decoding step when the cache is static (CUDA only).
    ``gqa_decode``: decode steps read each KV head once (see :func:`gqa_sdpa_attention`).
    ``vision_chunk``: at most this many image patches per vision-tower call.
    ``prefill_chunk``: the decoder's norms and MLPs take at most this many tokens at a time.
    ``ignore_eos``: benchmark only, never for real prompts: EOS is suppressed until ``max_tokens``,
    so every answer has exactly ``max_tokens`` tokens (and is reported as cut off).
    """

    static_cache: bool
    batch_bucket: int
    compile: bool = True
    gqa_decode: bool = True
    vision_chunk: int = 4096
    prefill_chunk: int = 16384
    ignore_eos: bool = False

    @classmethod
    def parse(cls, options: Mapping[str, str | int | float | bool | None], *, cuda: bool) -> HFOptions:
        unknown = sorted(set(options) - set(KNOWN_OPTIONS))
        if unknown:
            logger.warning("hf engine ignores options %s (it knows %s)", unknown, list(KNOWN_OPTIONS))
        static = _as_bool(options.get("static_cache"), default=cuda, name="static_cache")
        bucket = _as_int(options.get("batch_bucket"), default=64 if cuda else 1, name="batch_bucket")
        return cls(
            static_cache=static,
            batch_bucket=bucket,
            compile=_as_bool(options.get("compile"), default=True, name="compile"),
            gqa_decode=_as_bool(options.get("gqa_decode"), default=True, name="gqa_decode"),
            vision_chunk=_as_int(options.get("vision_chunk"), default=4096, name="vision_chunk"),
            prefill_chunk=_as_int(options.get("prefill_chunk"), default=16384, name="prefill_chunk"),
            ignore_eos=_as_bool(options.get("ignore_eos"), default=False, name="ignore_eos"),
        )


def _as_bool(value: str | int | float | bool | None, *, default: bool, name: str) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"engine option {name}={value!r} is not a boolean; use true or false")


def _as_int(value: str | int | float | bool | None, *, default: int, name: str) -> int:
    if value is None:
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise ConfigError(f"engine option {name}={value!r} is not an integer; use e.g. 64") from None
    if number < 1:
        what = {"batch_bucket": "1 turns bucketing off", "vision_chunk": "1 means one image per call"}.get(
            name, "e.g. 16384"
        )
        raise ConfigError(f"engine option {name}={number} must be at least 1 ({what})")
    return number


# --------------------------------------------------------------------------------------------
# Batch packing (pure: tested without a model)
# --------------------------------------------------------------------------------------------


def hf_batch_tensors(
    requests: Sequence[EncodedRequest], pad_id: int = PAD_ID, *, bucket: int = 1
) -> dict[str, Any]:
    """Pack requests into ``generate`` inputs: left-padded ids and mask, plus the batch's images.

    ``input_ids``/``attention_mask`` are (B, L) int64 with L rounded up to a multiple of
    ``bucket``. When any request has images, ``pixel_values`` is (N, 3, H, W) float32 holding
    every image in request then frame order, zero-padded to the largest H and W, and
    ``image_sizes`` is (N, 2) int64 of each image's real (height, width).
    """
    import torch

    if not requests:
        raise ValueError("hf_batch_tensors needs at least one request")
    length = _round_up(max(r.num_tokens for r in requests), bucket)
    ids = torch.full((len(requests), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(requests), length), dtype=torch.long)
    for row, request in enumerate(requests):
        n = request.num_tokens
        ids[row, length - n :] = torch.tensor(list(request.token_ids), dtype=torch.long)
        mask[row, length - n :] = 1
    batch: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
    images = [np.asarray(image, dtype=np.float32) for r in requests for image in r.pixel_values]
    if images:
        batch.update(_pack_images(images))
    return batch


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _pack_images(images: Sequence[np.ndarray]) -> dict[str, Any]:
    import torch

    height = max(image.shape[1] for image in images)
    width = max(image.shape[2] for image in images)
    pixels = torch.zeros((len(images), 3, height, width), dtype=torch.float32)
    for index, image in enumerate(images):
        pixels[index, :, : image.shape[1], : image.shape[2]] = torch.from_numpy(image)
    sizes = torch.tensor([[image.shape[1], image.shape[2]] for image in images], dtype=torch.long)
    return {"pixel_values": pixels, "image_sizes": sizes}


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load(config: EngineConfig) -> HFEngine:
    """Load the checkpoint named by ``config.model``.

    'tiny-random' builds (once) and loads the tiny model; 'pixtral-12b-random' builds Pixtral-12B's
    full-size architecture with random weights directly on the GPU (speed measurements only).
    """
    from cosmos_workflow.engines.tiny import RANDOM_12B_MODEL

    if config.model == RANDOM_12B_MODEL:
        return _load_random_12b(config)
    checkpoint = resolve_checkpoint(config.model)
    torch, llava = _import_backend()
    device = _pick_device(config.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        model = llava.from_pretrained(checkpoint, dtype=dtype, attn_implementation="sdpa")
        model = model.to(device).eval()
    except torch.cuda.OutOfMemoryError as exc:
        _free_cuda(torch)
        raise ModelLoadError(
            f"checkpoint {checkpoint} does not fit in {device} memory; free the GPU or pick another "
            "with --device"
        ) from exc
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(
            f"cannot load {checkpoint} as a Llava/Pixtral checkpoint: {exc}; point --model at a "
            "Hugging Face Pixtral checkpoint folder (config.json + safetensors)"
        ) from exc
    return _finish_load(config, model, checkpoint)


def _load_random_12b(config: EngineConfig) -> HFEngine:
    """Pixtral-12B's architecture with random bf16 weights, made on the GPU (no checkpoint)."""
    from cosmos_workflow.engines.tiny import RANDOM_12B_MODEL, build_random_model, pixtral_12b_config

    torch, _ = _import_backend()
    device = _pick_device(config.device)
    if device.type != "cuda":
        raise ModelLoadError(
            f"{RANDOM_12B_MODEL} is Pixtral-12B's full-size architecture (12.7B parameters, 25 GB in "
            f"bf16) and is built only on a CUDA GPU, not on {device}; use --model {TINY_MODEL} on a "
            "CPU, or run on a machine with a GPU of 40 GB or more"
        )
    try:
        model = build_random_model(pixtral_12b_config(), device, torch.bfloat16, attn_implementation="sdpa")
    except torch.cuda.OutOfMemoryError as exc:
        _free_cuda(torch)
        raise ModelLoadError(
            f"{RANDOM_12B_MODEL} (25 GB of weights) does not fit in {device} memory; free the GPU "
            "or pick another with --device"
        ) from exc
    return _finish_load(config, model, None)


def _finish_load(config: EngineConfig, model: Any, checkpoint: Path | None) -> HFEngine:
    device = model.device
    options = HFOptions.parse(config.options, cuda=device.type == "cuda")
    if options.gqa_decode:
        use_gqa_decode(model)
    chunk_vision_tower(model, options.vision_chunk)
    chunk_decoder_tokens(model, options.prefill_chunk)
    model.generation_config.disable_compile = not options.compile
    logger.info("hf engine: %s on %s (%s), %s", checkpoint or config.model, device, model.dtype, options)
    return HFEngine(config, model=model, checkpoint=checkpoint, options=options)


def resolve_checkpoint(model: str) -> Path:
    """The local checkpoint folder for ``model``, or a ModelLoadError saying how to get one."""
    if model == TINY_MODEL:
        from cosmos_workflow.engines.tiny import tiny_model_dir

        return tiny_model_dir()
    folder = Path(model).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(
            f"checkpoint folder {folder} does not exist; pass --model with a local Hugging Face "
            f"Llava/Pixtral checkpoint folder, or --model {TINY_MODEL} for the built-in test model"
        )
    if (folder / "config.json").is_file():
        return folder
    if (folder / "params.json").is_file():
        raise ModelLoadError(
            f"{folder} is a Mistral-format checkpoint (params.json, consolidated.safetensors), which "
            f"transformers cannot load; convert it with `cosmos-workflow convert-checkpoint {folder} DST` "
            "or use --engine vllm"
        )
    raise ModelLoadError(
        f"{folder} has no config.json: it is not a Hugging Face checkpoint; point --model at a "
        "Llava/Pixtral checkpoint folder"
    )


def _import_backend() -> tuple[Any, Any]:
    try:
        import torch
        from transformers import LlavaForConditionalGeneration
        from transformers.utils import logging as transformers_logging
    except ImportError as exc:
        raise ModelLoadError(
            f"the hf engine needs torch and transformers ({exc}); run: {INSTALL_HINT}"
        ) from exc
    # our own progress bar owns stderr; transformers' per-shard bars would interleave with it
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return torch, LlavaForConditionalGeneration


def _pick_device(requested: str | None) -> torch.device:
    """The configured device, else this rank's GPU (LOCAL_RANK under torchrun), else the CPU."""
    import torch

    device: torch.device
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError as exc:
            raise ConfigError(f"invalid device {requested!r}: {exc}; use e.g. cuda:0 or cpu") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {requested} asked for, but torch sees no CUDA GPU; use --device cpu")
        return device
    if torch.cuda.is_available():
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    else:
        device = torch.device("cpu")
    return device


def _free_cuda(torch: Any) -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _out_of_memory(exc: BaseException, torch: Any) -> bool:
    """CUDA out-of-memory, also when torch.compile wraps it (BackendCompilerFailed) on the way up."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, torch.cuda.OutOfMemoryError):
            return True
        seen.add(id(current))
        inner = getattr(current, "inner_exception", None)
        current = inner if isinstance(inner, BaseException) else current.__cause__ or current.__context__
    return False


def _release(exc: BaseException, torch: Any) -> None:
    """Free what the failed call held: its frames (KV cache, activations) live on in the traceback.

    The caller keeps the exception (as the cause of ours) while it retries with a smaller batch;
    without clearing those frames the retry would find the failed attempt's memory still taken.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        inner = getattr(current, "inner_exception", None)
        current = inner if isinstance(inner, BaseException) else current.__cause__ or current.__context__
    _free_cuda(torch)


# --------------------------------------------------------------------------------------------
# Speed: grouped-query decode attention, the vision tower in chunks
# --------------------------------------------------------------------------------------------


def gqa_sdpa_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, except for one-token decoding steps of grouped-query attention.

    With a mask (always there with padding or a static cache) transformers' SDPA path copies
    every KV head 4 times (``repeat_kv``) before attending, so each decoding step writes and reads
    the whole KV cache 4 more times: at batch 128 that is most of the step. Here the 4 query heads
    that share a KV head are passed to SDPA as 4 query rows of that one head: the mask is the same
    for all of them in a decoding step, so the result is identical, and the fused attention kernel
    reads each KV head once. (Plain batched matrix products were tried first: cuBLAS picked a slow
    kernel for 1024 small products, 68 ms a step at batch 128.) Prefill (many query tokens) stays
    on transformers' SDPA path, which is compute-bound there anyway.
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = int(getattr(module, "num_key_value_groups", 1))
    bias = kwargs.get("position_bias")
    if query.shape[2] != 1 or groups == 1 or bias is not None or (dropout and module.training):
        result: tuple[torch.Tensor, None] = sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
        return result
    batch, heads, _, dim = query.shape
    kv_heads, length = key.shape[1], key.shape[2]
    packed = query.reshape(batch, kv_heads, groups, dim)  # query head = kv_head * groups + g
    mask = None if attention_mask is None else attention_mask[:, :, -1:, :length]
    output = torch.nn.functional.scaled_dot_product_attention(
        packed, key, value, attn_mask=mask, scale=scaling
    )  # (B, kv_heads, groups, D)
    return output.reshape(batch, 1, heads, dim), None


def use_gqa_decode(model: Any, enabled: bool = True) -> None:
    """Switch the text decoder (not the vision tower) to :func:`gqa_sdpa_attention`, or back to SDPA."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(GQA_ATTENTION, gqa_sdpa_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(GQA_ATTENTION, sdpa_mask)
    model.set_attn_implementation({"text_config": GQA_ATTENTION if enabled else "sdpa"})


def chunk_vision_tower(model: Any, max_patches: int) -> None:
    """Run the Pixtral vision tower on groups of images of at most ``max_patches`` patches.

    transformers packs every image of a batch into one sequence with a dense block-diagonal mask:
    memory and attention work grow with the square of the batch's total patch count (256 images
    of 480x272: a 34 GB mask). Images never attend to each other, so running them a group at a
    time gives the same features. Only the hidden states the projector uses are kept.
    """
    tower = model.model.vision_tower
    if getattr(tower, "_cosmos_chunked", None) == max_patches:
        return
    forward = type(tower).forward
    patch = int(tower.patch_size)
    keep = _kept_layers(model.config.vision_feature_layer)

    def chunked(pixel_values: torch.Tensor, image_sizes: Any = None, **kwargs: Any) -> Any:
        groups = _image_groups(image_sizes, patch, max_patches)
        if len(groups) <= 1:
            return forward(tower, pixel_values, image_sizes=image_sizes, **kwargs)
        outputs = [
            forward(tower, pixel_values[start:end], image_sizes=image_sizes[start:end], **kwargs)
            for start, end in groups
        ]
        return _joined(outputs, keep)

    tower.forward = chunked
    tower._cosmos_chunked = max_patches


def chunk_decoder_tokens(model: Any, max_tokens: int) -> None:
    """Run the decoder's RMS norms and MLPs on at most ``max_tokens`` tokens at a time.

    Both work token by token, so chunks give the same result. A prefill of 128 requests of 1152
    tokens otherwise holds four MLP intermediates of 147k x 14336 (4 GiB each) and the norms' fp32
    copies at once: about 19 GiB beside a 28 GiB KV cache, which is what decides the batch size
    that fits. Decoding steps (one token per request) never reach the limit.
    """
    language = model.model.language_model
    modules = [language.norm]
    for layer in language.layers:
        modules += [layer.input_layernorm, layer.post_attention_layernorm, layer.mlp]
    for module in modules:
        _chunk_tokens(module, max_tokens)


def _chunk_tokens(module: Any, max_tokens: int) -> None:
    forward = getattr(module, "_cosmos_unchunked", None) or module.forward
    module._cosmos_unchunked = forward

    def chunked(hidden_states: torch.Tensor) -> torch.Tensor:
        import torch

        width = hidden_states.shape[-1]
        tokens = hidden_states.numel() // width
        if tokens <= max_tokens:
            result: torch.Tensor = forward(hidden_states)
            return result
        flat = hidden_states.reshape(1, tokens, width)
        first = forward(flat[:, :max_tokens])
        output = torch.empty((1, tokens, first.shape[-1]), dtype=first.dtype, device=first.device)
        output[:, :max_tokens] = first
        del first
        for start in range(max_tokens, tokens, max_tokens):
            output[:, start : start + max_tokens] = forward(flat[:, start : start + max_tokens])
        return output.reshape(*hidden_states.shape[:-1], output.shape[-1])

    module.forward = chunked


def _kept_layers(feature_layer: int | Sequence[int]) -> list[int]:
    return [feature_layer] if isinstance(feature_layer, int) else list(feature_layer)


def _image_groups(image_sizes: Any, patch: int, max_patches: int) -> list[tuple[int, int]]:
    """Consecutive (start, end) image ranges of at most ``max_patches`` patches (one image at least)."""
    if image_sizes is None:
        return []
    counts = [(int(h) // patch) * (int(w) // patch) for h, w in image_sizes]
    groups: list[tuple[int, int]] = []
    start, total = 0, 0
    for index, count in enumerate(counts):
        if index > start and total + count > max_patches:
            groups.append((start, index))
            start, total = index, 0
        total += count
    if counts:
        groups.append((start, len(counts)))
    return groups


def _joined(outputs: list[Any], keep: list[int]) -> Any:
    """One vision-tower output from per-group outputs: patches concatenated along the sequence."""
    import torch

    first = outputs[0]
    last = torch.cat([o.last_hidden_state for o in outputs], dim=1)
    hidden = None
    if first.hidden_states is not None:
        layers: list[torch.Tensor | None] = [None] * len(first.hidden_states)
        for index in keep:
            layers[index] = torch.cat([o.hidden_states[index] for o in outputs], dim=1)
        hidden = tuple(layers)
    return type(first)(last_hidden_state=last, hidden_states=hidden)


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


class HFEngine(Engine):
    """A loaded transformers Llava/Pixtral model; one ``generate`` call per batch."""

    name = "hf"

    def __init__(
        self, config: EngineConfig, *, model: Any, checkpoint: Path | None, options: HFOptions
    ) -> None:
        super().__init__(config)
        self._model: Any = model
        self.checkpoint = checkpoint
        self.options = options
        self._tokenizer: Tokenizer = load_tokenizer(tokenizer_path_for(checkpoint))
        self._check_max_model_len()

    @property
    def tokenizer_path(self) -> Path | None:
        if self.checkpoint is None:
            return None
        path = self.checkpoint / TEKKEN_FILE
        return path if path.is_file() else None

    def with_options(self, options: Mapping[str, str | int | float | bool | None]) -> HFEngine:
        """Another engine on the same loaded model with other speed options, e.g. to compare
        settings without loading the weights twice. ``gqa_decode``, ``vision_chunk`` and
        ``compile`` belong to the shared model: the newest engine's values hold for both.
        Each engine may be closed on its own.
        """
        self._require_open()
        merged = {**self.config.options, **options}
        parsed = HFOptions.parse(merged, cuda=self.device.type == "cuda")
        use_gqa_decode(self._model, parsed.gqa_decode)
        chunk_vision_tower(self._model, parsed.vision_chunk)
        chunk_decoder_tokens(self._model, parsed.prefill_chunk)
        self._model.generation_config.disable_compile = not parsed.compile
        config = self.config.model_copy(update={"options": merged})
        return HFEngine(config, model=self._model, checkpoint=self.checkpoint, options=parsed)

    def max_batch_size(self, prompt_tokens: int, max_tokens: int) -> int:
        """How many requests of ``prompt_tokens`` fit on this GPU now, with ``max_tokens`` answers.

        Each needs its KV cache (static: the bucketed prompt plus the answer) and its share of
        the prefill activations (hidden states and residuals, q/k/v and the 4x K/V copy SDPA
        makes; the MLPs run in ``prefill_chunk`` pieces). Counted against the memory free now,
        less a fixed reserve.
        On the CPU there is no such limit that matters; 8 is returned.
        """
        self._require_open()
        if self.device.type != "cuda":
            return 8
        import torch

        text = self._model.config.text_config
        tokens = _round_up(prompt_tokens, self.options.batch_bucket)
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        kv_per_token = 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * 2
        # hidden states and residuals, q/k/v and SDPA's 4x K/V copy; MLPs run in prefill_chunk pieces
        act_per_token = (6 * text.hidden_size + 4 * text.num_attention_heads * head_dim) * 2
        per_request = (tokens + max_tokens) * kv_per_token + tokens * act_per_token
        free, _ = torch.cuda.mem_get_info(self.device)
        return max(1, int((free - GPU_RESERVE_BYTES) // per_request))

    @property
    def device(self) -> torch.device:
        self._require_open()
        device: torch.device = self._model.device
        return device

    def _check_max_model_len(self) -> None:
        limit = getattr(self._model.config.text_config, "max_position_embeddings", None)
        if limit is not None and self.config.max_model_len > limit:
            raise ConfigError(
                f"max_model_len {self.config.max_model_len} exceeds what {self.checkpoint} supports "
                f"({limit} positions); pass --max-model-len {limit} or less"
            )

    def generate(self, requests: Sequence[EncodedRequest], sampling: SamplingParams) -> list[Generation]:
        self._require_open()
        results: list[Generation | None] = [self._reject_if_too_long(r, sampling) for r in requests]
        runnable = [i for i, result in enumerate(results) if result is None]
        if runnable:
            started = time.perf_counter()
            produced = self._generate_batch([requests[i] for i in runnable], sampling)
            logger.info(
                "hf engine on %s: %d requests, %d prompt tokens, %.2f s",
                self.device,
                len(runnable),
                sum(requests[i].num_tokens for i in runnable),
                time.perf_counter() - started,
            )
            for index, generation in zip(runnable, produced, strict=True):
                results[index] = generation
        return [result for result in results if result is not None]

    def _reject_if_too_long(self, request: EncodedRequest, sampling: SamplingParams) -> Generation | None:
        limit = self.config.max_model_len
        if request.num_tokens + sampling.max_tokens <= limit:
            return None
        message = (
            f"request {request.key!r} has {request.num_tokens} prompt tokens; with max_tokens "
            f"{sampling.max_tokens} it exceeds max_model_len {limit}; use fewer or smaller frames, "
            "a lower max_tokens, or a larger --max-model-len"
        )
        return Generation.failed(message, prompt_tokens=request.num_tokens, kind="context_length")

    def _generate_batch(
        self, requests: Sequence[EncodedRequest], sampling: SamplingParams
    ) -> list[Generation]:
        import torch

        batch = hf_batch_tensors(requests, PAD_ID, bucket=self.options.batch_bucket)
        inputs = {name: tensor.to(self.device) for name, tensor in batch.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self._model.dtype)
        try:
            with torch.inference_mode(), self._seeded(sampling.seed):
                output = self._model.generate(**inputs, **self._generate_kwargs(sampling))
        except (RuntimeError, ValueError) as exc:
            if _out_of_memory(exc, torch):
                del inputs
                _release(exc, torch)
                tokens = int(batch["attention_mask"].sum())
                raise GPUOutOfMemoryError(
                    f"a batch of {len(requests)} requests ({tokens} prompt tokens) did not fit in "
                    f"{self.device} memory; retry with a smaller --batch-size"
                ) from exc
            raise EngineError(
                f"transformers generate failed on a batch of {len(requests)}: {exc}; rerun with "
                "--batch-size 1 to find the request that triggers it"
            ) from exc
        new_tokens = output[:, batch["input_ids"].shape[1] :].tolist()
        return [
            self._to_generation(r, tokens, sampling) for r, tokens in zip(requests, new_tokens, strict=True)
        ]

    def _generate_kwargs(self, sampling: SamplingParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_tokens,
            "pad_token_id": PAD_ID,
            "eos_token_id": self._tokenizer.eos_id,
        }
        if sampling.temperature > 0:
            # top_k=0: transformers defaults to 50, the upsampler (vLLM) samples from every token
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None)
        if self.options.static_cache:
            kwargs["cache_implementation"] = "static"
        if self.options.ignore_eos:
            kwargs["min_new_tokens"] = sampling.max_tokens  # benchmark only: EOS masked until the end
        return kwargs

    @contextmanager
    def _seeded(self, seed: int | None) -> Iterator[None]:
        """Seed the sampler for this call only, leaving the process' random state untouched."""
        if seed is None:
            yield
            return
        import torch

        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    def _to_generation(
        self, request: EncodedRequest, tokens: list[int], sampling: SamplingParams
    ) -> Generation:
        eos = self._tokenizer.eos_id
        stopped = eos in tokens
        answer = tokens[: tokens.index(eos)] if stopped else tokens[: sampling.max_tokens]
        return Generation(
            text=self._tokenizer.decode(answer),
            finish_reason="stop" if stopped else "length",
            prompt_tokens=request.num_tokens,
            completion_tokens=len(answer) + (1 if stopped else 0),
        )

    def _require_open(self) -> None:
        if self._model is None:
            raise EngineError("the hf engine was closed; load it again with load_engine(config)")

    def close(self) -> None:
        if self._model is None:
            return
        self._model = None
        import torch

        _free_cuda(torch)
