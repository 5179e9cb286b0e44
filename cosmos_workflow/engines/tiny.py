"""A tiny randomly initialised Pixtral-architecture checkpoint, built offline and cached on disk.

No model weights can be downloaded where this project is tested, so the transformers engine,
the runner and the CLI are exercised end to end on this miniature: the real Llava/Pixtral code
paths, the real Pixtral tokenizer (copied in from mistral-common), random weights. Its text is
random: it proves the pipeline, not the wording.

Importing this module is light; torch and transformers are imported only when a build is needed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cosmos_workflow.errors import ModelLoadError
from cosmos_workflow.tokenizer import TEKKEN_FILE, bundled_tokenizer_path

if TYPE_CHECKING:
    from transformers import LlavaConfig

#: Bump when the architecture or seed changes, so stale caches are never reused.
TINY_MODEL_NAME = "tiny-random-pixtral-v2"
ANSWER_TOKENS = 48
CACHE_ENV = "COSMOS_WORKFLOW_CACHE"
SEED = 20240911
#: Files that exist only in a finished build (the folder is renamed into place whole).
REQUIRED_FILES = ("config.json", "model.safetensors", TEKKEN_FILE)

# Token ids of Pixtral's tokenizer (tekken_240911.json).
BOS_ID, EOS_ID, IMAGE_ID, PAD_ID = 1, 2, 10, 11


def cache_root() -> Path:
    """Where cosmos-workflow caches built artefacts: ``$COSMOS_WORKFLOW_CACHE`` or ~/.cache."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "cosmos-workflow"


def tiny_model_dir(root: Path | None = None) -> Path:
    """The tiny model's folder, built on first use and reused afterwards.

    Safe against concurrent builders: each builds in its own temporary folder beside the target
    and renames it into place; whoever loses the race discards its copy and uses the winner's.
    """
    target = (root or cache_root()) / TINY_MODEL_NAME
    if _is_complete(target):
        return target
    if target.exists():
        _discard_stale(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{TINY_MODEL_NAME}-", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any other
        _build(staging)
        _publish(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in REQUIRED_FILES)


def _discard_stale(target: Path) -> None:
    """Move an incomplete folder (a manual edit or an old layout) aside so it can be rebuilt."""
    aside = target.with_name(f".{target.name}-stale-{os.getpid()}")
    try:
        os.replace(target, aside)
    except OSError:
        return  # another process moved or replaced it first
    shutil.rmtree(aside, ignore_errors=True)


def _publish(staging: Path, target: Path) -> None:
    try:
        os.replace(staging, target)
    except OSError as exc:
        if _is_complete(target):
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
    from transformers import LlavaConfig, MistralConfig, PixtralVisionConfig

    vision = PixtralVisionConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=1024,
        patch_size=16,
    )
    text = MistralConfig(
        vocab_size=131072,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=8192,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=IMAGE_ID,
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        multimodal_projector_bias=True,
        vision_feature_select_strategy="full",
    )
