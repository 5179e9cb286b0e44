"""Qwen2.5-VL budgets are exact: for every shape, the planned count equals what transformers'
own processor and tokenizer make of the request (grids, pixel values, expanded chat tokens).

transformers' video processor imports torchvision, which this project does not install: its
module is loaded here with an empty stand-in for torchvision (only its patchify and grid
arithmetic run, both plain torch), so the video side is checked against transformers' own code.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cosmos_workflow.defaults import REFINER_SYSTEM_PROMPT
from cosmos_workflow.errors import UsageError
from cosmos_workflow.families import family_for
from cosmos_workflow.families.qwen2_5_vl import Qwen25VLFamily, smart_resize
from cosmos_workflow.media import VideoInfo
from cosmos_workflow.planner import PlanSettings, plan_item

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

PROMPT = "A robot arm picks up a red cube; the camera pans left.\n\n  Describe it in detail."

# (width, height, frames in the video, frames asked, max_resolution, max_vision_tokens, prompt)
SHAPES: list[tuple[int, int, int, int, int | str, int | None, str]] = [
    (1280, 720, 121, 2, "auto", None, PROMPT),  # 720p
    (1920, 1080, 121, 2, "auto", None, PROMPT),  # 1080p
    (3840, 2160, 121, 2, "auto", None, PROMPT),  # 4K
    (4096, 2160, 57, 4, "auto", None, PROMPT),  # DCI 4K
    (720, 1280, 121, 2, "auto", None, PROMPT),  # portrait 720p
    (1080, 1920, 121, 3, "auto", None, PROMPT),  # portrait 1080p, odd frames
    (2160, 3840, 30, 1, "auto", None, PROMPT),  # portrait 4K, one frame: an image
    (64, 48, 10, 2, "auto", None, PROMPT),  # tiny: raised to min_pixels
    (28, 28, 3, 3, "auto", None, PROMPT),  # tinier
    (33, 17, 5, 5, "auto", None, PROMPT),  # odd sides, odd frames
    (640, 360, 1, 2, "auto", None, PROMPT),  # a one-frame video: an image
    (640, 360, 7, 7, "auto", None, PROMPT),  # odd frame count
    (640, 360, 16, 16, "auto", None, PROMPT),  # many frames
    (1280, 720, 121, 5, "auto", None, PROMPT),
    (1280, 720, 121, 2, 480, None, PROMPT),  # the default long-side cap
    (1920, 1080, 121, 2, 480, None, PROMPT),
    (1920, 1080, 121, 2, 1024, None, PROMPT),
    (1000, 1000, 9, 2, "auto", None, PROMPT),  # square
    (1001, 999, 9, 1, "auto", None, PROMPT),
    (3000, 200, 9, 2, "auto", None, PROMPT),  # wide panorama
    (200, 3000, 9, 2, "auto", None, PROMPT),  # tall
    (1280, 720, 121, 2, "auto", 400, PROMPT),  # vision budget
    (1920, 1080, 121, 4, "auto", 900, PROMPT),
    (3840, 2160, 121, 8, "auto", 2000, PROMPT),
    (720, 1280, 121, 3, "auto", 300, PROMPT),
    (1280, 720, 121, 2, "auto", None, ""),  # empty prompt
    (1280, 720, 121, 2, "auto", None, "naïve café — 日本語のテキスト, 12345 émojis 🚗"),
    (1280, 720, 121, 2, "auto", None, "word " * 300),  # a long prompt
    (1280, 720, 121, 0, "auto", None, PROMPT),  # no frames asked: text only
    (1366, 768, 121, 2, "auto", None, PROMPT),
    (854, 480, 121, 2, "auto", None, PROMPT),
    (2048, 1080, 121, 6, "auto", 1500, PROMPT),
]


@pytest.fixture(scope="module")
def folder(cache_dir: Path) -> Path:
    from cosmos_workflow.engines.tiny_qwen import tiny_qwen_dir

    return tiny_qwen_dir(cache_dir)


@pytest.fixture(scope="module")
def family(folder: Path) -> Qwen25VLFamily:
    chosen = family_for(str(folder))
    assert isinstance(chosen, Qwen25VLFamily)
    return chosen


@pytest.fixture(scope="module")
def transformers_side(folder: Path) -> dict[str, Any]:
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return {
        "tokenizer": AutoTokenizer.from_pretrained(folder),
        "images": Qwen2VLImageProcessorPil.from_pretrained(folder),
        "videos": _video_processing_module(),
    }


def _video_processing_module() -> Any:
    """transformers' Qwen2-VL video processing module, imported with torchvision stood in for."""
    name = "transformers.models.qwen2_vl.video_processing_qwen2_vl"
    stand_in = {
        n: types.ModuleType(n) for n in ("torchvision", "torchvision.transforms", "torchvision.transforms.v2")
    }
    stand_in["torchvision.transforms.v2.functional"] = types.ModuleType(
        "torchvision.transforms.v2.functional"
    )
    saved = {n: sys.modules.get(n) for n in [*stand_in, name]}
    sys.modules.update(stand_in)
    try:
        sys.modules.pop(name, None)
        return importlib.import_module(name)
    finally:
        for n, module in saved.items():
            if module is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = module


