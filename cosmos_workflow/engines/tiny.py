"""Randomly initialised Pixtral-architecture models: a tiny checkpoint cached on disk, and the
full-size Pixtral-12B layout built straight on a GPU.

No model weights can be downloaded where this project is tested, so the transformers engine,
the runner and the CLI are exercised end to end on the tiny miniature: the real Llava/Pixtral code
paths, the real Pixtral tokenizer (copied in from mistral-common), random weights. Its text is
random: it proves the pipeline, not the wording. The full-size layout with random weights
(``pixtral-12b-random``) measures real GPU speed without a checkpoint (issue 7).

Importing this module is light; torch and transformers are imported only when a build is needed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosmos_workflow.errors import ModelLoadError
from cosmos_workflow.tokenizer import TEKKEN_FILE, bundled_tokenizer_path

if TYPE_CHECKING:
    import torch
    from transformers import LlavaConfig

#: Bump when the architecture or seed changes, so stale caches are never reused.
TINY_MODEL_NAME = "tiny-random-pixtral-v3"
#: The model name that builds Pixtral-12B's full-size architecture with random weights on a GPU.
RANDOM_12B_MODEL = "pixtral-12b-random"
ANSWER_TOKENS = 48
CACHE_ENV = "COSMOS_WORKFLOW_CACHE"
SEED = 20240911
#: Files that exist only in a finished build (the folder is renamed into place whole).
REQUIRED_FILES = ("config.json", "model.safetensors", TEKKEN_FILE)

# Token ids of Pixtral's tokenizer (tekken_240911.json).
BOS_ID, EOS_ID, IMAGE_ID, PAD_ID = 1, 2, 10, 11
IMAGE_BREAK_ID, IMAGE_END_ID = 12, 13

#: Pixtral-12B's ``params.json`` in Mistral's own format (as the Cosmos checkpoint ships it), for
#: vLLM's random-weight start of ``pixtral-12b-random``: the same sizes as
#: :func:`pixtral_12b_config`. ``max_position_embeddings`` is given so that vLLM never looks for a
#: Hugging Face config to find it.
PIXTRAL_12B_PARAMS: dict[str, Any] = {
    "dim": 5120,
    "n_layers": 40,
    "head_dim": 128,
    "hidden_dim": 14336,
    "n_heads": 32,
    "n_kv_heads": 8,
    "rope_theta": 1_000_000_000.0,
    "norm_eps": 1e-5,
    "vocab_size": 131072,
    "max_position_embeddings": 131072,
    "vision_encoder": {
        "hidden_size": 1024,
        "num_channels": 3,
        "image_size": 1024,
        "patch_size": 16,
        "rope_theta": 10000.0,
        "intermediate_size": 4096,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "image_token_id": IMAGE_ID,
        "image_break_token_id": IMAGE_BREAK_ID,
        "image_end_token_id": IMAGE_END_ID,
    },
}


def cache_root() -> Path:
    """Where cosmos-workflow caches built artefacts: ``$COSMOS_WORKFLOW_CACHE`` or ~/.cache."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "cosmos-workflow"


def tiny_model_dir(root: Path | None = None) -> Path:
    """The tiny model's folder, built on first use and reused afterwards."""
    return cached_build((root or cache_root()) / TINY_MODEL_NAME, REQUIRED_FILES, _build)


