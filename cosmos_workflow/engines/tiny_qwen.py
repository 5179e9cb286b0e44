"""A tiny randomly initialised Qwen2.5-VL checkpoint (the architecture of Cosmos-Reason1-7B), built
offline: config, random safetensors, a small byte-level BPE tokenizer with Qwen's special tokens
and chat template, and the image processor's settings.

It exercises the Qwen2.5-VL family end to end on a CPU (transformers'
``Qwen2_5_VLForConditionalGeneration``, the real vision tower with its windowed attention and
M-RoPE), the way :mod:`cosmos_workflow.engines.tiny` does for Pixtral. Its text is random: it
proves the pipeline, not the wording. Importing this module is light; torch, transformers and
tokenizers are imported only when a build is needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cosmos_workflow.engines.tiny import ANSWER_TOKENS, SEED, cache_root, cached_build
from cosmos_workflow.errors import ModelLoadError

#: The tiny checkpoint's folder in the cache (pass it as ``--model``). Bump its version when the
#: architecture, tokenizer or seed changes, so stale caches are never reused.
TINY_QWEN_FOLDER = "tiny-random-qwen2_5_vl-v1"
REQUIRED_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
)

#: Qwen's special tokens, in id order from 0 (Qwen2.5-VL puts them after its 151k-word vocabulary;
#: here the vocabulary is small, so they come first and keep the same order).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
ENDOFTEXT_ID, IM_START_ID, IM_END_ID, VISION_START_ID, VISION_END_ID = 0, 1, 2, 3, 4
IMAGE_PAD_ID, VIDEO_PAD_ID = 6, 7
VOCAB_SIZE = 1024
#: Qwen2's pre-tokenizer split (as its tokenizer.json and transformers' Qwen2Tokenizer have it).
PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

#: Qwen2-VL's chat template (the layout of the one Qwen2.5-VL checkpoints ship): a default system
#: message, each image or video as ``<|vision_start|><|image_pad|><|vision_end|>`` in place.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Cosmos-Predict2's refiner limits (256 to 1280 merged 28-px patches), as its processor is set.
PREPROCESSOR_CONFIG: dict[str, Any] = {
    "image_processor_type": "Qwen2VLImageProcessor",
    "do_resize": True,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "do_convert_rgb": True,
    "min_pixels": 256 * 28 * 28,
    "max_pixels": 1280 * 28 * 28,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
}

#: Text the tokenizer's merges are learnt from: scene-description words, as upsampled prompts use.
_CORPUS = (
    "The video shows a car driving along a wet city street at night, lit by neon signs and "
    "street lamps. A robot arm picks up a red cube from a wooden table in a bright laboratory. "
    "The camera pans slowly across a green valley with a river, trees and mountains in the "
    "distance, under a blue sky with white clouds. People walk on the sidewalk; a truck turns "
    "left at the intersection while the traffic light changes from red to green."
)


def tiny_qwen_dir(root: Path | None = None) -> Path:
    """The tiny Qwen2.5-VL checkpoint's folder, built on first use and reused afterwards."""
    return cached_build((root or cache_root()) / TINY_QWEN_FOLDER, REQUIRED_FILES, build_tiny_qwen)


def build_tiny_qwen(folder: Path) -> None:
    """Write the whole checkpoint into ``folder`` (a fixed seed: the same weights every time)."""
    try:
        import torch
        from transformers import Qwen2_5_VLForConditionalGeneration
    except ImportError as exc:
        raise ModelLoadError(
            f"the tiny Qwen model needs transformers and torch ({exc}); "
            "run: pip install 'cosmos-workflow[hf]'"
        ) from exc
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Qwen2_5_VLForConditionalGeneration(tiny_qwen_config())
    generation = model.generation_config
    generation.bos_token_id = ENDOFTEXT_ID
    generation.eos_token_id = [IM_END_ID, ENDOFTEXT_ID]
    generation.pad_token_id = ENDOFTEXT_ID
    # As for the tiny Pixtral: random weights never pick EOS; the checkpoint's own generation
    # config makes answers end at random lengths instead of always running to max_tokens.
    generation.exponential_decay_length_penalty = (ANSWER_TOKENS, 1.1)
    model.save_pretrained(folder)
    write_tokenizer(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2))


def tiny_qwen_config() -> Any:
    """Qwen2.5-VL's layout (windowed vision tower, 2x2 patch merger, M-RoPE decoder) at toy size."""
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "fullatt_block_indexes": [1],
            "window_size": 112,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "tokens_per_second": 2,
        },
        text_config={
            "vocab_size": VOCAB_SIZE,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1_000_000.0,
                "mrope_section": [2, 3, 3],
            },
            "bos_token_id": ENDOFTEXT_ID,
            "eos_token_id": IM_END_ID,
            "pad_token_id": ENDOFTEXT_ID,
        },
        image_token_id=IMAGE_PAD_ID,
        video_token_id=VIDEO_PAD_ID,
        vision_start_token_id=VISION_START_ID,
        vision_end_token_id=VISION_END_ID,
        tie_word_embeddings=False,
    )


def write_tokenizer(folder: Path) -> None:
    """A byte-level BPE tokenizer (any text encodes) with Qwen's special tokens and chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([_CORPUS], trainer=trainer)
    for token, expected in zip(SPECIAL_TOKENS, range(len(SPECIAL_TOKENS)), strict=True):
        if tokenizer.token_to_id(token) != expected:
            raise ModelLoadError(f"the tiny Qwen tokenizer gave {token} id {tokenizer.token_to_id(token)}")
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "model_max_length": 32768,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "chat_template": CHAT_TEMPLATE,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
