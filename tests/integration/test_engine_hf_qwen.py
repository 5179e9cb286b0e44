"""The hf engine on a Qwen2.5-VL checkpoint: one batch may mix images, videos and text alone, and
each answer is the one the request gets on its own (left padding changes nothing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cosmos_workflow.engines.base import EncodedRequest, EngineConfig, SamplingParams
from cosmos_workflow.families.qwen2_5_vl import Qwen25VLFamily

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def folder(cache_dir: Path) -> Path:
    from cosmos_workflow.engines.tiny_qwen import tiny_qwen_dir

    return tiny_qwen_dir(cache_dir)


def _request(
    family: Qwen25VLFamily, key: str, prompt: str, frames: int, size: tuple[int, int]
) -> EncodedRequest:
    rng = np.random.default_rng(len(key))
    images = [rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) for _ in range(frames)]
    encoding = family.encode(prompt, images)
    return EncodedRequest(
        key=key,
        prompt=prompt,
        token_ids=encoding.token_ids,
        frames=images,
        pixel_values=encoding.pixel_values,
        grid_thw=encoding.grid_thw,
        video=encoding.video,
        frame_interval=1 / 24 if frames > 1 else None,
    )


def test_a_mixed_batch_answers_as_each_request_alone(folder: Path) -> None:
    from cosmos_workflow.engines.hf import load

    engine = load(EngineConfig(engine="hf", model=str(folder), device="cpu"))
    family = Qwen25VLFamily(folder)
    requests = [
        _request(family, "image", "A red cube on a table.", 1, (448, 448)),
        _request(family, "video", "A car at night, the camera pans left.", 3, (476, 476)),
        _request(family, "text", "Rain.", 0, (0, 0)),
        _request(family, "video2", "Trees.", 2, (448, 504)),
    ]
    greedy = SamplingParams(temperature=0.0, max_tokens=12)
    with engine:
        together = engine.generate(requests, greedy)
        alone = [engine.generate([r], greedy)[0] for r in requests]

    assert [g.text for g in together] == [g.text for g in alone]
    assert [g.prompt_tokens for g in together] == [r.num_tokens for r in requests]
    assert all(g.finish_reason in {"stop", "length"} and g.error is None for g in together)
    assert requests[1].video and not requests[0].video and requests[1].grid_thw == [(2, 34, 34)]


def test_a_batch_carries_each_kind_of_visual_and_the_videos_timing(folder: Path) -> None:
    import torch

    from cosmos_workflow.engines.hf import load

    family = Qwen25VLFamily(folder)
    requests = [
        _request(family, "video", "A car.", 3, (476, 476)),
        _request(family, "image", "A cube.", 1, (448, 448)),
        _request(family, "text", "Rain.", 0, (0, 0)),
    ]
    with load(EngineConfig(engine="hf", model=str(folder), device="cpu")) as engine:
        batch = engine._batch(requests, torch)

    assert batch["input_ids"].shape == (3, max(r.num_tokens for r in requests))
    assert batch["attention_mask"].sum(dim=1).tolist() == [r.num_tokens for r in requests]
    assert batch["image_grid_thw"].tolist() == [[1, 32, 32]]
    assert batch["video_grid_thw"].tolist() == [[2, 34, 34]]
    assert batch["pixel_values"].shape == (32 * 32, 1176)
    assert batch["pixel_values_videos"].shape == (2 * 34 * 34, 1176)
    assert batch["second_per_grid_ts"].tolist() == pytest.approx([2 / 24])


def test_ignore_eos_answers_run_to_max_tokens_and_other_options_are_named(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The benchmarks' switch: random weights stop anywhere; with it every answer has max_tokens."""
    from cosmos_workflow.engines.hf import load

    options: dict[str, str | int | float | bool | None] = {"ignore_eos": True, "compile": True}
    engine = load(EngineConfig(engine="hf", model=str(folder), device="cpu", options=options))
    family = Qwen25VLFamily(folder)
    requests = [_request(family, f"r{n}", "Rain on a street.", 2, (448, 448)) for n in range(3)]
    with engine:
        answers = engine.generate(requests, SamplingParams(temperature=0.0, max_tokens=40))
    assert [(g.completion_tokens, g.finish_reason) for g in answers] == [(40, "length")] * 3
    [warning] = [r.getMessage() for r in caplog.records if "speed options" in r.getMessage()]
    assert "compile" in warning and "ignore_eos" not in warning
