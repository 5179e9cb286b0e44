"""Probes are cached by file identity: the planner, the runner and torchrun's shard costing share
one probe per file, and a changed file is probed again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cosmos_workflow.errors import VideoError
from cosmos_workflow.media import _probe, probe_video
from tests.videos import make_video


def test_same_file_is_probed_once_and_a_changed_file_again(tmp_path: Path) -> None:
    path = make_video(tmp_path / "v.mp4", 320, 180, frames=3)
    _probe._probe_file.cache_clear()
    first = probe_video(path)
    assert probe_video(path) == first
    assert _probe._probe_file.cache_info().hits == 1
    make_video(path, 640, 360, frames=5)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    again = probe_video(path)
    assert (again.width, again.height, again.frame_count) == (640, 360, 5)


def test_failures_are_not_cached(tmp_path: Path) -> None:
    path = tmp_path / "late.mp4"
    with pytest.raises(VideoError, match="not found"):
        probe_video(path)
    make_video(path, 320, 180, frames=2)
    assert probe_video(path).frame_count == 2
