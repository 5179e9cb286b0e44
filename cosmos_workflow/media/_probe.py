"""Probe a video: display size, frame count, frame rate, rotation and codec.

Probing opens the container and decodes the first frame. Decoding one frame costs a few
milliseconds and proves that the file really holds pictures; it is also the only place where
PyAV exposes the display matrix (phone videos store portrait clips as rotated landscape frames).
"""

from __future__ import annotations

import functools
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cosmos_workflow.errors import VideoError
from cosmos_workflow.paths import os_error_fix

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream

# Used when a container states no frame rate at all; only matters for the preprocessed clip.
DEFAULT_FPS = 24.0
_REENCODE_HINT = "re-encode it, e.g. `ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4`, or fix the path"


@dataclass(frozen=True, kw_only=True)
class VideoInfo:
    """What the planner needs to know about a video before any frame is decoded for the model."""

    path: Path
    width: int
    """Display width, after rotation is applied."""
    height: int
    """Display height, after rotation is applied."""
    frame_count: int
    """Number of frames (> 0): the container's count, or counted packet by packet when it lacks one."""
    fps: float
    rotation: int
    """Clockwise degrees (0, 90, 180 or 270) to turn a decoded frame to show it upright."""
    codec: str

    @property
    def coded_size(self) -> tuple[int, int]:
        """(width, height) of the frames as stored, before rotation."""
        if self.rotation in (90, 270):
            return self.height, self.width
        return self.width, self.height


def probe_video(path: Path) -> VideoInfo:
    """Describe ``path``; raise :class:`VideoError` naming the file and the fix if it is unusable.

    Results are cached per process by the file's identity (path, size, modification time): the
    planner, the runner and every torchrun rank's shard costing probe the same files, and a probe
    decodes a frame. A changed file is probed again; failures are never cached.
    """
    path = Path(path)
    status = _check_file(path)
    return _probe_file(path, status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _probe_file(path: Path, size: int, mtime_ns: int) -> VideoInfo:
    import av

    try:
        with open_input(path) as container:
            return _describe(path, container)
    except VideoError:
        raise
    except EOFError as exc:  # av's EOFError derives from the builtin one
        raise VideoError(
            f"Video {path} ends before its first frame (zero frames or truncated); {_REENCODE_HINT}."
        ) from exc
    except PermissionError as exc:  # a file-system problem, not an encoding one: no re-encode hint
        raise VideoError(f"Cannot read video {path}: {os_error_fix(exc)}.") from exc
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise VideoError(f"Cannot read video {path}: {exc}; {_REENCODE_HINT}.", item=None) from exc


def open_input(path: Path) -> InputContainer:
    """Open ``path`` for decoding without FFmpeg's stream-info probe decode.

    ``skip_frame=all`` applies only to the throw-away decoder that ``avformat_find_stream_info``
    runs; it cuts opening a 1080p H.264 file from ~17 ms to ~1 ms. Sizes and rotation are read
    from the first frame that the real decoder returns, so nothing is lost.
    """
    import av

    return av.open(str(path), mode="r", options={"skip_frame": "all"})


def _check_file(path: Path) -> os.stat_result:
    """Fail early, with a precise message, on the commonest problems: wrong path, a folder or a
    device or FIFO (reading one could block for ever), an unreadable or empty file."""
    try:
        status = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise VideoError(
            f"Video not found: {path}; check the video path (relative paths are not guessed)."
        ) from None
    except OSError as exc:
        raise VideoError(f"Cannot read video {path}: {os_error_fix(exc)}.") from exc
    except ValueError:  # a NUL or an unencodable character in the path
        raise VideoError(f"Video path {str(path)!r} is not a valid file name; fix the path.") from None
    if not stat.S_ISREG(status.st_mode):
        raise VideoError(
            f"Video path {path} is not a file (a folder, device or FIFO); point the item at a video file."
        )
    if status.st_size == 0:
        raise VideoError(f"Video {path} is empty (0 bytes); copy it again or remove the item's video.")
    return status


def _describe(path: Path, container: InputContainer) -> VideoInfo:
    if not container.streams.video:
        raise VideoError(
            f"{path} has no video stream (audio only, empty video track, or not a video); {_REENCODE_HINT}."
        )
    stream = container.streams.video[0]
    first = _first_frame(path, container, stream)
    frame_count = stream.frames or _count_packets(path)
    if frame_count < 1:
        raise VideoError(f"Video {path} has no frames; {_REENCODE_HINT}.")
    rotation = _rotation(first, stream)
    width, height = first.width, first.height
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(
        path=path,
        width=width,
        height=height,
        frame_count=frame_count,
        fps=_fps(stream),
        rotation=rotation,
        codec=stream.codec_context.name,
    )


def _first_frame(path: Path, container: InputContainer, stream: VideoStream) -> VideoFrame:
    """Decode frame 0; a video whose first frame cannot be decoded is treated as having no frames."""
    for frame in container.decode(stream):
        return frame
    raise VideoError(f"Video {path} has no decodable frames (zero frames or corrupt); {_REENCODE_HINT}.")


def _count_packets(path: Path) -> int:
    """Count frames without decoding (WebM/MKV store no count): one non-empty packet is one frame.

    A fresh container (opening costs ~1 ms) rather than a seek back: raw streams cannot seek.
    """
    with open_input(path) as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size > 0)


def _rotation(frame: VideoFrame, stream: VideoStream) -> int:
    """Clockwise display rotation from the display matrix, else the legacy ``rotate`` tag."""
    counter_clockwise = frame.rotation
    if counter_clockwise:
        return _snap_quarter(-counter_clockwise)
    tag = stream.metadata.get("rotate", "0")
    try:
        return _snap_quarter(float(tag))
    except ValueError:
        return 0


def _snap_quarter(degrees: float) -> int:
    """Round to the nearest quarter turn in [0, 360): only quarter turns keep pixels on the grid."""
    return (round(degrees / 90) * 90) % 360


def _fps(stream: VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return DEFAULT_FPS
