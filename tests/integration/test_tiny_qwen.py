"""The tiny random Qwen2.5-VL checkpoint: built offline, loads and generates with transformers alone."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from cosmos_workflow.engines.tiny_qwen import (
    IM_END_ID,
    IMAGE_PAD_ID,
    SPECIAL_TOKENS,
    TINY_QWEN_FOLDER,
    build_tiny_qwen,
    tiny_qwen_dir,
)

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def qwen_dir(cache_dir: Path) -> Path:
    return tiny_qwen_dir(cache_dir)


def test_the_checkpoint_is_a_qwen2_5_vl_folder_with_qwens_special_tokens(
    qwen_dir: Path, cache_dir: Path
) -> None:
    assert qwen_dir == cache_dir / TINY_QWEN_FOLDER
    config = json.loads((qwen_dir / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl"
    assert config["image_token_id"] == IMAGE_PAD_ID
    vocab = json.loads((qwen_dir / "tokenizer.json").read_text())
    added = {t["content"]: t["id"] for t in vocab["added_tokens"]}
    assert added == {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    assert "<|vision_start|>" in json.loads((qwen_dir / "tokenizer_config.json").read_text())["chat_template"]
    assert json.loads((qwen_dir / "preprocessor_config.json").read_text())["max_pixels"] == 1280 * 28 * 28


def test_the_build_is_deterministic(qwen_dir: Path, tmp_path: Path) -> None:
    build_tiny_qwen(tmp_path)

    for name in ("model.safetensors", "tokenizer.json"):
        assert (
            hashlib.sha256((tmp_path / name).read_bytes()).digest()
            == hashlib.sha256((qwen_dir / name).read_bytes()).digest()
        ), name


def test_transformers_tokenizer_and_ours_agree(qwen_dir: Path) -> None:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    theirs = AutoTokenizer.from_pretrained(qwen_dir)
    ours = Tokenizer.from_file(str(qwen_dir / "tokenizer.json"))
    for text in ["A car's  lights,\n\n 2026 naïve 日本\t<|im_end|> end", "  x\r\n y"]:
        assert theirs(text)["input_ids"] == ours.encode(text).ids
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}]
    rendered = theirs.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert rendered.endswith(
        "<|vision_start|><|image_pad|><|vision_end|>Describe.<|im_end|>\n<|im_start|>assistant\n"
    )


def test_it_loads_and_generates_from_an_image_on_cpu(qwen_dir: Path) -> None:
    import torch
    from PIL import Image
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(qwen_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(qwen_dir)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (224, 336, 3), dtype=np.uint8))
    visual = Qwen2VLImageProcessorPil.from_pretrained(qwen_dir)(images=[image], return_tensors="pt")
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}]
    text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    pads = int(visual["image_grid_thw"].prod()) // 4
    inputs = tokenizer([text.replace("<|image_pad|>", "<|image_pad|>" * pads)], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, **visual, max_new_tokens=8, do_sample=False)

    assert int((inputs["input_ids"] == IMAGE_PAD_ID).sum()) == pads
    assert out.shape[1] > inputs["input_ids"].shape[1]
    assert IM_END_ID in model.generation_config.eos_token_id
