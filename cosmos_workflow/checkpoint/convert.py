"""Mistral-format Pixtral -> Hugging Face Llava: the ``convert-checkpoint`` command's work.

The Cosmos upsampler ships in Mistral's own format (params.json, consolidated.safetensors,
tekken.json), which vLLM loads directly but transformers does not. ``convert_checkpoint`` writes
the Hugging Face ``LlavaForConditionalGeneration`` layout the ``hf`` engine loads, keeping
tekken.json so the planner counts tokens with the checkpoint's own tokenizer.

Two steps need care. Rotary embeddings: Mistral rotates interleaved pairs (x0,x1),(x2,x3)...
while transformers rotates halves (x0,x_d/2),(x1,x_d/2+1)...; permuting the output rows of each
head's q and k weights (even rows first, then odd rows) makes both compute the same attention,
for the decoder's 1-D rotary and the vision encoder's 2-D one alike. The config: every value
comes from params.json (checked in :mod:`.params`), from the checkpoint's tokenizer (special ids)
or from Pixtral's definition (a SiLU-gated vision feed-forward, a GELU adapter, the last vision
layer's features), never from a transformers default: transformers' own Pixtral vision default
is GELU, which reads every image wrongly.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cosmos_workflow.checkpoint.params import MISTRAL_PARAMS, VLLM_HINT, PixtralParams, read_params
from cosmos_workflow.errors import ConfigError, ModelLoadError
from cosmos_workflow.tokenizer import TEKKEN_FILE, Tokenizer, load_tokenizer

if TYPE_CHECKING:
    import torch

MISTRAL_WEIGHTS = "consolidated.safetensors"
TOKENIZER = TEKKEN_FILE
#: Pixtral's definition (the same in vLLM's Mistral-format loader and in mistral-inference).
VISION_ACTIVATION = "silu"
ADAPTER_ACTIVATION = "gelu"
#: The adapter reads the vision encoder's last layer, every patch (no CLS token to drop).
VISION_FEATURE_LAYER = -1
VISION_FEATURE_STRATEGY: Final = "full"

_LAYER = r"layers\.(\d+)\."
#: Mistral name (regex) -> Hugging Face name, tried in order; the first match wins.
KEY_MAP: tuple[tuple[str, str], ...] = (
    (
        rf"^vision_encoder\.transformer\.{_LAYER}attention\.w([qkvo])\.weight$",
        r"vt.layers.\1.attention.\2_proj",
    ),
    (
        rf"^vision_encoder\.transformer\.{_LAYER}feed_forward\.w1\.weight$",
        r"vt.layers.\1.feed_forward.gate_proj",
    ),
    (
        rf"^vision_encoder\.transformer\.{_LAYER}feed_forward\.w2\.weight$",
        r"vt.layers.\1.feed_forward.down_proj",
    ),
    (
        rf"^vision_encoder\.transformer\.{_LAYER}feed_forward\.w3\.weight$",
        r"vt.layers.\1.feed_forward.up_proj",
    ),
    (rf"^vision_encoder\.transformer\.{_LAYER}(attention_norm|ffn_norm)\.weight$", r"vt.layers.\1.\2"),
    (r"^vision_encoder\.(patch_conv|ln_pre)\.weight$", r"model.vision_tower.\1"),
    (r"^vision_language_adapter\.w_in\.(weight|bias)$", r"model.multi_modal_projector.linear_1.\1"),
    (r"^vision_language_adapter\.w_out\.(weight|bias)$", r"model.multi_modal_projector.linear_2.\1"),
    (rf"^{_LAYER}attention\.w([qkvo])\.weight$", r"lm.layers.\1.self_attn.\2_proj"),
    (rf"^{_LAYER}feed_forward\.w1\.weight$", r"lm.layers.\1.mlp.gate_proj"),
    (rf"^{_LAYER}feed_forward\.w2\.weight$", r"lm.layers.\1.mlp.down_proj"),
    (rf"^{_LAYER}feed_forward\.w3\.weight$", r"lm.layers.\1.mlp.up_proj"),
    (rf"^{_LAYER}attention_norm\.weight$", r"lm.layers.\1.input_layernorm"),
    (rf"^{_LAYER}ffn_norm\.weight$", r"lm.layers.\1.post_attention_layernorm"),
    (r"^tok_embeddings\.weight$", r"lm.embed_tokens"),
    (r"^norm\.weight$", r"lm.norm"),
    (r"^output\.weight$", r"lm_head"),
)
_PREFIXES = {"vt.": "model.vision_tower.transformer.", "lm.": "model.language_model."}
#: Current transformers names -> the names of releases before the Llava refactor (4.5x).
_LEGACY = (
    ("model.language_model.", "language_model.model."),
    ("model.vision_tower.", "vision_tower."),
    ("model.multi_modal_projector.", "multi_modal_projector."),
    ("lm_head.", "language_model.lm_head."),
)


def hf_name(mistral_name: str) -> str:
    """The Hugging Face parameter name for a Mistral-format one."""
    for pattern, target in KEY_MAP:
        if re.match(pattern, mistral_name):
            name = re.sub(pattern, target, mistral_name)
            for short, full in _PREFIXES.items():
                name = full + name[len(short) :] if name.startswith(short) else name
            return name if name.endswith(("weight", "bias")) else name + ".weight"
    raise ModelLoadError(
        f"unknown weight {mistral_name!r} in {MISTRAL_WEIGHTS}: this converter handles Pixtral-12B "
        "checkpoints; for other models use vLLM (--engine vllm), which reads the Mistral format directly"
    )


def permute_for_rope(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder each head's output rows from interleaved pairs to halves (see module docstring)."""
    rows, cols = weight.shape
    head_dim = rows // n_heads
    return weight.view(n_heads, head_dim // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def hf_config(params: PixtralParams, tokenizer: Tokenizer) -> Any:
    """A ``LlavaConfig`` with every value set from params.json, the tokenizer or Pixtral's definition."""
    from transformers import LlavaConfig

    config = LlavaConfig(
        vision_config=_vision_config(params),
        text_config=_text_config(params, tokenizer),
        image_token_index=params.vision_encoder.image_token_id,
        projector_hidden_act=ADAPTER_ACTIVATION,
        vision_feature_layer=VISION_FEATURE_LAYER,
        vision_feature_select_strategy=VISION_FEATURE_STRATEGY,
        multimodal_projector_bias=params.vision_encoder.adapter_bias,
        image_seq_length=1,  # unused: the tokenizer expands every image to its own patch count
        tie_word_embeddings=params.tied_embeddings,
    )
    config.architectures = ["LlavaForConditionalGeneration"]
    return config


def _text_config(params: PixtralParams, tokenizer: Tokenizer) -> Any:
    from transformers import MistralConfig

    return MistralConfig(
        vocab_size=params.vocab_size,
        hidden_size=params.dim,
        intermediate_size=params.hidden_dim,
        num_hidden_layers=params.n_layers,
        num_attention_heads=params.n_heads,
        num_key_value_heads=params.n_kv_heads,
        head_dim=params.head_dim,
        hidden_act=params.activation,
        rms_norm_eps=params.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": params.rope_theta},
        max_position_embeddings=params.context_length,
        sliding_window=None,
        attention_dropout=0.0,
        tie_word_embeddings=params.tied_embeddings,
        use_cache=True,
        bos_token_id=tokenizer.bos_id,
        eos_token_id=tokenizer.eos_id,
        pad_token_id=tokenizer.pad_id,
    )


def _vision_config(params: PixtralParams) -> Any:
    from transformers import PixtralVisionConfig

    vision = params.vision_encoder
    return PixtralVisionConfig(
        hidden_size=vision.hidden_size,
        intermediate_size=vision.intermediate_size,
        num_hidden_layers=vision.num_hidden_layers,
        num_attention_heads=vision.num_attention_heads,
        num_channels=vision.num_channels,
        image_size=vision.image_size,
        patch_size=vision.patch_size,
        hidden_act=VISION_ACTIVATION,
        attention_dropout=0.0,
        rope_parameters={"rope_type": "axial", "rope_theta": vision.rope_theta},
    )


def check_tokenizer(params: PixtralParams, tokenizer: Tokenizer, folder: Path) -> None:
    """The tokenizer and params.json must agree on the vocabulary and the image tokens."""
    vision = params.vision_encoder
    named = (vision.image_token_id, vision.image_break_token_id, vision.image_end_token_id)
    for label, in_params, in_tokenizer in zip(
        ("[IMG]", "[IMG_BREAK]", "[IMG_END]"), named, tokenizer.image_ids, strict=True
    ):
        if in_params is not None and in_params != in_tokenizer:
            raise ModelLoadError(
                f"{folder}: params.json gives {label} the id {in_params} but {TOKENIZER} gives it "
                f"{in_tokenizer}; the two files belong to different checkpoints: re-download the checkpoint"
            )
    if tokenizer.vocab_size > params.vocab_size:
        raise ModelLoadError(
            f"{folder}: {TOKENIZER} has {tokenizer.vocab_size} tokens but params.json vocab_size is "
            f"{params.vocab_size}; the two files belong to different checkpoints: re-download the checkpoint"
        )


def convert_state_dict(source: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """Rename every tensor and permute q/k rows for rotary embeddings."""
    heads = {
        ("vision", "q"): config.vision_config.num_attention_heads,
        ("vision", "k"): config.vision_config.num_attention_heads,
        ("text", "q"): config.text_config.num_attention_heads,
        ("text", "k"): config.text_config.num_key_value_heads,
    }
    converted: dict[str, torch.Tensor] = {}
    for name, tensor in source.items():
        target = hf_name(name)
        proj = re.search(r"\.([qk])_proj\.weight$", target)
        if proj:
            part = "vision" if name.startswith("vision_encoder.") else "text"
            tensor = permute_for_rope(tensor, heads[(part, proj.group(1))])
        converted[target] = tensor.contiguous()
    return converted


def convert_checkpoint(src: Path, dst: Path) -> Path:
    """Convert a Mistral-format Pixtral checkpoint at ``src`` into a Hugging Face one at ``dst``.

    params.json and the tokenizer are checked before the weights are read; the weights' names and
    shapes are checked against params.json before any is converted. ``dst`` is written through a
    temporary sibling folder and renamed at the end, so a failed conversion leaves nothing
    half-written. Returns ``dst``.
    """
    from cosmos_workflow.versions import require_transformers

    src, dst = Path(src), Path(dst)
    _check_source(src)
    if dst.exists() and any(dst.iterdir()):
        raise ConfigError(f"{dst} exists and is not empty; choose a new destination or remove it")
    params = read_params(src)
    tokenizer = _checkpoint_tokenizer(src)
    check_tokenizer(params, tokenizer, src)
    require_transformers("convert-checkpoint")
    config = hf_config(params, tokenizer)
    model = _empty_model(config)
    source = _load_weights(src)
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    _check_layout(source, expected, src)
    state = {_installed_name(k, set(expected)): v for k, v in convert_state_dict(source, config).items()}
    model.load_state_dict(state, strict=True, assign=True)
    _save(model, src, dst)
    return dst


def _check_source(src: Path) -> None:
    missing = [n for n in (MISTRAL_PARAMS, MISTRAL_WEIGHTS, TOKENIZER) if not (src / n).is_file()]
    if missing:
        variants = [p.name for p in sorted(src.iterdir()) if p.is_dir()] if src.is_dir() else []
        hint = f"; it holds per-control variants {variants}: convert one of them" if variants else ""
        raise ModelLoadError(f"{src} is not a Mistral-format checkpoint: missing {', '.join(missing)}{hint}")


def _checkpoint_tokenizer(src: Path) -> Tokenizer:
    try:
        return load_tokenizer(src / TOKENIZER)
    except ConfigError as exc:
        raise ModelLoadError(f"{exc}; re-download the checkpoint") from exc


def _load_weights(src: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        weights: dict[str, torch.Tensor] = load_file(str(src / MISTRAL_WEIGHTS))
    except Exception as exc:
        raise ModelLoadError(
            f"cannot read {src / MISTRAL_WEIGHTS}: {exc}; re-download the checkpoint"
        ) from exc
    return weights


def _empty_model(config: Any) -> Any:
    """The Llava model for ``config`` on the meta device: its names and shapes, no memory."""
    import torch
    from transformers import LlavaForConditionalGeneration

    with torch.device("meta"):
        return LlavaForConditionalGeneration(config)


def _check_layout(source: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], src: Path) -> None:
    """Every tensor params.json implies is there with its shape, and nothing else is."""
    where = src / MISTRAL_WEIGHTS
    seen: set[str] = set()
    unexpected: list[str] = []
    for name, tensor in sorted(source.items()):
        target = _installed_name(hf_name(name), set(expected))
        if target not in expected:
            unexpected.append(name)
            continue
        if tuple(tensor.shape) != expected[target]:
            raise ModelLoadError(
                f"{where}: {name} has shape {list(tensor.shape)} but params.json implies "
                f"{list(expected[target])}; params.json and the weights belong to different "
                "checkpoints: re-download the checkpoint"
            )
        seen.add(target)
    missing = sorted(set(expected) - seen)
    problems = [f"{len(missing)} missing (e.g. {', '.join(missing[:3])})"] if missing else []
    problems += [f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})"] if unexpected else []
    if problems:
        raise ModelLoadError(
            f"{where} does not hold the tensors params.json implies: {' and '.join(problems)}; "
            f"check n_layers in params.json, or {VLLM_HINT}"
        )


def _save(model: Any, src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        model.save_pretrained(staging)
        shutil.copyfile(src / TOKENIZER, staging / TOKENIZER)
        if dst.exists():
            dst.rmdir()
        os.replace(staging, dst)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _installed_name(name: str, expected: set[str]) -> str:
    if name in expected:
        return name
    for new, old in _LEGACY:
        if name.startswith(new) and old + name[len(new) :] in expected:
            return old + name[len(new) :]
    return name
