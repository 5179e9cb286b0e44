"""Which frames of a video reach the model.

The seed always sent the first two frames. ``first`` keeps that behaviour (and is the cheapest:
only the opening frames are decoded); ``uniform`` spreads the frames over the whole clip, first
and last included, for videos whose content changes over time.
"""

from __future__ import annotations

from typing import Literal

from cosmos_workflow.errors import ConfigError, VideoError

FrameSampling = Literal["first", "uniform"]


def select_frame_indices(frame_count: int, num_frames: int, sampling: FrameSampling) -> list[int]:
    """Return sorted, unique frame indices; ``num_frames`` is capped at ``frame_count``.

    A 1-frame video asked for 2 frames gives ``[0]``: the budget counts the frames actually
    sent, so capping is safer than repeating a frame.
    """
    if num_frames < 1:
        raise ConfigError(f"--num-frames must be at least 1, got {num_frames}; pass --num-frames 2.")
    if frame_count < 1:
        raise VideoError(f"A video with {frame_count} frames has nothing to sample; check the video file.")
    count = min(num_frames, frame_count)
    if sampling == "first":
        return list(range(count))
    if sampling == "uniform":
        return _uniform(frame_count, count)
    raise ConfigError(f"Unknown frame sampling {sampling!r}; pass --frame-sampling first or uniform.")


def _uniform(frame_count: int, count: int) -> list[int]:
    """Evenly spaced indices from 0 to ``frame_count - 1``; unique because ``count <= frame_count``."""
    if count == 1:
        return [0]
    last = frame_count - 1
    # Integer arithmetic with round-half-up keeps the spacing exact and the ends pinned.
    return [(i * last * 2 + (count - 1)) // (2 * (count - 1)) for i in range(count)]
