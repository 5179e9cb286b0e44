"""Decode the chosen frames, turn them upright and resize them in memory.

Frames are decoded in order and decoding stops after the last one needed, so the default
(first two frames) touches only the opening of the file. When the chosen frames are far apart
(``uniform`` sampling over a long clip) and the container has an index, the reader seeks to the
keyframe before each frame instead of decoding everything in between.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING

from cosmos_workflow.errors import VideoError
from cosmos_workflow.media._probe import VideoInfo, open_input
from cosmos_workflow.paths import os_error_fix

if TYPE_CHECKING:
    import numpy as np
    from av.container import InputContainer
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream

# Seek only when it skips at least this many frames: a seek plus a keyframe decode costs about as
# much as decoding a handful of inter frames.
_SEEK_MIN_SKIP = 12
# Packets read past the last wanted frame so that B-frame reordering cannot change its timestamp.
_REORDER_MARGIN = 32


def read_frames(info: VideoInfo, indices: Sequence[int], size: tuple[int, int]) -> list[np.ndarray]:
    """Return RGB uint8 arrays of shape ``(size[1], size[0], 3)`` for ``indices``, in that order.

    ``indices`` must be strictly increasing and below ``info.frame_count``; ``size`` is the
    display ``(width, height)`` the planner chose.
    """
    wanted = _check_request(info, indices, size)
    if not wanted:
        return []
    import av

    try:
        decoded = _decode_wanted(info, wanted)
    except PermissionError as exc:
        raise VideoError(f"Cannot read video {info.path}: {os_error_fix(exc)}.") from exc
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"Cannot decode video {info.path}: {exc}; re-encode it as H.264 MP4.") from exc
    missing = [i for i in wanted if i not in decoded]
    if missing:
        raise VideoError(
            f"Video {info.path} ended before frame {missing[0]} (the file states {info.frame_count} frames;"
            " it may be truncated); re-encode it or use --frame-sampling first."
        )
    return [_to_array(decoded[i], info.rotation, size) for i in wanted]


def _check_request(info: VideoInfo, indices: Sequence[int], size: tuple[int, int]) -> list[int]:
    wanted = list(indices)
    if any(b <= a for a, b in pairwise(wanted)):
        raise ValueError(f"frame indices must be strictly increasing, got {wanted}")
    if wanted and (wanted[0] < 0 or wanted[-1] >= info.frame_count):
        raise ValueError(f"frame indices {wanted} outside 0..{info.frame_count - 1} for {info.path}")
    if size[0] < 1 or size[1] < 1:
        raise ValueError(f"target size must be positive, got {size}")
    return wanted


def _decode_wanted(info: VideoInfo, wanted: list[int]) -> dict[int, VideoFrame]:
    """Decode the wanted frames, seeking only where it clearly pays.

    If the seek shortcut cannot be used (unseekable stream, odd timestamps, a frame missed), the
    frames are decoded from the start and matched by counting, the slow but always-right way.
    """
    if any(b - a > _SEEK_MIN_SKIP for a, b in pairwise([-1, *wanted])):
        found = _try_seeking(info, wanted)
        if len(found) == len(wanted):
            return found
    with open_input(info.path) as container:
        return dict(_decode_in_order(container, container.streams.video[0], wanted))


def _try_seeking(info: VideoInfo, wanted: list[int]) -> dict[int, VideoFrame]:
    """Frames found by seeking; empty or partial when the shortcut does not apply."""
    import av

    try:
        with open_input(info.path) as container:
            stream = container.streams.video[0]
            order = _presentation_pts(container, stream, wanted[-1] + 1)
            if order is None:
                return {}
            return dict(_decode_seeking(container, stream, wanted, order))
    except av.FFmpegError:
        return {}  # the plain decode that follows reports real damage with a clear message


def _decode_in_order(
    container: InputContainer, stream: VideoStream, wanted: list[int]
) -> Iterator[tuple[int, VideoFrame]]:
    targets = set(wanted)
    for index, frame in enumerate(container.decode(stream)):
        if index in targets:
            yield index, frame
        if index >= wanted[-1]:
            return


def _presentation_pts(
    container: InputContainer, stream: VideoStream, count: int
) -> list[tuple[int, bool]] | None:
    """``(pts, is_keyframe)`` of the first ``count`` frames in display order, by demuxing only.

    Demuxing reads packets without decoding, a small cost next to decoding. A margin of packets
    past ``count`` covers B-frame reordering. Returns None when timestamps are missing or
    repeated: then frames can only be matched by counting.
    """
    packets = []
    for packet in container.demux(stream):
        if packet.size > 0:
            packets.append((packet.pts, packet.is_keyframe))
        if len(packets) >= count + _REORDER_MARGIN:
            break
    container.seek(0, stream=stream, backward=True)
    if any(pts is None for pts, _ in packets):
        return None
    order = sorted((pts, key) for pts, key in packets if pts is not None)
    if len({pts for pts, _ in order}) != len(order):
        return None
    return order[:count]


def _decode_seeking(
    container: InputContainer, stream: VideoStream, wanted: list[int], order: list[tuple[int, bool]]
) -> Iterator[tuple[int, VideoFrame]]:
    """Seek to the keyframe before each far-away frame; match frames by timestamp."""
    position = 0  # index of the next frame the current decoder pass would output
    frames = container.decode(stream)
    for target in wanted:
        if target >= len(order):
            return
        keyframe = _keyframe_before(order, target)
        if keyframe - position >= _SEEK_MIN_SKIP:
            container.seek(order[keyframe][0], stream=stream, backward=True)
            frames = container.decode(stream)
        found = _find_pts(frames, order[target][0])
        if found is None:
            return
        yield target, found
        position = target + 1


def _keyframe_before(order: list[tuple[int, bool]], target: int) -> int:
    for index in range(target, -1, -1):
        if order[index][1]:
            return index
    return 0


def _find_pts(frames: Iterator[VideoFrame], pts: int) -> VideoFrame | None:
    for frame in frames:
        if frame.pts == pts:
            return frame
        if frame.pts is not None and frame.pts > pts:
            return None
    return None


def _to_array(frame: VideoFrame, rotation: int, size: tuple[int, int]) -> np.ndarray:
    """Resize (area averaging when shrinking) to the coded size of ``size``, then turn upright."""
    import numpy as np

    width, height = size if rotation in (0, 180) else (size[1], size[0])
    shrinking = width <= frame.width and height <= frame.height
    rgb = frame.reformat(
        width=width, height=height, format="rgb24", interpolation="AREA" if shrinking else "BICUBIC"
    ).to_ndarray()
    if rotation:
        # rotation is clockwise; np.rot90 turns counter-clockwise for positive k.
        rgb = np.ascontiguousarray(np.rot90(rgb, k=-(rotation // 90)))
    return rgb
