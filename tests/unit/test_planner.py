"""The exact token budget: DOMAIN.md's table, and the planner's choices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cosmos_workflow.families.pixtral import PixtralFamily
from cosmos_workflow.media import VideoInfo
from cosmos_workflow.planner import MIN_LONG_SIDE, PlanSettings, plan_item, snap_size
from cosmos_workflow.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def tok():
    return PixtralFamily(load_tokenizer())


def video(width: int, height: int, frames: int = 48) -> VideoInfo:
    return VideoInfo(
        path=Path("v.mp4"), width=width, height=height, frame_count=frames, fps=24.0, rotation=0, codec="h264"
    )


# DOMAIN.md section 2: two frames plus the prompt "Test"
DOMAIN_TABLE = [
    ((1920, 1080), (1024, 576), 2340, 4684),
    ((1280, 720), (1024, 576), 2340, 4684),
    ((960, 540), (960, 544), 2074, 4152),
    ((854, 480), (864, 480), 1650, 3304),
    ((640, 360), (640, 368), 943, 1890),
    ((320, 180), (320, 192), 252, 508),
]


@pytest.mark.parametrize(("source", "fed", "per_image", "total"), DOMAIN_TABLE)
def test_stock_plan_reproduces_domain_table(tok, source, fed, per_image, total) -> None:
    settings = PlanSettings(preprocess=False)
    plan = plan_item("x", "Test", video(*source), settings, tok)
    assert plan.image_tokens == 2 * per_image
    assert plan.total_tokens == total
    assert plan.fits == (total + 300 <= 4096)
    assert plan.status == ("ok" if plan.fits else "overflow")
    # the formula agrees with what the tokenizer really produces, and the image it really feeds
    frame = np.zeros((source[1], source[0], 3), np.uint8)
    encoding = tok.encode("Test", [frame, frame])
    assert len(encoding.token_ids) == total
    assert encoding.pixel_values[0].shape[1:] == (fed[1], fed[0])


def test_done_when_1280x720_stock_overflows_and_default_fits(tok) -> None:
    stock = plan_item("x", "Test", video(1280, 720), PlanSettings(preprocess=False), tok)
    assert stock.total_tokens == 4684 and not stock.fits
    assert "4684" in stock.message and "4096" in stock.message
    default = plan_item("x", "Test", video(1280, 720), PlanSettings(), tok)
    assert default.fits and default.status == "ok"
    assert (default.width, default.height, default.frames) == (480, 272, 2)
    assert default.max_model_len - default.total_tokens >= 300


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080), (720, 1280), (999, 333), (4000, 300), (17, 17)])
@pytest.mark.parametrize("resolution", [480, 1024, "auto", 64])
def test_planned_count_equals_encoded_count(tok, size, resolution) -> None:
    plan = plan_item("x", "A city at night", video(*size), PlanSettings(max_resolution=resolution), tok)
    assert plan.fits
    assert plan.width % 16 == 0 and plan.height % 16 == 0
    frames = [np.zeros((plan.height, plan.width, 3), np.uint8)] * plan.frames
    assert len(tok.encode("A city at night", frames).token_ids) == plan.total_tokens
    assert plan.total_tokens + plan.max_tokens <= plan.max_model_len


def test_snap_keeps_aspect_on_the_grid() -> None:
    assert snap_size(1280, 720, 480) == (480, 272)
    assert snap_size(720, 1280, 480) == (272, 480)
    assert snap_size(1920, 1080, 480) == (480, 272)
    assert snap_size(4000, 100, 480) == (480, 16)


def test_never_upscales(tok) -> None:
    plan = plan_item("x", "Test", video(320, 180), PlanSettings(max_resolution=1024), tok)
    assert (plan.width, plan.height) == (320, 176)
    assert plan.status == "ok"


def test_lowers_resolution_first_then_frames(tok) -> None:
    settings = PlanSettings(max_resolution=1024, num_frames=4, max_model_len=4096)
    plan = plan_item("x", "Test", video(1920, 1080), settings, tok)
    assert plan.fits and plan.frames == 4  # resolution gave way, frames kept
    assert max(plan.width, plan.height) < 1024
    assert plan.status == "adjusted" and any("resolution 1024->" in c for c in plan.changes)
    # a context so small that even the floor resolution cannot hold two frames
    tight = PlanSettings(max_resolution=480, num_frames=2, max_model_len=360, max_tokens=300)
    plan = plan_item("x", "Test", video(1280, 720), tight, tok)
    assert plan.fits and plan.frames == 1
    assert any(c.startswith("frames 2->1") for c in plan.changes)
    assert plan.total_tokens + 300 <= 360


def test_auto_takes_the_largest_that_fits(tok) -> None:
    plan = plan_item("x", "Test", video(1920, 1080), PlanSettings(max_resolution="auto"), tok)
    bigger = snap_size(1920, 1080, max(plan.width, plan.height) + 16)
    assert plan.total_tokens + 300 <= 4096
    assert 2 * tok.tokenizer.image_tokens(*bigger) + plan.text_tokens + 300 > 4096


def test_frames_capped_by_video_length(tok) -> None:
    plan = plan_item("x", "Test", video(640, 360, frames=1), PlanSettings(num_frames=2), tok)
    assert plan.frames == 1 and plan.frame_indices == [0]
    assert "only 1" in plan.message


def test_uniform_sampling_spreads_indices(tok) -> None:
    plan = plan_item(
        "x", "Test", video(640, 360, frames=49), PlanSettings(num_frames=3, frame_sampling="uniform"), tok
    )
    assert plan.frame_indices == [0, 24, 48]


def test_prompt_too_long_is_an_error_never_truncated(tok) -> None:
    prompt = "word " * 5000
    plan = plan_item("x", prompt, video(640, 360), PlanSettings(), tok)
    assert plan.status == "error" and not plan.fits
    assert "shorten the prompt" in plan.message and str(plan.text_tokens) in plan.message


def test_no_room_for_any_frame_is_an_error(tok) -> None:
    prompt = "word " * 3780
    plan = plan_item("x", prompt, video(640, 360), PlanSettings(), tok)
    assert plan.text_tokens + 300 <= 4096
    assert plan.status == "error" and f"{MIN_LONG_SIDE} px" in plan.message


def test_extreme_aspect_is_a_clear_error(tok) -> None:
    plan = plan_item("x", "Test", video(16, 4000), PlanSettings(), tok)
    assert plan.status == "error" and "crop" in plan.message


def test_text_only_when_no_video(tok) -> None:
    plan = plan_item("x", "Test", None, PlanSettings(), tok, video_problem="video missing")
    assert plan.status == "text_only" and plan.fits and plan.total_tokens == 4
    assert plan.message == "video missing"


@pytest.mark.parametrize(
    ("sizes", "prompt"),
    [
        ([(480, 272), (480, 272)], "A red car turns left at a crossing."),
        ([(272, 480)], "Portrait, one frame: ünïcödé and [INST] look-alikes </s>"),
        ([(1920, 1080), (33, 17)], ""),
        ([(1024, 1024), (16, 16), (1040, 18), (7, 2000)], "four frames, some capped at 1024 px"),
        ([(320, 176)] * 3, "x " * 500),
    ],
)
def test_image_runs_laid_out_from_sizes_equal_the_image_encoders(
    sizes: list[tuple[int, int]], prompt: str
) -> None:
    """The fast encode (no pixel values, for vLLM) gives exactly the ids of mistral-common's encoder."""
    tok = load_tokenizer()
    frames = [np.zeros((h, w, 3), dtype=np.uint8) for w, h in sizes]
    fast = tok.encode(prompt, frames, pixel_values=False)
    full = tok.encode(prompt, frames)
    assert fast.token_ids == full.token_ids
    assert fast.pixel_values == [] and len(full.pixel_values) == len(sizes)
