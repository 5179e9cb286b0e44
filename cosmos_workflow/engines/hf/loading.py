"""Checkpoint resolution and loading for the hf engine; the full-size random build."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cosmos_workflow.engines.base import EngineConfig
from cosmos_workflow.engines.hf.common import HFBase
from cosmos_workflow.engines.hf.compile_cache import use_compile_cache
from cosmos_workflow.engines.hf.device import free_cuda, load_pretrained, pick_device
from cosmos_workflow.engines.hf.engine import HFEngine
from cosmos_workflow.engines.hf.kernels import chunk_decoder_tokens, chunk_vision_tower, use_gqa_decode
from cosmos_workflow.engines.hf.options import HFOptions
from cosmos_workflow.errors import ModelLoadError
from cosmos_workflow.families import model_type_of
from cosmos_workflow.families.qwen2_5_vl import Qwen25VLFamily
from cosmos_workflow.versions import HF_INSTALL_HINT, require_transformers

logger = logging.getLogger("cosmos_workflow")

TINY_MODEL = "tiny-random"

INSTALL_HINT = HF_INSTALL_HINT


def load(config: EngineConfig) -> HFBase:
    """Load the checkpoint named by ``config.model``.

    'tiny-random' builds (once) and loads the tiny model; 'pixtral-12b-random' builds Pixtral-12B's
    full-size architecture with random weights directly on the GPU (speed measurements only).
    """
    from cosmos_workflow.engines.tiny import RANDOM_12B_MODEL

    require_transformers("the hf engine")
    if config.model == RANDOM_12B_MODEL:
        return _load_random_12b(config)
    checkpoint = resolve_checkpoint(config.model)
    if model_type_of(checkpoint) == Qwen25VLFamily.name:
        from cosmos_workflow.engines.hf.qwen import load_qwen

        return load_qwen(config, checkpoint)
    torch, llava = _import_backend()
    device = pick_device(config.device)
    hint = "; point --model at a Hugging Face Pixtral checkpoint folder (config.json + safetensors)"
    model = load_pretrained(llava, checkpoint, device, torch, kind="Llava/Pixtral", hint=hint)
    return finish_load(config, model, checkpoint)


def _load_random_12b(config: EngineConfig) -> HFEngine:
    """Pixtral-12B's architecture with random bf16 weights, made on the GPU (no checkpoint)."""
    from cosmos_workflow.engines.tiny import RANDOM_12B_MODEL, build_random_model, pixtral_12b_config

    torch, _ = _import_backend()
    device = pick_device(config.device)
    if device.type != "cuda":
        raise ModelLoadError(
            f"{RANDOM_12B_MODEL} is Pixtral-12B's full-size architecture (12.7B parameters, 25 GB in "
            f"bf16) and is built only on a CUDA GPU, not on {device}; use --model {TINY_MODEL} on a "
            "CPU, or run on a machine with a GPU of 40 GB or more"
        )
    try:
        model = build_random_model(pixtral_12b_config(), device, torch.bfloat16, attn_implementation="sdpa")
    except torch.cuda.OutOfMemoryError as exc:
        free_cuda(torch)
        raise ModelLoadError(
            f"{RANDOM_12B_MODEL} (25 GB of weights) does not fit in {device} memory; free the GPU "
            "or pick another with --device"
        ) from exc
    return finish_load(config, model, None)


def finish_load(config: EngineConfig, model: Any, checkpoint: Path | None) -> HFEngine:
    device = model.device
    options = HFOptions.parse(config.options, cuda=device.type == "cuda")
    if options.gqa_decode:
        use_gqa_decode(model, attention=options.decode_attention)
    if device.type == "cuda" and options.compile:
        use_compile_cache(options.compile_cache)
    chunk_vision_tower(model, options.vision_chunk)
    chunk_decoder_tokens(model, options.prefill_chunk, options.fuse_prefill)
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
