"""Qwen2.5-VL on the vllm engine, with a stand-in ``vllm`` module at the edge (vLLM needs a GPU).

The stand-in expands prompts as vLLM's Qwen2-VL processor does (read in vLLM 0.8.1, 0.26.0 and
0.33.0: each ``<|image_pad|>`` / ``<|video_pad|>`` item is ONE pad replaced by
``grid_thw.prod() // 4`` pads, the first pad found per item), with the grid made by transformers'
own processors under the ``mm_processor_kwargs`` the engine gave ``vllm.LLM``: the image processor
for an image, the video processor's ``smart_resize`` and temporal padding for a video. It reports
that expanded length as vLLM does (``len(prompt_token_ids)``), so the planned count meeting it on
every shape is the exactness the runner checks on the GPU.
"""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, NotRequired, TypedDict

import numpy as np
import pytest

from cosmos_workflow.engines import EncodedRequest, EngineConfig, SamplingParams, load_engine, vllm_qwen
from cosmos_workflow.engines import vllm as engine
from cosmos_workflow.errors import ConfigError
from cosmos_workflow.families import family_for
from cosmos_workflow.families.qwen2_5_vl import Qwen25VLFamily
from cosmos_workflow.planner import PlanSettings, plan_item
from tests.integration.test_family_qwen import PROMPT, SHAPES, _video, _video_processing_module

pytest.importorskip("transformers")


