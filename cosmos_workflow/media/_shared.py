"""Frames decoded once for every request of a run that wants the same ones (prompt variants).

Several prompts on one video (a spec's prompt variants, the benchmarks' 64 requests a clip) plan
the same frames at the same size: each request used to decode the video, resize its frames and
write its clip again. :class:`SharedFrames` decodes them once and hands the same (read-only)
arrays to every request that asks, and writes the clip once: the others get a copy of the file
under their own name. It lives for one run, is safe to use from the preprocessing threads (a
request that asks while another decodes the same frames waits for them), and keeps at most
``max_bytes`` of frames, the least recently used going first.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cosmos_workflow.media._clip import copy_clip, write_clip
from cosmos_workflow.media._frames import read_frames
from cosmos_workflow.memo import OnceEach

if TYPE_CHECKING:
    import numpy as np

    from cosmos_workflow.media._probe import VideoInfo

#: frames kept for later requests of a run: 256 MiB holds 340 pairs of 480x272 frames, 30 of the
#: largest a 4,096-token plan allows
DEFAULT_BYTES = 256 * 2**20

FrameKey = tuple[str, int, int, tuple[int, ...], tuple[int, int]]


class SharedFrames:
    """Each distinct (video, frames, size) decoded once a run; each such clip encoded once."""

    def __init__(self, max_bytes: int = DEFAULT_BYTES) -> None:
        self._frames: OnceEach[FrameKey, tuple[np.ndarray, ...]] = OnceEach(
            max_bytes, lambda frames: sum(f.nbytes for f in frames)
        )
        self._clips: dict[FrameKey, Path] = {}
        self._lock = threading.Lock()

    @property
    def reused(self) -> int:
        """How many requests got frames decoded for another (tests, logs)."""
        return self._frames.reused

    def read(self, info: VideoInfo, indices: Sequence[int], size: tuple[int, int]) -> list[np.ndarray]:
        """:func:`read_frames`, decoded once for every caller that asks for the same frames."""
        return self.frames_and_clip(info, indices, size)[0]

    def frames_and_clip(
        self, info: VideoInfo, indices: Sequence[int], size: tuple[int, int], clip: Path | None = None
    ) -> tuple[list[np.ndarray], Path | None]:
        """:meth:`read`'s frames and, given a ``clip`` path, their clip there: written by
        :func:`write_clip`, or copied (atomically too) from the clip written for the same frames
        earlier in this run."""
        key = frame_key(info, indices, size)
        if key is None:
            frames = read_frames(info, indices, size)
        else:
            frames = list(self._frames.get(key, lambda: _read_only(read_frames(info, indices, size))))
        if clip is None:
            return frames, None
        written = self._clips.get(key) if key is not None and self._frames.max_bytes > 0 else None
        if written is not None and written.is_file():
            return frames, copy_clip(written, clip)
        clip = write_clip(frames, clip, info.fps)
        if key is not None:
            with self._lock:
                self._clips[key] = clip
        return frames, clip


def _read_only(frames: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """The frames, made read-only: one request's arrays are every such request's (and the
    tokenizer, seeing read-only frames, normalises each once: ``Tokenizer.encode``)."""
    for frame in frames:
        frame.flags.writeable = False
    return tuple(frames)


def frame_key(info: VideoInfo, indices: Sequence[int], size: tuple[int, int]) -> FrameKey | None:
    """The video file as it is now (path, size, modification time), the frames and their size;
    None when the file cannot be looked at (the decode then says why)."""
    path = Path(info.path)
    try:
        stat = path.stat()
        resolved = str(path.resolve())
    except OSError:
        return None
    frames = tuple(int(i) for i in indices)
    return (resolved, stat.st_size, stat.st_mtime_ns, frames, (int(size[0]), int(size[1])))