def _video(width: int, height: int, frames: int) -> VideoInfo:
    return VideoInfo(
        path=Path("v.mp4"), width=width, height=height, frame_count=frames, fps=24.0, rotation=0, codec="h264"
    )


@pytest.mark.parametrize(("width", "height", "count", "asked", "resolution", "budget", "prompt"), SHAPES)
def test_the_plan_counts_what_transformers_produces(
    family: Qwen25VLFamily,
    transformers_side: dict[str, Any],
    width: int,
    height: int,
    count: int,
    asked: int,
    resolution: int | str,
    budget: int | None,
    prompt: str,
) -> None:
    settings = PlanSettings(
        num_frames=asked,
        max_resolution=resolution,
        max_vision_tokens=budget,
        max_model_len=32768,
        max_tokens=512,
    )
    plan = plan_item("x", prompt, _video(width, height, count), settings, family)
    assert plan.fits, plan.message
    if budget is not None:
        assert plan.image_tokens <= budget
    rng = np.random.default_rng(width * height + asked)
    frames = [rng.integers(0, 256, (plan.height, plan.width, 3), dtype=np.uint8) for _ in range(plan.frames)]
    ours = family.encode(prompt, frames)
    theirs = _transformers_request(transformers_side, prompt, frames)

    assert plan.total_tokens == len(theirs["ids"]) == len(ours.token_ids)
    assert ours.token_ids == theirs["ids"]
    assert plan.text_tokens + plan.image_tokens == plan.total_tokens
    assert plan.text_tokens == len(_transformers_request(transformers_side, prompt, [])["ids"])
    if frames:
        assert [tuple(g) for g in ours.grid_thw] == theirs["grid"]
        np.testing.assert_allclose(ours.pixel_values[0], theirs["pixels"], rtol=0, atol=2e-5)
        assert ours.video == (len(frames) > 1)


