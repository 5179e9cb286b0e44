"""Real videos, generated with PyAV at test time: probe, decode, resize, rotate, write clips."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cosmos_workflow.errors import VideoError
from cosmos_workflow.media import VideoInfo, probe_video, read_frames, select_frame_indices, write_clip
from tests.videos import (
    CONTAINERS,
    CORNER,
    frame_colour,
    has_encoder,
    make_audio,
    make_video,
    make_zero_frame_video,
)

TOLERANCE = 40  # lossy codecs move solid colours by a few levels; palette colours differ by >= 128


def centre(image: np.ndarray) -> np.ndarray:
    """Mean colour of the middle of the picture: the white corner block never reaches it."""
    height, width = image.shape[:2]
    rows = slice(height * 3 // 8, max(height * 5 // 8, height * 3 // 8 + 1))
    cols = slice(width * 3 // 8, max(width * 5 // 8, width * 3 // 8 + 1))
    mean: np.ndarray = image[rows, cols].reshape(-1, 3).mean(axis=0)
    return mean


def assert_colour(image: np.ndarray, colour: tuple[int, int, int]) -> None:
    assert np.abs(centre(image) - np.array(colour)).max() < TOLERANCE, (centre(image), colour)


def corner_is_white(image: np.ndarray, corner: str) -> bool:
    """True when the 1/8-by-1/8 block at ``corner`` ("tl", "tr", "bl", "br") is white."""
    height, width = image.shape[:2]
    rows = slice(0, height // 8) if corner[0] == "t" else slice(height - height // 8, height)
    cols = slice(0, width // 8) if corner[1] == "l" else slice(width - width // 8, width)
    return bool(np.abs(image[rows, cols].reshape(-1, 3).mean(axis=0) - CORNER).max() < TOLERANCE)


CASES = [
    ("libx264", 320, 180),
    ("libx264", 1280, 720),
    ("libx264", 1920, 1080),
    ("libx264", 720, 1280),
    ("mpeg4", 640, 360),
    ("mpeg4", 322, 182),
    ("mjpeg", 320, 240),
    ("libvpx-vp9", 320, 180),
]


@pytest.mark.parametrize(("codec", "width", "height"), CASES)
def test_probe_and_read_every_frame_by_colour(tmp_path: Path, codec: str, width: int, height: int) -> None:
    if not has_encoder(codec):
        pytest.skip(f"this PyAV build has no {codec} encoder")
    path = make_video(tmp_path / f"v.{CONTAINERS[codec]}", width, height, frames=6, codec=codec)
    info = probe_video(path)
    assert (info.width, info.height, info.frame_count, info.rotation) == (width, height, 6, 0)
    assert info.fps == pytest.approx(24.0)
    size = (max(16, width // 32 * 16), max(16, height // 32 * 16))
    frames = read_frames(info, range(6), size)
    assert [f.shape for f in frames] == [(size[1], size[0], 3)] * 6
    assert all(f.dtype == np.uint8 for f in frames)
    for index, frame in enumerate(frames):
        assert_colour(frame, frame_colour(index))
        assert corner_is_white(frame, "tl") and not corner_is_white(frame, "br")


def test_webm_frame_count_is_counted_when_the_container_has_none(tmp_path: Path) -> None:
    if not has_encoder("libvpx-vp9"):
        pytest.skip("no vp9 encoder")
    info = probe_video(make_video(tmp_path / "v.webm", 64, 48, frames=13, codec="libvpx-vp9"))
    assert (info.frame_count, info.codec) == (13, "vp9")


def test_odd_sizes_are_probed_exactly_and_resized(tmp_path: Path) -> None:
    path = make_video(tmp_path / "odd.mp4", 321, 181, codec="libx264", pix_fmt="yuv444p")
    info = probe_video(path)
    assert (info.width, info.height) == (321, 181)
    (frame,) = read_frames(info, [2], (320, 176))
    assert frame.shape == (176, 320, 3)
    assert_colour(frame, frame_colour(2))


@pytest.mark.parametrize(
    ("rotation", "corner"),
    [(0, "tl"), (90, "tr"), (180, "br"), (270, "bl")],
)
def test_rotation_turns_frames_upright(tmp_path: Path, rotation: int, corner: str) -> None:
    path = make_video(tmp_path / "r.mp4", 320, 176, frames=2, rotation=rotation)
    info = probe_video(path)
    assert info.rotation == rotation
    expected = (176, 320) if rotation in (90, 270) else (320, 176)
    assert (info.width, info.height) == expected
    size = (expected[0] // 2, expected[1] // 2)
    frames = read_frames(info, [0, 1], size)
    assert frames[0].shape == (size[1], size[0], 3)
    for index, frame in enumerate(frames):
        assert_colour(frame, frame_colour(index))
        assert [c for c in ("tl", "tr", "bl", "br") if corner_is_white(frame, c)] == [corner]


def test_rotation_agrees_with_opencv(tmp_path: Path) -> None:
    """An independent reader (OpenCV auto-orientation) shows the same upright picture."""
    cv2 = pytest.importorskip("cv2")
    path = make_video(tmp_path / "r.mp4", 320, 176, frames=1, rotation=90)
    (ours,) = read_frames(probe_video(path), [0], (176, 320))
    capture = cv2.VideoCapture(str(path))
    ok, bgr = capture.read()
    capture.release()
    assert ok
    theirs = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    assert theirs.shape == ours.shape
    assert np.abs(theirs.astype(int) - ours.astype(int)).mean() < 8


def test_one_frame_video(tmp_path: Path) -> None:
    info = probe_video(make_video(tmp_path / "one.mp4", 160, 96, frames=1))
    assert info.frame_count == 1
    indices = select_frame_indices(info.frame_count, 2, "uniform")
    (frame,) = read_frames(info, indices, (160, 96))
    assert_colour(frame, frame_colour(0))


@pytest.mark.parametrize("gop", [1, 12, 250])
def test_uniform_frames_of_a_long_video(tmp_path: Path, gop: int) -> None:
    """Far-apart frames come back right whether the reader seeks (short GOP) or decodes through."""
    info = probe_video(make_video(tmp_path / "long.mp4", 64, 48, frames=200, gop=gop))
    assert info.frame_count == 200
    indices = select_frame_indices(info.frame_count, 5, "uniform")
    frames = read_frames(info, indices, (64, 48))
    for index, frame in zip(indices, frames, strict=True):
        assert_colour(frame, frame_colour(index))


def test_upscaling_small_video(tmp_path: Path) -> None:
    info = probe_video(make_video(tmp_path / "tiny.mp4", 32, 32, frames=1))
    (frame,) = read_frames(info, [0], (64, 64))
    assert frame.shape == (64, 64, 3)
    assert_colour(frame, frame_colour(0))


@pytest.mark.parametrize(("width", "height", "size"), [(16, 4000, (16, 2000)), (4000, 16, (2000, 16))])
def test_extreme_aspect_probes_reads_and_writes(
    tmp_path: Path, width: int, height: int, size: tuple[int, int]
) -> None:
    info = probe_video(make_video(tmp_path / "thin.mp4", width, height, frames=2))
    assert (info.width, info.height) == (width, height)
    frames = read_frames(info, [0, 1], size)
    assert frames[1].shape == (size[1], size[0], 3)
    clip = write_clip(frames, tmp_path / "thin_clip.mp4", info.fps)
    assert (probe_video(clip).width, probe_video(clip).height) == size


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "not found"),
        ("empty", "empty"),
        ("text", "Cannot read video"),
        ("audio_only", "no video stream"),
        ("zero_frames_mp4", "no video stream"),
        ("zero_frames_mkv", "before its first frame"),
        ("directory", "not a file"),
    ],
)
def test_bad_files_raise_video_error_naming_file_and_fix(tmp_path: Path, kind: str, message: str) -> None:
    path = tmp_path / f"{kind}.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a video\n" * 20)
    elif kind == "audio_only":
        path = make_audio(tmp_path / "audio.m4a")
    elif kind == "zero_frames_mp4":
        make_zero_frame_video(path)
    elif kind == "zero_frames_mkv":
        path = make_zero_frame_video(tmp_path / "zero.mkv")
    elif kind == "directory":
        path.mkdir()
    with pytest.raises(VideoError, match=message) as caught:
        probe_video(path)
    text = str(caught.value)
    assert path.name in text
    assert any(hint in text for hint in ("re-encode", "check", "copy", "point"))


@pytest.mark.parametrize("faststart", [False, True])
def test_truncated_mp4_is_an_item_error_not_a_crash(tmp_path: Path, faststart: bool) -> None:
    good = make_video(tmp_path / "good.mp4", 320, 180, frames=48, faststart=faststart, gop=12)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(VideoError, match="truncated"):
        info = probe_video(truncated)
        read_frames(info, select_frame_indices(info.frame_count, 2, "uniform"), (160, 96))


def test_truncated_mp4_still_gives_its_opening_frames(tmp_path: Path) -> None:
    good = make_video(tmp_path / "good.mp4", 320, 180, frames=48, faststart=True, gop=12)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    info = probe_video(truncated)
    frames = read_frames(info, [0, 1], (160, 96))
    assert_colour(frames[1], frame_colour(1))


def test_bad_indices_are_programming_errors(tmp_path: Path) -> None:
    info = probe_video(make_video(tmp_path / "v.mp4", 64, 48, frames=4))
    with pytest.raises(ValueError, match="increasing"):
        read_frames(info, [1, 0], (64, 48))
    with pytest.raises(ValueError, match="outside"):
        read_frames(info, [4], (64, 48))
    assert read_frames(info, [], (64, 48)) == []


def test_file_deleted_after_probe_is_a_video_error(tmp_path: Path) -> None:
    path = make_video(tmp_path / "v.mp4", 64, 48)
    info = probe_video(path)
    path.unlink()
    with pytest.raises(VideoError, match=r"v\.mp4"):
        read_frames(info, [0], (64, 48))


def test_write_clip_round_trips_frames(tmp_path: Path) -> None:
    info = probe_video(make_video(tmp_path / "src.mp4", 1280, 720, frames=3))
    frames = read_frames(info, [0, 1, 2], (480, 272))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    clip = write_clip(frames, out_dir / "item_abc.mp4", info.fps)
    assert clip == out_dir / "item_abc.mp4"
    assert [p.name for p in out_dir.iterdir()] == ["item_abc.mp4"]  # no temp file left
    written = probe_video(clip)
    assert (written.width, written.height, written.frame_count) == (480, 272, 3)
    assert written.codec in ("h264", "mpeg4")
    again = read_frames(written, [0, 1, 2], (480, 272))
    for index, frame in enumerate(again):
        assert_colour(frame, frame_colour(index))


def test_write_clip_replaces_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    target.write_text("old")
    frame = np.full((32, 48, 3), 200, dtype=np.uint8)
    write_clip([frame], target, 24.0)
    assert probe_video(target).frame_count == 1


def test_write_clip_creates_the_output_folder(tmp_path: Path) -> None:
    frame = np.zeros((32, 32, 3), dtype=np.uint8)
    clip = write_clip([frame], tmp_path / "new" / "deeper" / "clip.mp4", 24.0)
    assert probe_video(clip).frame_count == 1


def test_write_clip_where_a_file_blocks_the_folder_is_a_video_error(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file, not a folder")
    frame = np.zeros((32, 32, 3), dtype=np.uint8)
    with pytest.raises(VideoError, match="write permission"):
        write_clip([frame], tmp_path / "blocker" / "clip.mp4", 24.0)


def test_write_clip_refuses_bad_frames(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        write_clip([], tmp_path / "c.mp4", 24.0)
    with pytest.raises(ValueError, match="one shape"):
        write_clip(
            [np.zeros((32, 32, 3), np.uint8), np.zeros((16, 32, 3), np.uint8)], tmp_path / "c.mp4", 24.0
        )
    with pytest.raises(ValueError, match="even"):
        write_clip([np.zeros((31, 32, 3), np.uint8)], tmp_path / "c.mp4", 24.0)
    assert list(tmp_path.iterdir()) == []


def test_video_info_is_frozen(tmp_path: Path) -> None:
    info = probe_video(make_video(tmp_path / "v.mp4", 64, 48))
    assert isinstance(info, VideoInfo)
    with pytest.raises(AttributeError):
        info.width = 1  # type: ignore[misc]


@pytest.mark.parametrize("codec", ["libx264", "mpeg4", "libvpx-vp9", "mjpeg"])
def test_seeking_and_decoding_through_give_the_same_frames(
    tmp_path: Path, codec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seek shortcut (taken for far-apart frames) must return exactly what plain decoding does."""
    if not has_encoder(codec):
        pytest.skip(f"no {codec} encoder")
    from cosmos_workflow.media import _frames

    path = make_video(tmp_path / f"v.{CONTAINERS[codec]}", 96, 64, frames=120, codec=codec, gop=10)
    info = probe_video(path)
    indices = select_frame_indices(info.frame_count, 4, "uniform")
    seeking = read_frames(info, indices, (96, 64))
    monkeypatch.setattr(_frames, "_SEEK_MIN_SKIP", 10**9)  # never seek: decode every frame in order
    through = read_frames(info, indices, (96, 64))
    assert all(np.array_equal(a, b) for a, b in zip(seeking, through, strict=True))
    for index, frame in zip(indices, seeking, strict=True):
        assert_colour(frame, frame_colour(index))


