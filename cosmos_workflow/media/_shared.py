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
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from cosmos_workflow.media._clip import copy_clip, write_clip
from cosmos_workflow.media._frames import read_frames

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
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._frames: OrderedDict[FrameKey, Future[tuple[np.ndarray, ...]]] = OrderedDict()
        self._bytes: dict[FrameKey, int] = {}
        self._clips: dict[tuple[FrameKey, float], Path] = {}
        #: how many requests were answered from frames decoded for another (tests, logs)
        self.reused = 0

    def read(self, info: VideoInfo, indices: Sequence[int], size: tuple[int, int]) -> list[np.ndarray]:
        """:func:`read_frames`, decoded once for every caller that asks for the same frames."""
        key = frame_key(info, indices, size)
        if self.max_bytes <= 0 or key is None:
            return read_frames(info, indices, size)
        with self._lock:
            future = self._frames.get(key)
            owner = future is None
            if future is None:
                future = self._frames[key] = Future()
            else:
                self._frames.move_to_end(key)
                self.reused += 1
        if not owner:
            return list(future.result())  # the decoder's error too, when its decode failed
        try:
            frames = read_frames(info, indices, size)
        except BaseException as exc:
            with self._lock:
                self._frames.pop(key, None)  # a later request tries again
            future.set_exception(exc)
            raise
        for frame in frames:
            frame.flags.writeable = False  # one request's arrays are every such request's
        future.set_result(tuple(frames))
        self._keep(key, sum(f.nbytes for f in frames))
        return list(frames)

    def write_clip(
        self, frames: Sequence[np.ndarray], path: Path, fps: float, info: VideoInfo, indices: Sequence[int]
    ) -> Path:
        """:func:`write_clip` of these frames (``info``'s at ``indices``), or a copy of the clip
        written for them already in this run (atomically, as write_clip writes)."""
        size = (int(frames[0].shape[1]), int(frames[0].shape[0])) if frames else (0, 0)
        key = frame_key(info, indices, size)
        written = self._clips.get((key, fps)) if key is not None and self.max_bytes > 0 else None
        if written is not None and written.is_file():
            return copy_clip(written, path)
        clip = write_clip(frames, path, fps)
        if key is not None:
            with self._lock:
                self._clips[(key, fps)] = clip
        return clip

    def _keep(self, key: FrameKey, size: int) -> None:
        """Count the frames just decoded; the least recently used finished ones go while over budget."""
        with self._lock:
            if key not in self._frames:
                return
            self._bytes[key] = size
            total = sum(self._bytes.values())
            for old in list(self._frames):
                if total <= self.max_bytes:
                    break
                if old in self._bytes:
                    total -= self._bytes.pop(old)
                    del self._frames[old]


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
