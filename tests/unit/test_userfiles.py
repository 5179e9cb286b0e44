"""The one door for user-named files (issue 23): regular files only, bounded size, bounded nesting.

Real FIFOs, real sockets and real ``/dev/zero`` links; each test has a short timeout, so a door
that blocks fails instead of hanging the suite.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosmos_workflow.errors import InputFileError
from cosmos_workflow.journal import read_records
from cosmos_workflow.userfiles import (
    UserFile,
    check_user_file,
    open_user_file,
    open_user_file_if_exists,
    read_user_bytes,
    read_user_text,
    too_deep,
)

KIND = UserFile(what="test file", max_bytes=100, error=InputFileError, fix="pass another one", syntax="json")

pytestmark = pytest.mark.timeout(10)


def test_a_regular_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('{"a": [1, "]]]"]}')
    assert json.loads(read_user_text(path, KIND)) == {"a": [1, "]]]"]}
    assert read_user_bytes(path, KIND) == path.read_bytes()
    with open_user_file(path, KIND) as handle:
        assert handle.read(1) == b"{"


def test_a_fifo_is_refused_at_once_and_never_blocks(tmp_path: Path) -> None:
    fifo = tmp_path / "f.json"
    os.mkfifo(fifo)  # no writer: a plain open() would wait for ever
    for read in (read_user_text, read_user_bytes, check_user_file, open_user_file_if_exists):
        with pytest.raises(
            InputFileError, match=r"test file .*f.json is a FIFO \(named pipe\), not a regular"
        ):
            read(fifo, KIND)


def test_a_device_is_refused_without_being_read(tmp_path: Path) -> None:
    link = tmp_path / "z.json"
    link.symlink_to("/dev/zero")  # endless: read, it would fill memory
    with pytest.raises(
        InputFileError, match=r"z.json is a character device, not a regular file; pass another"
    ):
        read_user_text(link, KIND)


def test_a_folder_and_a_socket_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="is a folder, not a regular file"):
        read_user_text(tmp_path, KIND)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "s.json"))
        with pytest.raises(InputFileError, match="is a socket, not a regular file"):
            read_user_text(tmp_path / "s.json", KIND)


def test_a_file_over_the_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b" " * 101)
    with pytest.raises(
        InputFileError, match=r"big.json is 101 bytes, over the 100 bytes limit of a test file"
    ):
        read_user_text(path, KIND)
    path.write_bytes(b" " * 100)
    assert read_user_bytes(path, KIND) == b" " * 100


def test_missing_names_the_fix_and_if_exists_gives_none(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"test file .*nope.json not found; check the path"):
        read_user_text(tmp_path / "nope.json", KIND)
    assert open_user_file_if_exists(tmp_path / "nope.json", KIND) is None


def test_unreadable_and_not_utf8_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(InputFileError, match=r"bad.json is not UTF-8 text \(byte 0\); save it as UTF-8"):
        read_user_text(path, KIND)
    with pytest.raises(InputFileError, match="holds a NUL character"):
        read_user_text(tmp_path / "a\x00b", KIND)
    with pytest.raises(InputFileError, match="a part of the path is a file"):
        read_user_text(path / "below.json", KIND)


def test_deep_json_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000)
    kind = UserFile(
        what="test file", max_bytes=1 << 20, error=InputFileError, fix="flatten it", syntax="json"
    )
    with pytest.raises(InputFileError, match=r"deep.json is nested too deeply \(more than 64 levels"):
        read_user_text(path, kind)
    path.write_text("[" * 64 + "]" * 64)
    assert read_user_text(path, kind)


@pytest.mark.parametrize(
    ("text", "syntax", "deep"),
    [
        ("[" * 64 + "]" * 64, "json", False),
        ("[" * 65 + "]" * 65, "json", True),
        ("{" * 65, "json", True),  # unclosed: a parser recurses before it fails
        ('["' + "[" * 100 + '"]', "json", False),  # brackets in a string
        ('["\\"' + "[" * 100 + '"]', "json", False),  # an escaped quote does not end the string
        ('"' + "[" * 100 + "\n" + "[" * 65, "json", False),  # a parser stops at the newline
        ("]" + "[" * 65, "json", False),  # a parser stops at a stray closer
        ("[" * 65 + "]" * 66 + "[", "json", True),
        ("x = " + "[" * 65 + "]" * 65, "toml", True),
        ("# " + "[" * 100 + "\nx = 1", "toml", False),  # a comment
        ("x = '" + "[" * 100 + "'", "toml", False),  # a literal string
        ('x = """\n' + "[" * 100 + '\n"""', "toml", False),  # a multi-line string
        ("x = '''\n" + "[" * 100 + "\n'''", "toml", False),
        ('x = "#"\ny = ' + "[" * 65 + "]" * 65, "toml", True),  # '#' in a string is no comment
        ("x = " + "{a = " * 65 + "1" + "}" * 65, "toml", True),  # inline tables
    ],
)
def test_too_deep_counts_brackets_outside_strings_and_comments(text: str, syntax: Any, deep: bool) -> None:
    assert too_deep(text, syntax) is deep


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


TRICKY = st.text(st.sampled_from("[]{}\"\\'#\n ,:ax"), max_size=8)
values = st.recursive(
    st.one_of(st.integers(), TRICKY),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TRICKY, inner, max_size=3)),
    max_leaves=40,
)


@settings(max_examples=200, deadline=None)
@given(value=values, limit=st.integers(1, 8))
def test_too_deep_matches_the_json_depth(value: object, limit: int) -> None:
    assert too_deep(json.dumps(value), "json", limit) is (_depth(value) > limit)


arrays = st.recursive(
    st.one_of(st.integers(), TRICKY), lambda inner: st.lists(inner, min_size=1, max_size=3), max_leaves=40
)


@settings(max_examples=200, deadline=None)
@given(value=arrays, limit=st.integers(1, 8))
def test_too_deep_matches_the_toml_depth(value: object, limit: int) -> None:
    text = f"# [[[\nx = {json.dumps(value)}  # ]]\n"  # JSON arrays of ints and strings are TOML arrays
    assert tomllib.loads(text)["x"] == value
    assert too_deep(text, "toml", limit) is (_depth(value) > limit)


@settings(max_examples=300, deadline=None)
@given(before=TRICKY, depth=st.integers(0, 3000), after=TRICKY, syntax=st.sampled_from(["json", "toml"]))
def test_what_passes_the_scan_never_recurses_too_deep(
    before: str, depth: int, after: str, syntax: Any
) -> None:
    text = before + ("x = " if syntax == "toml" else "") + "[" * depth + after
    if too_deep(text, syntax):
        return
    with contextlib.suppress(ValueError, tomllib.TOMLDecodeError):  # a RecursionError fails the test
        json.loads(text) if syntax == "json" else tomllib.loads(text)


def test_a_file_that_states_no_size_is_still_bounded() -> None:
    stat_file = Path("/proc/self/stat")  # a regular file of st_size 0 whose text is ~300 bytes
    kind = UserFile(what="test file", max_bytes=1 << 20, error=InputFileError, fix="pass another one")
    assert stat_file.stat().st_size == 0 and len(read_user_text(stat_file, kind)) > 100
    with pytest.raises(InputFileError, match=r"stat is larger than 100 bytes, the limit of a test file"):
        read_user_text(stat_file, KIND)


def test_a_journal_that_is_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    journal = tmp_path / "out.json.rank1.journal.jsonl"
    os.mkfifo(journal)  # e.g. merge reading every rank's journal
    with pytest.raises(InputFileError, match=r"journal .*rank1.journal.jsonl is a FIFO \(named pipe\)"):
        list(read_records(journal, clips_dir=tmp_path / "clips"))
    assert list(read_records(tmp_path / "missing.journal.jsonl", clips_dir=tmp_path / "clips")) == []