@pytest.mark.parametrize("suffix", ["ts", "mkv", "mov", "h264"])
def test_other_containers_including_unseekable_raw_h264(tmp_path: Path, suffix: str) -> None:
    info = probe_video(make_video(tmp_path / f"v.{suffix}", 96, 64, frames=40, gop=8))
    assert (info.width, info.height, info.frame_count) == (96, 64, 40)
    indices = select_frame_indices(info.frame_count, 3, "uniform")
    for index, frame in zip(indices, read_frames(info, indices, (48, 32)), strict=True):
        assert_colour(frame, frame_colour(index))


# issue 15: special files and permission errors are named as what they are


def test_case1_fifo_or_device_as_video_is_refused_without_reading(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)  # opening it for reading would block for ever
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(
            VideoError, match=rf"Video path {path} is not a file \(a folder, device or FIFO\)"
        ):
            probe_video(path)


#: a child that has lost root's right to read and search anything (the exec'd program's capabilities
#: are cut to the bounding set): permission bits hold for it as for a normal user
NO_READ_ANY = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]

PROBE_PROGRAM = """import sys
from pathlib import Path
from cosmos_workflow.errors import VideoError
from cosmos_workflow.media import probe_video
try:
    probe_video(Path(sys.argv[1]))
except VideoError as error:
    print(error)
"""


def probe_error(video: Path) -> str:
    """``probe_video``'s error for ``video``, read with a normal user's permissions."""
    if os.geteuid() != 0:
        with pytest.raises(VideoError) as caught:
            probe_video(video)
        return str(caught.value)
    if shutil.which("setpriv") is None:
        pytest.skip("root reads any file and setpriv (util-linux) is missing to drop that right")
    command = [*NO_READ_ANY, sys.executable, "-c", PROBE_PROGRAM, str(video)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_case15_unreadable_video_hint_is_about_permissions_not_encoding(tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.mp4", 64, 48, frames=2)
    video.chmod(0o000)
    message = probe_error(video)
    assert "permission denied; fix its permissions" in message
    assert str(video) in message and "re-encode" not in message
