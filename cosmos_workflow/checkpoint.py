"""Checkpoints: Mistral-format Pixtral -> Hugging Face Llava, and the per-control variant choice.

The Cosmos upsampler ships in Mistral's own format (params.json, consolidated.safetensors,
tekken.json), which vLLM loads directly but transformers does not. ``convert_checkpoint`` writes
the Hugging Face ``LlavaForConditionalGeneration`` layout the ``hf`` engine loads, keeping
tekken.json so the planner counts tokens with the checkpoint's own tokenizer.

The one subtle step is rotary embeddings: Mistral rotates interleaved pairs (x0,x1),(x2,x3)...
while transformers rotates halves (x0,x_d/2),(x1,x_d/2+1)...; permuting the output rows of each
head's q and k weights (even rows first, then odd rows) makes both compute the same attention.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosmos_workflow.errors import ConfigError, ModelLoadError

if TYPE_CHECKING:
    import torch

MISTRAL_PARAMS = "params.json"
MISTRAL_WEIGHTS = "consolidated.safetensors"
TOKENIZER = "tekken.json"

#: Per-control variant folders of the older Cosmos layout, by spec control name.
CONTROL_VARIANTS = {
    "vis": "viscontrol",
    "edge": "viscontrol",
    "viscontrol": "viscontrol",
    "depth": "depth",
    "seg": "segmentation",
    "segmentation": "segmentation",
}

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


def hf_config(params: dict[str, Any]) -> Any:
    """A ``LlavaConfig`` from Mistral's params.json (text fields at top, ``vision_encoder`` inside)."""
    from transformers import LlavaConfig, MistralConfig, PixtralVisionConfig

    vision = params.get("vision_encoder")
    if not isinstance(vision, dict):
        raise ModelLoadError(f"{MISTRAL_PARAMS} has no vision_encoder section: not a Pixtral checkpoint")
    text = MistralConfig(
        vocab_size=params["vocab_size"],
        hidden_size=params["dim"],
        intermediate_size=params["hidden_dim"],
        num_hidden_layers=params["n_layers"],
        num_attention_heads=params["n_heads"],
        num_key_value_heads=params.get("n_kv_heads", params["n_heads"]),
        head_dim=params.get("head_dim", params["dim"] // params["n_heads"]),
        rms_norm_eps=params.get("norm_eps", 1e-5),
        **_rope(params.get("rope_theta", 1e6)),
        max_position_embeddings=params.get("max_position_embeddings", 1024000),
        sliding_window=None,
        tie_word_embeddings=False,
        hidden_act="silu",
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=11,
    )
    tower = PixtralVisionConfig(
        hidden_size=vision["hidden_size"],
        intermediate_size=vision["intermediate_size"],
        num_hidden_layers=vision["num_hidden_layers"],
        num_attention_heads=vision["num_attention_heads"],
        num_channels=vision.get("num_channels", 3),
        image_size=vision["image_size"],
        patch_size=vision["patch_size"],
        **_rope(vision.get("rope_theta", 10000.0)),
    )
    config = LlavaConfig(
        vision_config=tower,
        text_config=text,
        image_token_index=vision.get("image_token_id", 10),
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        multimodal_projector_bias=bool(vision.get("adapter_bias", True)),
        image_seq_length=1,
    )
    config.architectures = ["LlavaForConditionalGeneration"]
    return config


def _rope(theta: float) -> dict[str, Any]:
    """``rope_theta`` as a plain keyword: transformers 4.x stores it, 5.x folds it into rope_parameters."""
    return {"rope_theta": float(theta)}


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

    ``dst`` is written through a temporary sibling folder and renamed at the end, so a failed
    conversion leaves nothing half-written. Returns ``dst``.
    """
    src, dst = Path(src), Path(dst)
    _check_source(src)
    if dst.exists() and any(dst.iterdir()):
        raise ConfigError(f"{dst} exists and is not empty; choose a new destination or remove it")
    params = json.loads((src / MISTRAL_PARAMS).read_text())
    config = hf_config(params)
    model = _model_with(config, convert_state_dict(_load_weights(src), config))
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
    return dst


def _check_source(src: Path) -> None:
    missing = [n for n in (MISTRAL_PARAMS, MISTRAL_WEIGHTS, TOKENIZER) if not (src / n).is_file()]
    if missing:
        variants = [p.name for p in sorted(src.iterdir()) if p.is_dir()] if src.is_dir() else []
        hint = f"; it holds per-control variants {variants}: convert one of them" if variants else ""
        raise ModelLoadError(f"{src} is not a Mistral-format checkpoint: missing {', '.join(missing)}{hint}")


def _load_weights(src: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        weights: dict[str, torch.Tensor] = load_file(str(src / MISTRAL_WEIGHTS))
    except Exception as exc:
        raise ModelLoadError(
            f"cannot read {src / MISTRAL_WEIGHTS}: {exc}; re-download the checkpoint"
        ) from exc
    return weights


def _model_with(config: Any, state: dict[str, torch.Tensor]) -> Any:
    """A Llava model holding exactly ``state`` (names adapted to the installed transformers)."""
    import torch
    from transformers import LlavaForConditionalGeneration

    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    expected = set(model.state_dict())
    state = {_installed_name(k, expected): v for k, v in state.items()}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ModelLoadError(
            f"checkpoint does not match Pixtral's layout: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}; use --engine vllm, which reads the Mistral format directly"
        )
    model.load_state_dict(state, strict=True, assign=True)
    return model


def _installed_name(name: str, expected: set[str]) -> str:
    if name in expected:
        return name
    for new, old in _LEGACY:
        if name.startswith(new) and old + name[len(new) :] in expected:
            return old + name[len(new) :]
    return name


def pick_variant(checkpoint_dir: Path, control: str | None) -> Path:
    """The folder to load for a spec's control: a flat checkpoint is itself; a per-control
    layout (depth/, segmentation/, viscontrol/) gives the folder matching ``control``."""
    checkpoint_dir = Path(checkpoint_dir)
    if _is_checkpoint(checkpoint_dir):
        return checkpoint_dir
    present = sorted({v for v in CONTROL_VARIANTS.values() if _is_checkpoint(checkpoint_dir / v)})
    if not present:
        raise ModelLoadError(
            f"{checkpoint_dir} is neither a checkpoint (params.json or config.json) nor a per-control "
            "layout (depth/, segmentation/, viscontrol/); point --model at the checkpoint folder"
        )
    if control is None:
        raise ConfigError(
            f"{checkpoint_dir} holds one checkpoint per control {present}; give the spec a control "
            "or point --model at one of them"
        )
    variant = CONTROL_VARIANTS.get(control.lower())
    if variant is None or variant not in present:
        raise ConfigError(
            f"no checkpoint for control {control!r} in {checkpoint_dir} (it has {present}); "
            f"controls map as {CONTROL_VARIANTS}"
        )
    return checkpoint_dir / variant


def _is_checkpoint(folder: Path) -> bool:
    return (folder / MISTRAL_PARAMS).is_file() or (folder / "config.json").is_file()