def _transformers_request(
    side: dict[str, Any], prompt: str, frames: list[np.ndarray], system: str | None = None
) -> dict[str, Any]:
    """The request as transformers builds it: the processor's grid and pixels, the chat template
    (with the system message, if any), the pad token repeated grid.prod() / 4 times, the
    tokenizer's ids."""
    tokenizer = side["tokenizer"]
    kind = None if not frames else "image" if len(frames) == 1 else "video"
    content: list[dict[str, str]] = [{"type": kind}] if kind else []
    chat: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    chat.append({"role": "user", "content": [*content, {"type": "text", "text": prompt}]})
    text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    out: dict[str, Any] = {}
    if kind == "image":
        processed = side["images"](images=frames, return_tensors="np")
        out["grid"] = [tuple(int(v) for v in g) for g in processed["image_grid_thw"]]
        out["pixels"] = processed["pixel_values"]
        text = text.replace("<|image_pad|>", "<|image_pad|>" * (int(np.prod(out["grid"][0])) // 4))
    elif kind == "video":
        out["grid"], out["pixels"] = _transformers_video(side, frames)
        text = text.replace("<|video_pad|>", "<|video_pad|>" * (int(np.prod(out["grid"][0])) // 4))
    out["ids"] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return out


def _transformers_video(side: dict[str, Any], frames: list[np.ndarray]) -> tuple[list[tuple[int, ...]], Any]:
    """The video processor's grid (get_num_of_video_patches) and patchify, on frames normalised as
    the image processor normalises them (resize is a no-op: planned sizes are the processor's)."""
    module = side["videos"]
    images = side["images"]
    height, width = frames[0].shape[:2]
    assert smart_resize(height, width, 28, images.size["shortest_edge"], images.size["longest_edge"]) == (
        height,
        width,
    )
    stack = np.stack(frames).astype(np.float32) / np.float32(255)
    stack = (stack - np.asarray(images.image_mean, np.float32)) / np.asarray(images.image_std, np.float32)
    video = torch.from_numpy(np.ascontiguousarray(stack.transpose(0, 3, 1, 2)))[None]
    processor = object.__new__(module.Qwen2VLVideoProcessor)
    patches, grid_t, grid_h, grid_w = processor.patchify(
        video, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    return [(grid_t, grid_h, grid_w)], patches[0].numpy()


@pytest.mark.parametrize("system", [REFINER_SYSTEM_PROMPT, "Be brief.\n\nUse ASCII — only."])
@pytest.mark.parametrize(
    ("width", "height", "count", "asked"), [(1280, 720, 121, 2), (720, 1280, 9, 1), (64, 48, 5, 0)]
)
def test_a_system_prompt_is_counted_as_transformers_encodes_it(
    folder: Path,
    transformers_side: dict[str, Any],
    system: str,
    width: int,
    height: int,
    count: int,
    asked: int,
) -> None:
    """The system message goes through the chat template's system role: the plan counts it, and
    the ids are transformers' own."""
    family = family_for(str(folder), system)
    settings = PlanSettings(num_frames=asked, max_resolution="auto", max_model_len=32768, max_tokens=512)
    plan = plan_item("x", PROMPT, _video(width, height, count), settings, family)
    frames = [np.zeros((plan.height or 0, plan.width or 0, 3), np.uint8) for _ in range(plan.frames)]
    theirs = _transformers_request(transformers_side, PROMPT, frames, system)
    assert family.encode(PROMPT, frames).token_ids == theirs["ids"]
    assert plan.total_tokens == len(theirs["ids"])
    assert plan.text_tokens == len(_transformers_request(transformers_side, PROMPT, [], system)["ids"])
    assert plan.text_tokens > family_for(str(folder)).text_tokens(PROMPT)


def test_smart_resize_is_transformers_own(transformers_side: dict[str, Any]) -> None:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as theirs

    rng = np.random.default_rng(7)
    for _ in range(2000):
        h, w = (int(v) for v in rng.integers(8, 5000, 2))
        if max(h, w) / min(h, w) > 200:
            continue
        low = int(rng.integers(28 * 28, 512 * 28 * 28))
        high = int(rng.integers(low, 2048 * 28 * 28))
        assert smart_resize(h, w, 28, low, high) == theirs(h, w, 28, low, high)


def test_720p_two_frames_cost_720_tokens_at_the_video_defaults() -> None:
    """The issue's figure: qwen-vl-utils' video limits (128 to 768 merged patches)."""
    h, w = smart_resize(720, 1280, 28, 128 * 28 * 28, 768 * 28 * 28)
    assert (2 // 2) * (h // 28) * (w // 28) == 720


@pytest.mark.parametrize("model_type", ["llama", "qwen3_vl"])
def test_an_unsupported_family_is_one_line_naming_it(tmp_path: Path, model_type: str) -> None:
    (tmp_path / "config.json").write_text(f'{{"model_type": "{model_type}"}}')

    with pytest.raises(UsageError) as raised:
        family_for(str(tmp_path))

    message = str(raised.value)
    assert "\n" not in message
    assert repr(model_type) in message and "qwen2_5_vl" in message and "llava" in message


def test_named_models_and_mistral_folders_are_pixtral(tmp_path: Path) -> None:
    (tmp_path / "params.json").write_text("{}")
    for model in (None, "tiny-random", "pixtral-12b-random", str(tmp_path)):
        assert family_for(model).name == "pixtral"


def test_a_llava_with_another_vision_tower_is_not_pixtral(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        '{"model_type": "llava", "vision_config": {"model_type": "clip_vision_model"}}'
    )

    with pytest.raises(UsageError, match="clip_vision_model"):
        family_for(str(tmp_path))


def test_engine_auto_serves_qwen_on_vllm_where_vllm_runs(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cosmos_workflow.engines import auto
    from cosmos_workflow.engines.base import EngineConfig
    from cosmos_workflow.families import family_name

    chosen: list[str] = []
    monkeypatch.setattr(auto, "choose_engine", lambda: ("vllm", "a GPU and vllm"))
    monkeypatch.setattr("cosmos_workflow.engines.load_engine", lambda config: chosen.append(config.engine))
    auto.load(EngineConfig(engine="auto", model=str(folder)))
    auto.load(EngineConfig(engine="auto", model="tiny-random"))

    assert chosen == ["vllm", "vllm"]
    assert family_name(str(folder)) == "qwen2_5_vl" and family_name("tiny-random") == "pixtral"


def test_a_plan_the_engine_found_too_long_shrinks_in_qwens_arithmetic(family: Qwen25VLFamily) -> None:
    plan = plan_item("x", PROMPT, _video(1920, 1080, 48), PlanSettings(max_resolution="auto"), family)

    smaller = plan.shrunk(family, "the engine reported the request too long")

    assert smaller is not None and smaller.width is not None and smaller.height is not None
    assert max(smaller.width, smaller.height) < max(plan.width or 0, plan.height or 0)
    assert smaller.width % 28 == 0 and smaller.height % 28 == 0
    assert smaller.image_tokens == family.vision_tokens(plan.frames, smaller.width, smaller.height)
    assert smaller.total_tokens == smaller.image_tokens + plan.text_tokens
    frames = [np.zeros((smaller.height, smaller.width, 3), np.uint8)] * plan.frames
    assert len(family.encode(PROMPT, frames, pixel_values=False).token_ids) == smaller.total_tokens


def test_a_long_side_below_the_processors_minimum_is_raised_and_said(family: Qwen25VLFamily) -> None:
    plan = plan_item("x", PROMPT, _video(1280, 720, 48), PlanSettings(max_resolution=480), family)

    assert plan.width is not None and plan.height is not None
    assert plan.width * plan.height >= family.processor.min_pixels
    assert plan.status == "adjusted"
    assert plan.changes == [f"resolution 480->{plan.width} px long side: the model's smallest frames"]
