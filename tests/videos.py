"""Generate small test videos with PyAV at test time (no binary fixtures in the repository).

Each frame ``i`` is a solid colour ``frame_colour(i)`` with a white top-left corner block, so a
test can check both which frame came back (colour) and which way up it is (corner).
The lead imports the fixtures below into ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

# Distinct, saturated colours: they survive lossy encoding and chroma subsampling.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (255, 0, 255),
    (0, 255, 255),
    (128, 0, 0),
    (0, 128, 0),
)
CORNER = (255, 255, 255)
CONTAINERS = {"libx264": "mp4", "mpeg4": "mp4", "libvpx-vp9": "webm", "mjpeg": "avi"}


def frame_colour(index: int) -> tuple[int, int, int]:
    """The solid colour of frame ``index`` (cycles through :data:`PALETTE`)."""
    return PALETTE[index % len(PALETTE)]


def frame_image(index: int, width: int, height: int) -> np.ndarray:
    """RGB frame ``index``: solid colour, white block over the top-left quarter-by-quarter corner."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = frame_colour(index)
    image[: max(1, height // 4), : max(1, width // 4)] = CORNER
    return image


def make_video(
    path: Path,
    width: int,
    height: int,
    frames: int = 4,
    codec: str = "libx264",
    fps: int = 24,
    rotation: int = 0,
    pix_fmt: str | None = None,
    gop: int | None = None,
    faststart: bool = False,
    texture: int | None = None,
) -> Path:
    """Encode a test video and return its path.

    ``texture``: a seed; each frame is then a block texture of its own (:func:`textured_frame`),
    so clips of different seeds differ in every pixel block (without it, clips of one size are
    identical: a benchmark's model would see one picture, and a prefix cache would share it).

    ``faststart`` puts the MP4 index first, so a truncated copy still opens (and fails later).
    ``rotation`` is the clockwise turn a player applies to show the video upright (the legacy
    ``rotate`` tag convention, and ``VideoInfo.rotation``); it is written as a display matrix
    with PyAV's ``VideoStream.set_display_rotation`` (which takes counter-clockwise degrees).
    """
    path = Path(path)
    fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt or fmt
        if gop is not None:
            stream.gop_size = gop
        if rotation:
            if not hasattr(stream, "set_display_rotation"):
                # the Cosmos image's PyAV 14.2 (scripts/ci/version_matrix.sh) cannot write one; its
                # reading of rotation (frame.rotation) is the same call as in .venv's PyAV
                pytest.skip(f"PyAV {av.__version__} cannot write a display matrix for a rotated test video")
            stream.set_display_rotation(-rotation)
        for index in range(frames):
            image = (
                frame_image(index, width, height)
                if texture is None
                else textured_frame(texture, index, width, height)
            )
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def textured_frame(seed: int, index: int, width: int, height: int, block: int = 16) -> np.ndarray:
    """RGB frame ``index`` of the clip ``seed``: random colour blocks of ``block`` pixels."""
    rng = np.random.default_rng((seed, index))
    blocks = rng.integers(0, 256, (-(-height // block), -(-width // block), 3), dtype=np.uint8)
    return np.ascontiguousarray(blocks.repeat(block, axis=0).repeat(block, axis=1)[:height, :width])


def make_audio(path: Path, seconds: float = 0.5) -> Path:
    """An audio-only file (AAC in MP4): a container PyAV opens but with no video stream."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=44100)
        assert isinstance(stream, av.AudioStream)
        samples = int(44100 * seconds)
        tone = np.sin(np.linspace(0, 440 * 2 * np.pi * seconds, samples)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = 44100
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def make_zero_frame_video(path: Path, width: int = 64, height: int = 64) -> Path:
    """An MP4 with a video stream declared but no frame in it."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=24)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        container.start_encoding()  # writes the header although no packet follows
    return path


def has_encoder(codec: str) -> bool:
    return codec in av.codecs_available


@pytest.fixture
def video_factory(tmp_path: Path) -> Callable[..., Path]:
    """``video_factory(name, width, height, **make_video_kwargs)`` -> path under ``tmp_path``."""

    def factory(name: str, width: int, height: int, **kwargs: object) -> Path:
        return make_video(tmp_path / name, width, height, **kwargs)  # type: ignore[arg-type]

    return factory


@pytest.fixture
def small_video(tmp_path: Path) -> Path:
    """A 320x180 H.264 MP4 of 4 frames."""
    return make_video(tmp_path / "small.mp4", 320, 180, frames=4)


@pytest.fixture
def bad_videos(tmp_path: Path) -> dict[str, Path]:
    """One file per failure kind: missing, empty, text, truncated, audio_only, zero_frames."""
    good = make_video(tmp_path / "good.mp4", 320, 180, frames=24)
    text = tmp_path / "text.mp4"
    text.write_text("this is not a video\n" * 20)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    return {
        "missing": tmp_path / "missing.mp4",
        "empty": empty,
        "text": text,
        "truncated": truncated,
        "audio_only": make_audio(tmp_path / "audio.m4a"),
        "zero_frames": make_zero_frame_video(tmp_path / "zero.mp4"),
    }
