"""Write the preprocessed clip that a result names (``preprocessed_video``).

The seed wrote every clip to one fixed temporary name, so concurrent jobs overwrote each other.
Here each item gets its own name inside a folder the user chose, derived from the item's name
and request key, and the file appears only once complete (temp file + ``os.replace``).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from cosmos_workflow.errors import VideoError
from cosmos_workflow.paths import safe_file_name

if TYPE_CHECKING:
    import numpy as np

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_KEY_CHARS = 12


def clip_path(output_dir: Path, name: str, key: str) -> Path:
    """``output_dir / "<safe name>_<key[:12]>.mp4"``, guaranteed to lie inside ``output_dir``."""
    short_key = key[:_KEY_CHARS]
    if not short_key or _UNSAFE.search(short_key) or "." in short_key:
        raise ValueError(f"request key must be alphanumeric, got {key!r}")
    path = Path(output_dir) / f"{safe_file_name(name)}_{short_key}.mp4"
    if path.resolve().parent != Path(output_dir).resolve():
        raise ValueError(f"clip path {path} escapes the output folder {output_dir}")
    return path


def write_clip(frames: Sequence[np.ndarray], path: Path, fps: float) -> Path:
    """Encode RGB ``frames`` (all one size, even sides) as an MP4 at ``path``, atomically."""
    height, width = _check_frames(frames)
    return _atomically(Path(path), lambda temp: _encode(frames, temp, width, height, fps))


def copy_clip(source: Path, path: Path) -> Path:
    """A copy of the clip ``source`` (written for another request with the same frames) at
    ``path``, atomically."""
    return _atomically(Path(path), lambda temp: shutil.copyfile(source, temp))


def _atomically(path: Path, produce: Callable[[str], object]) -> Path:
    """``produce`` writes the clip to a temporary file beside ``path``, which then replaces ``path``."""
    import av

    try:
        temp_name = _temp_beside(path)
    except OSError as exc:
        raise VideoError(
            f"Cannot create preprocessed clip {path}: {exc}; check the output folder and write permission."
        ) from exc
    try:
        produce(temp_name)
        os.replace(temp_name, path)
    except (av.FFmpegError, OSError, ValueError) as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise VideoError(
            f"Cannot write preprocessed clip {path}: {exc}; check free space and write permission there."
        ) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    return path


def _temp_beside(path: Path) -> str:
    """A fresh hidden file in the clip's own folder (created if needed), so os.replace is atomic.

    Created with mode 0666 less the umask, like every other file we write (``tempfile.mkstemp``
    would make it 0600: unreadable by another user, or by the host after a root container)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        temp_name = str(path.with_name(f".{path.name}.{secrets.token_hex(4)}.part"))
        try:
            handle = os.open(temp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(handle)
        return temp_name


def _check_frames(frames: Sequence[np.ndarray]) -> tuple[int, int]:
    if not frames:
        raise ValueError("write_clip needs at least one frame")
    shape = frames[0].shape
    if len(shape) != 3 or shape[2] != 3 or any(f.shape != shape for f in frames):
        raise ValueError(f"frames must all be RGB arrays of one shape, got {[f.shape for f in frames]}")
    if shape[0] % 2 or shape[1] % 2:
        raise ValueError(f"frame sides must be even for yuv420p, got {shape[1]}x{shape[0]}")
    return int(shape[0]), int(shape[1])


def _encode(frames: Sequence[np.ndarray], target: str, width: int, height: int, fps: float) -> None:
    import av

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(24)
    with av.open(target, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=rate)
        assert isinstance(stream, av.VideoStream)  # a video codec name gives a video stream
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "crf": "20"}
        for array in frames:
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
