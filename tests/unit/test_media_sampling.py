"""Frame selection: which indices reach the model."""

from __future__ import annotations

from itertools import pairwise

import pytest

from cosmos_workflow.errors import ConfigError, VideoError
from cosmos_workflow.media import select_frame_indices


def test_first_takes_the_opening_frames() -> None:
    assert select_frame_indices(120, 2, "first") == [0, 1]
    assert select_frame_indices(120, 5, "first") == [0, 1, 2, 3, 4]


def test_uniform_includes_first_and_last() -> None:
    assert select_frame_indices(120, 2, "uniform") == [0, 119]
    assert select_frame_indices(120, 5, "uniform") == [0, 30, 60, 89, 119]
    assert select_frame_indices(9, 3, "uniform") == [0, 4, 8]


@pytest.mark.parametrize("sampling", ["first", "uniform"])
def test_count_is_capped_at_frame_count(sampling: str) -> None:
    assert select_frame_indices(1, 2, sampling) == [0]  # type: ignore[arg-type]
    assert select_frame_indices(3, 10, sampling) == [0, 1, 2]  # type: ignore[arg-type]


def test_one_uniform_frame_is_the_first() -> None:
    assert select_frame_indices(50, 1, "uniform") == [0]


@pytest.mark.parametrize("frame_count", [1, 2, 3, 7, 24, 100, 1001])
@pytest.mark.parametrize("num_frames", [1, 2, 3, 4, 8, 16, 2000])
def test_uniform_is_sorted_unique_and_pinned(frame_count: int, num_frames: int) -> None:
    indices = select_frame_indices(frame_count, num_frames, "uniform")
    assert indices == sorted(set(indices))
    assert len(indices) == min(num_frames, frame_count)
    assert indices[0] == 0
    if len(indices) > 1:
        assert indices[-1] == frame_count - 1
        gaps = [b - a for a, b in pairwise(indices)]
        assert max(gaps) - min(gaps) <= 1  # evenly spread


def test_zero_frames_asked_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--num-frames"):
        select_frame_indices(10, 0, "first")


def test_unknown_sampling_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--frame-sampling"):
        select_frame_indices(10, 2, "last")  # type: ignore[arg-type]


def test_empty_video_is_a_video_error() -> None:
    with pytest.raises(VideoError, match="0 frames"):
        select_frame_indices(0, 2, "first")
