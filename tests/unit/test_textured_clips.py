"""The benchmarks' generated clips: each seed its own picture (tests/videos.textured_frame)."""

from __future__ import annotations

import numpy as np

from tests.videos import textured_frame


def test_each_clip_and_frame_is_a_picture_of_its_own() -> None:
    first = textured_frame(0, 0, 100, 40)
    assert first.shape == (40, 100, 3) and first.dtype == np.uint8
    assert np.array_equal(first, textured_frame(0, 0, 100, 40))  # the same seed draws the same frame
    assert not np.array_equal(first, textured_frame(1, 0, 100, 40))  # another clip
    assert not np.array_equal(first, textured_frame(0, 1, 100, 40))  # another frame of the clip
    assert len(np.unique(first.reshape(-1, 3), axis=0)) > 10  # blocks, not one colour
