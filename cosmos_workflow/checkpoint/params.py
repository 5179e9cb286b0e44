"""``params.json`` of a Mistral-format Pixtral checkpoint: read, type-checked and checked for sense.

Every value the converter needs comes from here: from params.json itself, or, for the few keys a
Pixtral params.json may leave out, from Pixtral's definition (the defaults of the Mistral-format
Pixtral loader in vLLM, which is how the Cosmos image serves this checkpoint). Nothing falls back
to a transformers default. A file that is not JSON, lacks a key, holds a value of the wrong type,
describes a model this converter does not handle, or has sizes that contradict each other is
refused with one line naming the key and what to do.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cosmos_workflow.errors import ModelLoadError
from cosmos_workflow.userfiles import MiB, UserFile, read_user_text

logger = logging.getLogger("cosmos_workflow")

MISTRAL_PARAMS = "params.json"
#: Pixtral-12B's context length (its model card: 128k), when params.json names none.
PIXTRAL_CONTEXT = 131072
VLLM_HINT = "serve this checkpoint with --engine vllm, which reads the Mistral format directly"

#: Top-level keys that describe another architecture than Pixtral-12B's, and what they mean.
UNSUPPORTED = {
    "moe": "a mixture of experts",
    "yarn": "YaRN rotary scaling",
    "llama_4_scaling": "Llama-4 attention scaling",
    "quantization": "a quantized checkpoint",
    "lora": "LoRA adapters",
    "qk_nope_head_dim": "latent (MLA) attention",
}
#: Keys that carry nothing the converted model needs (names and metadata of Mistral's format).
IGNORED = frozenset({"model_type", "dtype", "max_batch_size", "image_break_token_id", "image_end_token_id"})


class VisionEncoderParams(BaseModel):
    """The ``vision_encoder`` section: Pixtral's vision transformer and its adapter."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    hidden_size: int = Field(gt=0)
    num_channels: int = Field(gt=0)
    image_size: int = Field(gt=0)
    patch_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    num_hidden_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    rope_theta: float = Field(gt=0)
    image_token_id: int = Field(ge=0)
    image_break_token_id: int | None = Field(None, ge=0)
    image_end_token_id: int | None = Field(None, ge=0)
    #: Pixtral's definition: the adapter's two linear layers have biases.
    adapter_bias: bool = True
    #: Later Mistral models merge 2x2 patches and norm before the adapter; Pixtral-12B does neither.
    spatial_merge_size: int = 1
    add_pre_mm_projector_layer_norm: bool = False
    mm_projector_id: str = ""

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


class PixtralParams(BaseModel):
    """params.json: the Mistral decoder's sizes at the top, the vision encoder inside."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    dim: int = Field(gt=0)
    n_layers: int = Field(gt=0)
    hidden_dim: int = Field(gt=0)
    n_heads: int = Field(gt=0)
    n_kv_heads: int = Field(gt=0)
    head_dim_: int | None = Field(None, gt=0, alias="head_dim")
    norm_eps: float = Field(gt=0)
    rope_theta: float = Field(gt=0)
    vocab_size: int = Field(gt=0)
    max_position_embeddings: int | None = Field(None, gt=0)
    max_seq_len: int | None = Field(None, gt=0)
    #: Pixtral's definition: a SiLU-gated feed-forward, untied input and output embeddings.
    activation: str = "silu"
    tied_embeddings: bool = False
    sliding_window: int | list[int | None] | None = None
    vision_encoder: VisionEncoderParams

    @property
    def head_dim(self) -> int:
        """Mistral's rule when params.json names none: the model width split evenly over heads."""
        return self.head_dim_ or self.dim // self.n_heads

    @property
    def context_length(self) -> int:
        return self.max_position_embeddings or self.max_seq_len or PIXTRAL_CONTEXT


def read_params(folder: Path) -> PixtralParams:
    """The checked params.json of the checkpoint in ``folder``, or a one-line ModelLoadError."""
    path = folder / MISTRAL_PARAMS
    raw = _load_json(path)
    _refuse_other_architectures(raw, path)
    try:
        params = PixtralParams.model_validate(_vision_section(raw, path))
    except ValidationError as exc:
        raise ModelLoadError(
            f"{path}: {_describe(exc)}; fix params.json or re-download the checkpoint"
        ) from None
    _check_sizes(params, path)
    _warn_ignored(params, path)
    return params


#: a checkpoint's sizes: a few hundred bytes of flat JSON
PARAMS_FILE = UserFile(
    what="checkpoint file",
    max_bytes=MiB,
    error=ModelLoadError,
    fix="re-download the checkpoint",
    syntax="json",
)


