"""Frames that several requests of a run want, decoded once (``media.SharedFrames``), on real videos."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from cosmos_workflow.errors import VideoError
from cosmos_workflow.media import SharedFrames, VideoInfo, probe_video, read_frames
from tests.videos import make_video

SIZE = (96, 64)
FRAMES = (0, 2)


@pytest.fixture
def video(tmp_path: Path) -> VideoInfo:
    return probe_video(make_video(tmp_path / "clip.mp4", 160, 96, frames=6, texture=3))


def test_the_same_frames_are_decoded_once_and_are_those_of_a_plain_decode(video: VideoInfo) -> None:
    shared = SharedFrames()
    first = shared.read(video, FRAMES, SIZE)
    again = shared.read(video, FRAMES, SIZE)
    plain = read_frames(video, FRAMES, SIZE)
    assert shared.reused == 1
    assert all(a is b for a, b in zip(first, again, strict=True))  # the same arrays, not copies
    assert all(np.array_equal(a, p) for a, p in zip(first, plain, strict=True))
    with pytest.raises(ValueError, match="read-only"):
        first[0][0, 0, 0] = 1  # one request cannot change another's frames


def test_other_frames_or_another_size_are_decoded_apart(video: VideoInfo) -> None:
    shared = SharedFrames()
    shared.read(video, FRAMES, SIZE)
    other_frames = shared.read(video, (1, 3), SIZE)
    other_size = shared.read(video, FRAMES, (48, 32))
    assert shared.reused == 0
    assert other_size[0].shape == (32, 48, 3)
    assert np.array_equal(other_frames[0], read_frames(video, (1, 3), SIZE)[0])


def test_threads_that_ask_at_once_wait_for_one_decode(video: VideoInfo) -> None:
    shared = SharedFrames()
    start = threading.Barrier(8)
    got: list[list[np.ndarray]] = []

    def ask() -> None:
        start.wait()
        got.append(shared.read(video, FRAMES, SIZE))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert shared.reused == 7
    assert all(frames[0] is got[0][0] for frames in got)


def test_a_video_changed_since_is_decoded_again(tmp_path: Path, video: VideoInfo) -> None:
    shared = SharedFrames()
    before = shared.read(video, FRAMES, SIZE)
    make_video(video.path, 160, 96, frames=6, texture=4)  # another picture, same name and size
    os.utime(video.path, ns=(1, 1))  # and a modification time of its own, whatever the clock
    after = shared.read(video, FRAMES, SIZE)
    assert shared.reused == 0
    assert not np.array_equal(before[0], after[0])


def test_frames_over_the_budget_are_not_kept(video: VideoInfo) -> None:
    one = 2 * SIZE[0] * SIZE[1] * 3  # two frames
    tight, off = SharedFrames(max_bytes=one - 1), SharedFrames(max_bytes=0)
    for shared in (tight, off):
        shared.read(video, FRAMES, SIZE)
        shared.read(video, FRAMES, SIZE)
        assert shared.reused == 0
    roomy = SharedFrames(max_bytes=one)  # holds one pair: the older goes when another comes
    roomy.read(video, FRAMES, SIZE)
    roomy.read(video, (1, 3), SIZE)
    roomy.read(video, FRAMES, SIZE)
    assert roomy.reused == 0
    roomy.read(video, FRAMES, SIZE)
    assert roomy.reused == 1


def test_a_video_that_fails_to_decode_fails_every_request_and_is_not_kept(tmp_path: Path) -> None:
    source = make_video(tmp_path / "broken.mp4", 160, 96, frames=6)
    info = probe_video(source)
    source.write_bytes(source.read_bytes()[: source.stat().st_size // 3])  # truncated after the probe
    shared = SharedFrames()
    for _ in range(2):
        with pytest.raises(VideoError, match=r"broken\.mp4"):
            shared.read(info, FRAMES, SIZE)
    assert shared.reused == 0


def test_a_clip_of_frames_written_before_is_copied_and_written_anew_once_gone(
    tmp_path: Path, video: VideoInfo
) -> None:
    shared = SharedFrames()

    def clip(name: str) -> Path:
        written = shared.frames_and_clip(video, FRAMES, SIZE, clip=tmp_path / "clips" / name)[1]
        assert written is not None
        return written

    first = clip("a.mp4")
    second = clip("b.mp4")
    assert second == tmp_path / "clips" / "b.mp4"
    assert second.read_bytes() == first.read_bytes()
    assert not second.samefile(first)  # a file of its own: changing one leaves the other
    assert [p.name for p in sorted((tmp_path / "clips").iterdir())] == ["a.mp4", "b.mp4"]  # no temp left
    first.unlink()
    third = clip("c.mp4")
    decoded = read_frames(probe_video(third), (0, 1), SIZE)
    assert len(decoded) == 2 and decoded[0].shape == (SIZE[1], SIZE[0], 3)