class Expander:
    """vLLM's Qwen2-VL prompt replacement, with transformers' processors making the grid."""

    def __init__(self, folder: Path, size: dict[str, int], vision: Any) -> None:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        self.images = Qwen2VLImageProcessorPil.from_pretrained(folder)
        self.videos = _video_processing_module()
        self.size = size
        self.vision = vision
        self.grids: list[tuple[str, tuple[int, int, int]]] = []

    def expand(self, prompt: dict[str, Any]) -> list[int]:
        ids = list(prompt["prompt_token_ids"])
        for modality, item in prompt.get("multi_modal_data", {}).items():
            grid = self._image_grid(item) if modality == "image" else self._video_grid(item)
            self.grids.append((modality, grid))
            pad = self.vision.image_pad if modality == "image" else self.vision.video_pad
            at = ids.index(pad)  # the first pad: an already expanded run would keep its other pads
            ids[at : at + 1] = [pad] * (math.prod(grid) // 4)
        return ids

    def _image_grid(self, image: Any) -> tuple[int, int, int]:
        processed = self.images(images=[np.asarray(image)], size=self.size, return_tensors="np")
        t, h, w = (int(v) for v in processed["image_grid_thw"][0])
        return t, h, w

    def _video_grid(self, item: Any) -> tuple[int, int, int]:
        video = item[0] if isinstance(item, tuple) else item
        frames, height, width = video.shape[:3]
        h, w = self.videos.smart_resize(
            height,
            width,
            factor=28,
            min_pixels=self.size["shortest_edge"],
            max_pixels=self.size["longest_edge"],
        )
        return -(-frames // 2), h // 14, w // 14


class FakeLLM:
    """As ``vllm.LLM``: records its arguments; ``generate`` answers with vLLM's expanded prompt."""

    instances: ClassVar[list[FakeLLM]] = []
    folder: ClassVar[Path]

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.prompts: list[dict[str, Any]] = []
        family = family_for(kwargs["model"])
        assert isinstance(family, Qwen25VLFamily)
        self.expander = Expander(Path(kwargs["model"]), kwargs["mm_processor_kwargs"]["size"], family.ids)
        self.sampling: list[Any] = []
        FakeLLM.instances.append(self)

    def generate(
        self, prompts: Sequence[dict[str, Any]], *, sampling_params: Any, use_tqdm: bool
    ) -> list[Any]:
        self.prompts += prompts
        self.sampling.append(sampling_params)
        return [self._output(p) for p in prompts]

    def _output(self, prompt: dict[str, Any]) -> Any:
        completion = types.SimpleNamespace(text="an answer", finish_reason="stop", token_ids=[9, 9])
        return types.SimpleNamespace(outputs=[completion], prompt_token_ids=self.expander.expand(prompt))


class TokensPrompt(TypedDict):
    prompt_token_ids: list[int]
    multi_modal_data: NotRequired[dict[str, Any]]


class FakeSamplingParams(types.SimpleNamespace):
    __struct_fields__ = tuple(sorted(engine.SAMPLING_FIELDS_USED))


class FakeParser:
    """vLLM 0.26.0's ``MultiModalDataParser``: a video may come with its metadata."""

    def _get_video_with_metadata(self) -> None: ...


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    module = types.ModuleType("vllm")
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = TokensPrompt  # type: ignore[attr-defined]
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.RequestOutputKind = types.SimpleNamespace(FINAL_ONLY=2)  # type: ignore[attr-defined]
    module.inputs, module.sampling_params = inputs, sampling  # type: ignore[attr-defined]
    module.LLM, module.SamplingParams = FakeLLM, FakeSamplingParams  # type: ignore[attr-defined]
    for name, value in (("vllm", module), ("vllm.inputs", inputs), ("vllm.sampling_params", sampling)):
        monkeypatch.setitem(sys.modules, name, value)
    FakeLLM.instances.clear()
    yield module


@pytest.fixture
def with_video_metadata(monkeypatch: pytest.MonkeyPatch, fake_vllm: types.ModuleType) -> None:
    parse = types.ModuleType("vllm.multimodal.parse")
    parse.MultiModalDataParser = FakeParser  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm.multimodal", types.ModuleType("vllm.multimodal"))
    monkeypatch.setitem(sys.modules, "vllm.multimodal.parse", parse)


@pytest.fixture(scope="module")
def folder(cache_dir: Path) -> Path:
    from cosmos_workflow.engines.tiny_qwen import tiny_qwen_dir

    return tiny_qwen_dir(cache_dir)


@pytest.fixture(scope="module")
def family(folder: Path) -> Qwen25VLFamily:
    chosen = family_for(str(folder))
    assert isinstance(chosen, Qwen25VLFamily)
    return chosen


def _request(family: Qwen25VLFamily, key: str, prompt: str, frames: list[np.ndarray]) -> EncodedRequest:
    encoding = family.encode(prompt, frames, pixel_values=False)
    return EncodedRequest(
        key=key,
        prompt=prompt,
        token_ids=encoding.token_ids,
        frames=frames,
        grid_thw=encoding.grid_thw,
        video=encoding.video,
        frame_interval=0.25,
    )


def _frames(width: int, height: int, count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


@pytest.mark.parametrize("metadata", [False, True], ids=["bare-video", "video-with-metadata"])
def test_vllms_expansion_gives_the_planned_count_on_every_shape(
    request: pytest.FixtureRequest,
    fake_vllm: types.ModuleType,
    folder: Path,
    family: Qwen25VLFamily,
    metadata: bool,
) -> None:
    if metadata:
        request.getfixturevalue("with_video_metadata")
    requests, plans = [], []
    for i, (width, height, count, asked, resolution, budget, prompt) in enumerate(SHAPES):
        settings = PlanSettings(
            num_frames=asked, max_resolution=resolution, max_vision_tokens=budget, max_model_len=32768
        )
        plan = plan_item(f"s{i}", prompt, _video(width, height, count), settings, family)
        assert plan.fits, plan.message
        frames = _frames(plan.width or 0, plan.height or 0, plan.frames, seed=i)
        requests.append(_request(family, f"s{i}", prompt, frames))
        plans.append(plan)
    config = EngineConfig(engine="vllm", model=str(folder), max_model_len=32768, max_images_per_prompt=16)

    generations = load_engine(config).generate(requests, SamplingParams(max_tokens=64))

    assert [g.error for g in generations] == [None] * len(SHAPES)
    assert [g.prompt_tokens for g in generations] == [p.total_tokens for p in plans]
    assert [r.num_tokens for r in requests] == [p.total_tokens for p in plans]
    llm = FakeLLM.instances[0]
    assert [(m, list(g)) for m, g in llm.expander.grids] == [
        ("video" if r.video else "image", list(r.grid_thw[0])) for r in requests if r.frames
    ]
    assert all(
        isinstance(p["multi_modal_data"]["video"], tuple) == metadata
        for p in llm.prompts
        if p.get("multi_modal_data", {}).get("video") is not None
    )


def test_requests_carry_one_pad_per_visual_and_the_planned_frames(
    fake_vllm: types.ModuleType, with_video_metadata: None, folder: Path, family: Qwen25VLFamily
) -> None:
    video = _request(family, "v", PROMPT, _frames(728, 420, 3))
    image = _request(family, "i", PROMPT, _frames(420, 728, 1))
    text = _request(family, "t", PROMPT, [])

    config = EngineConfig(engine="vllm", model=str(folder), max_images_per_prompt=3)
    load_engine(config).generate([video, image, text], SamplingParams())

    sent_video, sent_image, sent_text = FakeLLM.instances[0].prompts
    pads = (family.ids.image_pad, family.ids.video_pad)
    for sent, request, pad in (
        (sent_video, video, family.ids.video_pad),
        (sent_image, image, family.ids.image_pad),
    ):
        ids = sent["prompt_token_ids"]
        assert ids.count(pad) == 1 and not set(ids) & (set(pads) - {pad})
        assert [t for t in request.token_ids if t != pad] == [t for t in ids if t != pad]
    frames, metadata = sent_video["multi_modal_data"]["video"]
    assert frames.shape == (3, 420, 728, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, np.stack(video.frames))
    assert metadata == {
        "fps": 4.0,
        "duration": 0.75,
        "total_num_frames": 3,
        "frames_indices": [0, 1, 2],
        "video_backend": "opencv",
        "do_sample_frames": False,
    }
    assert sent_image["multi_modal_data"]["image"].size == (420, 728)
    assert sent_text == {"prompt_token_ids": list(text.token_ids)}


def test_a_qwen_checkpoint_gets_hf_arguments_and_the_processors_pixel_limits(
    fake_vllm: types.ModuleType, folder: Path, family: Qwen25VLFamily
) -> None:
    load_engine(EngineConfig(engine="vllm", model=str(folder)))
    kwargs = FakeLLM.instances[0].kwargs

    assert kwargs["tokenizer_mode"] == "auto"
    assert "load_format" not in kwargs and "config_format" not in kwargs  # no Mistral-format arguments
    assert kwargs["limit_mm_per_prompt"] == {"image": 1, "video": 1}
    limits = family.processor
    size = {"shortest_edge": limits.min_pixels, "longest_edge": limits.max_pixels}
    assert kwargs["mm_processor_kwargs"] == {"size": size}
    assert set(kwargs) <= engine.LLM_KWARGS_USED
    assert set(kwargs["mm_processor_kwargs"]) <= vllm_qwen.MM_PROCESSOR_KWARGS_USED
    assert set(size) <= vllm_qwen.SIZE_KEYS_USED


def test_dummy_weights_are_an_engine_option(fake_vllm: types.ModuleType, folder: Path) -> None:
    load_engine(EngineConfig(engine="vllm", model=str(folder), options={"load_format": "dummy"}))
    assert FakeLLM.instances[0].kwargs["load_format"] == "dummy"
    with pytest.raises(ConfigError, match="load_format"):
        load_engine(EngineConfig(engine="vllm", model=str(folder), options={"load_format": "safetensors"}))


def test_ascii_only_answers_use_the_qwen_tokenizers_ids(
    fake_vllm: types.ModuleType, folder: Path, family: Qwen25VLFamily
) -> None:
    vllm_engine = load_engine(EngineConfig(engine="vllm", model=str(folder)))
    vllm_engine.generate([_request(family, "t", PROMPT, [])], SamplingParams(ascii_only=True))

    (params,) = FakeLLM.instances[0].sampling
    assert params.allowed_token_ids == sorted(family.ascii_ids())
    assert vllm_engine.tokenizer_path is None  # no tekken.json: the openai route re-encodes Pixtral only