def cached_build(target: Path, required: tuple[str, ...], build: Callable[[Path], None]) -> Path:
    """``target``, built by ``build`` on first use (complete once every ``required`` file exists).

    Safe against concurrent builders: each builds in its own temporary folder beside the target
    and renames it into place; whoever loses the race discards its copy and uses the winner's.
    """
    if _is_complete(target, required):
        return target
    if target.exists():
        _discard_stale(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any other
        build(staging)
        _publish(staging, target, required)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _is_complete(folder: Path, required: tuple[str, ...]) -> bool:
    return all((folder / name).is_file() for name in required)


def _discard_stale(target: Path) -> None:
    """Move an incomplete folder (a manual edit or an old layout) aside so it can be rebuilt."""
    aside = target.with_name(f".{target.name}-stale-{os.getpid()}")
    try:
        os.replace(target, aside)
    except OSError:
        return  # another process moved or replaced it first
    shutil.rmtree(aside, ignore_errors=True)


def _publish(staging: Path, target: Path, required: tuple[str, ...]) -> None:
    try:
        os.replace(staging, target)
    except OSError as exc:
        if _is_complete(target, required):
            return  # a concurrent builder won the race; its copy is identical
        raise ModelLoadError(
            f"cannot write the tiny model to {target}: {exc}; set {CACHE_ENV} to a writable folder"
        ) from exc


def _build(folder: Path) -> None:
    """Build the model with a fixed seed, save it and its tokenizer into ``folder``."""
    try:
        import torch
        from transformers import LlavaForConditionalGeneration
    except ImportError as exc:
        raise ModelLoadError(
            f"the tiny model needs transformers and torch ({exc}); run: pip install 'cosmos-workflow[hf]'"
        ) from exc
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlavaForConditionalGeneration(tiny_config())
    model.generation_config.bos_token_id = BOS_ID
    model.generation_config.eos_token_id = EOS_ID
    model.generation_config.pad_token_id = PAD_ID
    # Random weights never pick EOS, so every answer would run to max_tokens and be refused as cut
    # off. The checkpoint's own generation config raises EOS's score after ANSWER_TOKENS tokens
    # (transformers' exponential_decay_length_penalty): answers end like a real model's, at random
    # lengths near 90 tokens. Engines pass nothing special; this belongs to the tiny checkpoint.
    model.generation_config.exponential_decay_length_penalty = (ANSWER_TOKENS, 1.1)
    model.save_pretrained(folder)
    shutil.copyfile(bundled_tokenizer_path(), folder / TEKKEN_FILE)


def tiny_config() -> LlavaConfig:
    """Pixtral-12B's layout (vision tower + projector + Mistral decoder) at toy width and depth."""
    return pixtral_layout(
        vision={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
        },
        text={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 8192,
        },
    )


def pixtral_12b_config() -> LlavaConfig:
    """Pixtral-12B's published architecture: Mistral-NeMo-12B decoder, 400M-parameter vision encoder.

    12.7B parameters, 25.4 GB in bf16. ``max_position_embeddings`` is cut from the checkpoint's
    1M to 128k: only the rotary table's reach, never a weight, depends on it.
    """
    return pixtral_layout(
        vision={
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "rope_parameters": {"rope_type": "axial", "rope_theta": 10000.0},
        },
        text={
            "hidden_size": 5120,
            "intermediate_size": 14336,
            "num_hidden_layers": 40,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "max_position_embeddings": 131072,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000_000.0},
            "rms_norm_eps": 1e-5,
            "sliding_window": None,
            "tie_word_embeddings": False,
        },
        tie_word_embeddings=False,
    )


def pixtral_layout(*, vision: dict[str, Any], text: dict[str, Any], **llava: Any) -> LlavaConfig:
    """Pixtral at any size: a Pixtral vision tower (16-px patches, 1024-px images, a SiLU-gated
    feed-forward as in Pixtral, not transformers' GELU default), a GELU projector and a Mistral
    decoder over the Tekken vocabulary, with the tokenizer's special ids."""
    from transformers import LlavaConfig, MistralConfig, PixtralVisionConfig

    return LlavaConfig(
        vision_config=PixtralVisionConfig(image_size=1024, patch_size=16, hidden_act="silu", **vision),
        text_config=MistralConfig(
            vocab_size=131072, bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID, **text
        ),
        image_token_index=IMAGE_ID,
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        multimodal_projector_bias=True,
        vision_feature_select_strategy="full",
        **llava,
    )


def build_random_model(
    config: LlavaConfig,
    device: torch.device,
    dtype: torch.dtype,
    *,
    seed: int = SEED,
    attn_implementation: str = "sdpa",
) -> Any:
    """A Llava model with random weights made where it will run, without a CPU copy.

    The module tree is built on the meta device (no memory, no initialisation), storage is then
    allocated on ``device`` uninitialised, and transformers' own initialiser fills it there
    (normal(0, 0.02) matrices, unit norms, zero biases, rotary tables recomputed). On a GPU the
    fill runs at memory speed: a 12.7B model is ready in seconds instead of the minutes a CPU
    initialisation plus a 25 GB copy would take.
    """
    import torch
    from transformers import LlavaForConditionalGeneration

    with torch.device("meta"):
        model = LlavaForConditionalGeneration._from_config(  # type: ignore[no-untyped-call]
            config, dtype=dtype, attn_implementation=attn_implementation
        )
    model.to_empty(device=device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        model.init_weights()
    _check_initialised(model)
    model.generation_config.bos_token_id = BOS_ID
    model.generation_config.eos_token_id = EOS_ID
    model.generation_config.pad_token_id = PAD_ID
    return model.eval()


def _check_initialised(model: Any) -> None:
    """Uninitialised storage would run silently with garbage: refuse NaN/inf anywhere."""
    import torch

    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelLoadError(
                f"random initialisation left non-finite values in {name}; this transformers version "
                "initialises differently: please report it with `pip show transformers`"
            )