def _load_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(read_user_text(path, PARAMS_FILE))
    except json.JSONDecodeError as exc:
        raise ModelLoadError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "re-download the checkpoint"
        ) from None
    if not isinstance(raw, dict):
        raise ModelLoadError(
            f"{path} holds a JSON {type(raw).__name__}, not an object of model sizes; "
            "re-download the checkpoint"
        )
    return raw


def _vision_section(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """The vision encoder under its Pixtral key; newer Mistral files nest it under ``multimodal``."""
    multimodal = raw.get("multimodal")
    if "vision_encoder" in raw or not isinstance(multimodal, dict):
        if "vision_encoder" not in raw:
            raise ModelLoadError(
                f"{path} has no vision_encoder section: it is a text-only model, not Pixtral; {VLLM_HINT}"
            )
        return raw
    vision = multimodal.get("vision_encoder_args")
    if vision is None:
        raise ModelLoadError(
            f"{path}: multimodal has no vision_encoder_args: not a Pixtral checkpoint; {VLLM_HINT}"
        )
    rest = {k: v for k, v in raw.items() if k != "multimodal"}
    return {**rest, "vision_encoder": vision}


def _refuse_other_architectures(raw: dict[str, Any], path: Path) -> None:
    for key, what in UNSUPPORTED.items():
        if raw.get(key):
            raise ModelLoadError(
                f"{path} describes {what} ({key!r}): this converter handles Pixtral-12B only; {VLLM_HINT}"
            )


def _check_sizes(params: PixtralParams, path: Path) -> None:
    """Sizes that contradict each other or Pixtral's layout; the first problem found is named."""
    for problem in _size_problems(params):
        raise ModelLoadError(f"{path}: {problem}")


def _size_problems(p: PixtralParams) -> list[str]:
    v = p.vision_encoder
    problems = [
        (
            p.n_heads % p.n_kv_heads != 0,
            f"n_heads {p.n_heads} is not a multiple of n_kv_heads {p.n_kv_heads}",
        ),
        (
            p.head_dim_ is None and p.dim % p.n_heads != 0,
            f"dim {p.dim} does not split into n_heads {p.n_heads}; add head_dim",
        ),
        (p.head_dim % 2 != 0, f"head_dim {p.head_dim} is odd: rotary embeddings rotate pairs"),
        (
            v.hidden_size % v.num_attention_heads != 0,
            f"vision_encoder.hidden_size {v.hidden_size} does not split into "
            f"num_attention_heads {v.num_attention_heads}",
        ),
        (v.head_dim % 2 != 0, f"the vision head size {v.head_dim} is odd: rotary embeddings rotate pairs"),
        (
            v.patch_size > v.image_size,
            f"vision_encoder.patch_size {v.patch_size} exceeds image_size {v.image_size}",
        ),
        (
            v.image_token_id >= p.vocab_size,
            f"vision_encoder.image_token_id {v.image_token_id} is outside vocab_size {p.vocab_size}",
        ),
        (
            p.activation != "silu",
            f"activation {p.activation!r}: Pixtral's decoder is SiLU-gated; {VLLM_HINT}",
        ),
        (p.tied_embeddings, f"tied_embeddings is true: Pixtral's output layer is its own; {VLLM_HINT}"),
        (
            p.sliding_window is not None,
            f"sliding_window {p.sliding_window}: Pixtral attends to the whole context; {VLLM_HINT}",
        ),
        (
            v.spatial_merge_size != 1,
            f"vision_encoder.spatial_merge_size {v.spatial_merge_size}: Pixtral-12B merges no "
            f"patches; {VLLM_HINT}",
        ),
        (
            v.add_pre_mm_projector_layer_norm,
            f"vision_encoder.add_pre_mm_projector_layer_norm is true: not Pixtral-12B; {VLLM_HINT}",
        ),
        (
            bool(v.mm_projector_id),
            f"vision_encoder.mm_projector_id {v.mm_projector_id!r}: not Pixtral-12B; {VLLM_HINT}",
        ),
    ]
    return [message for failed, message in problems if failed]


def _warn_ignored(params: PixtralParams, path: Path) -> None:
    unknown = sorted(set(params.model_extra or {}) - IGNORED)
    unknown += sorted(f"vision_encoder.{k}" for k in set(params.vision_encoder.model_extra or {}) - IGNORED)
    if unknown:
        logger.warning("%s: keys %s mean nothing to the converter and are ignored", path, unknown)


def _describe(exc: ValidationError) -> str:
    """Pydantic's errors as one line: the key, what is wrong, and (for a wrong type) the value."""
    parts = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        if error["type"] == "missing":
            parts.append(f"{key} is missing")
        else:
            parts.append(f"{key} {error['msg'][0].lower()}{error['msg'][1:]} (got {error['input']!r})")
    return "; ".join(parts)
