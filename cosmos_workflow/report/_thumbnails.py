"""The frames a shot sent to the model, as small JPEG data URLs.

Frames are decoded with the same function the runner uses (:func:`media.read_frames`), at the
record's frame indices and size, so the page shows exactly the pixels the model saw. When the
source video is gone, the preprocessed clip (those frames, in order) is read instead. Each JPEG is
at most :data:`MAX_JPEG_BYTES`: the quality steps down first, then the picture shrinks.

A batch often sends the same frames many times (several prompts for one clip, each sending its
first two frames): :func:`all_shot_frames` decodes each distinct request once, and a picture that
several shots show (the same pixels) is encoded once. The page is the same, byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cosmos_workflow.errors import VideoError
from cosmos_workflow.media import probe_video, read_frames
from cosmos_workflow.report._shots import Shot

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

MAX_JPEG_BYTES = 20_000
#: longest side of a thumbnail; the page shows frames at half this (sharp on high-density screens)
MAX_SIDE = 480
_QUALITIES = (85, 75, 65, 55, 45)
_SHRINK = 0.75


@dataclass(frozen=True, kw_only=True)
class Thumbnail:
    """One frame as sent: its index in the video, the size sent, and the JPEG shown."""

    index: int
    width: int
    """Width sent to the model (the JPEG may be smaller)."""
    height: int
    data_url: str
    jpeg_width: int
    jpeg_height: int
    jpeg_bytes: int


@dataclass(frozen=True)
class Frames:
    """A shot's thumbnails, where they were read from, or why there are none."""

    thumbnails: list[Thumbnail]
    origin: str | None = None
    """``video`` or ``preprocessed clip``; None when no frames were sent or none could be read."""
    problem: str | None = None


@dataclass(frozen=True)
class _Jpeg:
    data_url: str
    width: int
    height: int
    size: int


class _JpegCache:
    """Each distinct picture's JPEG, made once (shared by the decoding threads). Two threads that
    meet the same new picture at once both encode it, to the same bytes."""

    def __init__(self) -> None:
        self._made: dict[tuple[tuple[int, ...], bytes], _Jpeg] = {}
        self._lock = threading.Lock()

    def jpeg(self, array: np.ndarray) -> _Jpeg:
        key = (array.shape, hashlib.blake2b(array.tobytes(), digest_size=16).digest())
        with self._lock:
            made = self._made.get(key)
        if made is None:
            made = _encode(array)
            with self._lock:
                self._made[key] = made
        return made


def all_shot_frames(
    shots: Sequence[Shot],
    base_dirs: Sequence[Path],
    map_: Callable[[Callable[[Shot], Frames], Iterable[Shot]], Iterable[Frames]] = map,
) -> list[Frames]:
    """:func:`shot_frames` of every shot, in order: each distinct request (video, preprocessed clip,
    frame indices, size) is decoded once, through ``map_`` (a thread pool's ``map``), and each
    distinct picture encoded once."""
    cache = _JpegCache()
    firsts: dict[Hashable, Shot] = {}
    for shot in shots:
        firsts.setdefault(_request(shot), shot)
    frames = map_(lambda shot: shot_frames(shot, base_dirs, cache), firsts.values())
    made = dict(zip(firsts, frames, strict=True))
    return [made[_request(shot)] for shot in shots]


def _request(shot: Shot) -> Hashable:
    """What a shot's frames depend on (the base folders are the same for the whole page)."""
    return (shot.video_path, shot.preprocessed_video, tuple(shot.frame_indices), shot.frame_size)


def shot_frames(shot: Shot, base_dirs: Sequence[Path], cache: _JpegCache | None = None) -> Frames:
    """Decode the frames ``shot`` sent; a missing or unreadable video becomes ``problem``."""
    size = shot.frame_size
    if size is None:
        return Frames([])
    try:
        arrays, origin = _decode(shot, size, base_dirs)
    except VideoError as exc:
        return Frames([], problem=f"frames not shown: {exc}")
    jpegs = _JpegCache() if cache is None else cache
    thumbs = [_thumbnail(jpegs.jpeg(a), i, size) for a, i in zip(arrays, shot.frame_indices, strict=True)]
    return Frames(thumbs, origin=origin)


def _decode(shot: Shot, size: tuple[int, int], base_dirs: Sequence[Path]) -> tuple[list[np.ndarray], str]:
    """From the source video at the recorded indices; failing that, from the preprocessed clip."""
    try:
        video = probe_video(_find(shot.video_path, base_dirs))
        return read_frames(video, shot.frame_indices, size), "video"
    except (VideoError, ValueError) as exc:
        if not shot.preprocessed_video:
            raise VideoError(str(exc)) from exc
        try:
            return _decode_clip(shot, size, base_dirs), "preprocessed clip"
        except (VideoError, ValueError) as clip_exc:
            raise VideoError(f"{exc}; and the preprocessed clip: {clip_exc}") from clip_exc


def _decode_clip(shot: Shot, size: tuple[int, int], base_dirs: Sequence[Path]) -> list[np.ndarray]:
    """The clip holds exactly the frames sent, in order, at the size sent."""
    clip = probe_video(_find(shot.preprocessed_video, base_dirs))
    return read_frames(clip, range(len(shot.frame_indices)), size)


def _find(path: str | None, base_dirs: Sequence[Path]) -> Path:
    """``path`` as given when absolute, else under the first base folder that has it."""
    if not path:
        raise VideoError("the record names no video")
    given = Path(path)
    if given.is_absolute():
        return given
    for base in base_dirs:
        if (base / given).is_file():
            return base / given
    return given  # probe_video reports it as not found


def _thumbnail(jpeg: _Jpeg, index: int, size: tuple[int, int]) -> Thumbnail:
    return Thumbnail(
        index=index,
        width=size[0],
        height=size[1],
        data_url=jpeg.data_url,
        jpeg_width=jpeg.width,
        jpeg_height=jpeg.height,
        jpeg_bytes=jpeg.size,
    )


def _encode(array: np.ndarray) -> _Jpeg:
    """The largest, best-quality JPEG of ``array`` within :data:`MAX_JPEG_BYTES`."""
    from PIL import Image

    image = Image.fromarray(array)
    scale = min(1.0, MAX_SIDE / max(image.size))
    while True:
        shown = _scaled(image, scale)
        jpeg = _smallest_fitting(shown)
        if jpeg is not None:
            break
        scale *= _SHRINK
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
    return _Jpeg(data_url=url, width=shown.width, height=shown.height, size=len(jpeg))


def _scaled(image: Image.Image, scale: float) -> Image.Image:
    if scale >= 1.0:
        return image
    from PIL import Image

    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _smallest_fitting(image: Image.Image) -> bytes | None:
    """The best-quality JPEG of ``image`` within :data:`MAX_JPEG_BYTES`, or None.

    Qualities are tried with plain encoding (fast); the chosen one is encoded once more with
    optimised Huffman tables, which is never larger.
    """
    for quality in _QUALITIES:
        if len(_jpeg(image, quality, optimize=False)) <= MAX_JPEG_BYTES:
            return _jpeg(image, quality, optimize=True)
    return None


def _jpeg(image: Image.Image, quality: int, *, optimize: bool) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=optimize)
    return buffer.getvalue()
