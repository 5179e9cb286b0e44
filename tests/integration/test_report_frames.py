"""Thumbnails are the frames the model saw: right indices, right size, upright, small enough."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cosmos_workflow import media
from cosmos_workflow.media import VideoInfo, write_clip
from cosmos_workflow.report import MAX_JPEG_BYTES, Shot, Thumbnail, _thumbnails, render_report
from cosmos_workflow.report._thumbnails import MAX_SIDE, all_shot_frames, shot_frames
from tests.report_batch import textured_video
from tests.videos import frame_colour, frame_image, make_video


def shot(video: Path | str | None, indices: list[int], size: tuple[int, int], **extra: object) -> Shot:
    return Shot(
        name="s",
        original_prompt="p",
        upsampled_prompt="u",
        status="ok",
        video_path=str(video) if video else None,
        frame_indices=indices,
        width=size[0],
        height=size[1],
        **extra,  # type: ignore[arg-type]
    )


def picture(thumb: Thumbnail) -> np.ndarray:
    prefix = "data:image/jpeg;base64,"
    assert thumb.data_url.startswith(prefix)
    data = base64.b64decode(thumb.data_url[len(prefix) :])
    assert len(data) == thumb.jpeg_bytes <= MAX_JPEG_BYTES
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def centre(image: np.ndarray) -> tuple[int, ...]:
    h, w, _ = image.shape
    return tuple(int(v) for v in image[h * 3 // 4, w // 2])


def close(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def test_the_recorded_frames_at_the_recorded_size(tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.mp4", 320, 180, frames=6)
    frames = shot_frames(shot(video, [1, 4], (160, 96)), [tmp_path])
    assert frames.origin == "video" and frames.problem is None
    assert [(t.index, t.width, t.height) for t in frames.thumbnails] == [(1, 160, 96), (4, 160, 96)]
    for thumb in frames.thumbnails:
        image = picture(thumb)
        assert image.shape == (96, 160, 3)
        assert close(centre(image), frame_colour(thumb.index))
        assert min(image[2, 2]) > 200  # the white corner is top-left: upright


def test_a_portrait_video_is_shown_upright(tmp_path: Path) -> None:
    video = make_video(tmp_path / "r.mp4", 320, 176, frames=2, rotation=90)
    [thumb] = shot_frames(shot(video, [0], (176, 320)), [tmp_path]).thumbnails
    image = picture(thumb)
    assert image.shape == (320, 176, 3) and close(centre(image), frame_colour(0))


def test_relative_paths_resolve_against_the_base_folders(tmp_path: Path) -> None:
    (tmp_path / "videos").mkdir()
    make_video(tmp_path / "videos" / "v.mp4", 64, 64, frames=2)
    frames = shot_frames(shot("videos/v.mp4", [0, 1], (64, 64)), [tmp_path / "elsewhere", tmp_path])
    assert frames.origin == "video" and len(frames.thumbnails) == 2


def test_big_detailed_frames_stay_under_the_size_limit(tmp_path: Path) -> None:
    video = textured_video(tmp_path / "hd.mp4", seed=1, size=(1280, 720), frames=2)
    frames = shot_frames(shot(video, [0, 1], (1280, 720)), [tmp_path])
    for thumb in frames.thumbnails:
        assert (thumb.width, thumb.height) == (1280, 720)  # the size sent is reported as sent
        assert max(thumb.jpeg_width, thumb.jpeg_height) <= MAX_SIDE and thumb.jpeg_bytes <= MAX_JPEG_BYTES
        assert thumb.jpeg_width / thumb.jpeg_height == pytest.approx(1280 / 720, rel=0.01)


def test_the_preprocessed_clip_stands_in_for_a_missing_video(tmp_path: Path) -> None:
    clip = write_clip([frame_image(i, 96, 64) for i in (2, 5)], tmp_path / "clip.mp4", fps=24)
    frames = shot_frames(shot(tmp_path / "gone.mp4", [2, 5], (96, 64), preprocessed_video=str(clip)), [])
    assert frames.origin == "preprocessed clip"
    assert [t.index for t in frames.thumbnails] == [2, 5]
    assert [close(centre(picture(t)), frame_colour(t.index)) for t in frames.thumbnails] == [True, True]


def test_no_video_is_a_note_on_the_card_not_a_failure(tmp_path: Path) -> None:
    gone = shot(tmp_path / "gone.mp4", [0, 1], (64, 64), preprocessed_video=str(tmp_path / "clip.mp4"))
    frames = shot_frames(gone, [tmp_path])
    assert frames.thumbnails == [] and frames.problem is not None
    assert "gone.mp4" in frames.problem and "clip.mp4" in frames.problem
    html = render_report([gone], title="t", source="s")
    assert "frames not shown: Video not found" in html and "<img" not in html


def test_text_only_has_no_frames_and_no_problem() -> None:
    frames = shot_frames(shot(None, [], (0, 0)), [])
    assert frames == type(frames)([])


def test_shots_that_send_the_same_frames_are_decoded_once_and_shown_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several prompts for one clip: each distinct request is decoded once, each picture encoded
    once, and every shot's frames are what it would get alone."""
    video = textured_video(tmp_path / "v.mp4", seed=3, size=(320, 180), frames=4)
    other = make_video(tmp_path / "w.mp4", 64, 64, frames=2)
    shots = [
        shot(video, [0, 1], (160, 96)),
        shot(video, [1, 2], (160, 96)),  # frame 1 again, in another request
        shot(video, [0, 1], (160, 96)),
        shot(video, [0, 1], (96, 64)),  # another size
        shot(other, [0, 1], (64, 64)),
        shot(tmp_path / "gone.mp4", [0], (64, 64)),
        shot(None, [], (0, 0)),
        shot(video, [0, 1], (160, 96)),
    ]
    alone = [shot_frames(s, [tmp_path]) for s in shots]
    reads: list[tuple[str, tuple[int, ...]]] = []
    encodes: list[tuple[int, ...]] = []
    read_frames, encode = media.read_frames, _thumbnails._encode

    def counted_read(info: VideoInfo, indices: Sequence[int], size: tuple[int, int]) -> list[np.ndarray]:
        reads.append((info.path.name, tuple(indices)))
        return read_frames(info, indices, size)

    def counted_encode(array: np.ndarray) -> object:
        encodes.append(array.shape)
        return encode(array)

    monkeypatch.setattr(_thumbnails, "read_frames", counted_read)
    monkeypatch.setattr(_thumbnails, "_encode", counted_encode)

    together = all_shot_frames(shots, [tmp_path])

    assert together == alone
    assert sorted(reads) == sorted(
        [("v.mp4", (0, 1)), ("v.mp4", (1, 2)), ("v.mp4", (0, 1)), ("w.mp4", (0, 1))]
    )  # (0, 1) at 160x96 once and at 96x64 once
    assert len(encodes) == 3 + 2 + 2  # frames 0, 1, 2 at 160x96; 0, 1 at 96x64; w's two frames
