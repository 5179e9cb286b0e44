"""Clip names: one unique, safe file per item inside the user's output folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from cosmos_workflow.media import clip_path, write_clip

KEY = "0123456789abcdef0123"


def test_name_and_short_key(tmp_path: Path) -> None:
    assert clip_path(tmp_path, "city_night", KEY) == tmp_path / "city_night_0123456789ab.mp4"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a b/c\\d", "a_b_c_d"),
        ("../../etc/passwd", "etc_passwd"),
        ("-rf", "rf"),
        ("--help", "help"),
        ("..", "item"),
        ("", "item"),
        (".hidden", "hidden"),
        ("straße—ünïcode", "stra_e_n_code"),
        ("ok-name.v2", "ok-name.v2"),
    ],
)
def test_names_are_sanitised(tmp_path: Path, name: str, expected: str) -> None:
    path = clip_path(tmp_path, name, KEY)
    assert path.name == f"{expected}_{KEY[:12]}.mp4"
    assert path.parent == tmp_path


@pytest.mark.parametrize("name", ["../x", "/abs/path", "a/../../b", "..", "x" * 500, "\x00nul", "~/home"])
def test_result_is_always_inside_output_dir(tmp_path: Path, name: str) -> None:
    path = clip_path(tmp_path, name, KEY)
    assert path.resolve().parent == tmp_path.resolve()
    stem = path.name.removesuffix(f"_{KEY[:12]}.mp4")
    assert 1 <= len(stem) <= 80
    assert ".." not in path.name
    assert not path.name.startswith(".")


def test_distinct_keys_give_distinct_files(tmp_path: Path) -> None:
    assert clip_path(tmp_path, "same", "aaaaaaaaaaaa1") != clip_path(tmp_path, "same", "bbbbbbbbbbbb1")


@pytest.mark.parametrize("key", ["", "../x", "a/b", "k.ey"])
def test_unsafe_keys_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="key"):
        clip_path(tmp_path, "name", key)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_case12_clips_are_readable_like_the_json_files(tmp_path: Path, umask: int, mode: int) -> None:
    frames = [np.zeros((16, 16, 3), dtype=np.uint8)] * 2
    old = os.umask(umask)
    try:
        clip = write_clip(frames, clip_path(tmp_path / "clips", "-rf", KEY), fps=24)
        json_file = tmp_path / "out.json"
        json_file.write_text("[]")
    finally:
        os.umask(old)
    assert clip.name == f"rf_{KEY[:12]}.mp4"
    assert stat.S_IMODE(clip.stat().st_mode) == mode == stat.S_IMODE(json_file.stat().st_mode)
    assert [p.name for p in clip.parent.iterdir()] == [clip.name]  # no temp file left
