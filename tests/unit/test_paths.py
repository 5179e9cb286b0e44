"""Every user path checked before any work; names made safe as file names; OSErrors worded once."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cosmos_workflow.errors import PathError
from cosmos_workflow.paths import check_paths, describe_os_error, safe_file_name


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Iterator[Path]:
    """A real folder this process cannot create files in (root ignores permission bits: sysfs)."""
    if os.geteuid() == 0:
        yield Path("/sys")
        return
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


def test_good_paths_pass_and_create_nothing(tmp_path: Path) -> None:
    prompts = tmp_path / "p.json"
    prompts.write_text("[]")
    check_paths(
        read=[prompts],
        write=[tmp_path / "new" / "out.json", prompts.with_name("x.json")],
        folders=[tmp_path / "c"],
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]


def test_case1_output_device_fifo_or_socket_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(PathError, match=r"is a FIFO \(named pipe\); writing would replace it"):
        check_paths(write=[fifo])
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        with pytest.raises(PathError, match="is a socket"):
            check_paths(write=[tmp_path / "sock"])
    with pytest.raises(PathError, match="output /dev/null is a character device"):
        check_paths(write=[Path("/dev/null")])
    link = tmp_path / "link"
    link.symlink_to("/dev/null")
    with pytest.raises(PathError, match="is a character device"):
        check_paths(write=[link])


def test_case2_output_equal_to_the_input_is_refused(tmp_path: Path) -> None:
    prompts = tmp_path / "p.json"
    prompts.write_text("[]")
    (tmp_path / "hard").hardlink_to(prompts)
    for same in (prompts, tmp_path / "." / "p.json", tmp_path / "hard"):
        with pytest.raises(PathError, match=f"is the input file {prompts}; pass a different output file"):
            check_paths(read=[prompts], write=[same])


def test_case6_output_folder_parent_file_and_empty_path_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PathError, match="is a folder; pass a file path"):
        check_paths(write=[tmp_path])
    with pytest.raises(PathError, match="output path is empty"):
        check_paths(write=[Path("")])
    afile = tmp_path / "f"
    afile.write_text("")
    with pytest.raises(PathError, match=f"{afile} is a file, not a folder"):
        check_paths(write=[afile / "sub" / "out.json"])
    with pytest.raises(PathError, match=f"{afile} is a file, not a folder"):
        check_paths(folders=[afile])


def test_case6_unwritable_folders_are_refused_before_any_work(unwritable_dir: Path) -> None:
    with pytest.raises(PathError, match=f"cannot write in folder {unwritable_dir}: permission denied"):
        check_paths(write=[unwritable_dir / "out.json"])
    with pytest.raises(PathError, match=f"cannot write in folder {unwritable_dir}"):
        check_paths(folders=[unwritable_dir / "clips" / "deeper"])


def test_case4_paths_with_nul_or_lone_surrogates_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PathError, match="contains a NUL character"):
        check_paths(write=[tmp_path / "a\x00b"])
    with pytest.raises(PathError, match="characters no file name can have"):
        check_paths(folders=[tmp_path / "c\ud83d"])


def test_input_must_exist_and_be_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(PathError, match="not found"):
        check_paths(read=[tmp_path / "missing.json"])
    with pytest.raises(PathError, match="is a character device, not a regular file"):
        check_paths(read=[Path("/dev/zero")])
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # issue 23: with no writer, reading it would wait for ever
    with pytest.raises(PathError, match=r"is a FIFO \(named pipe\), not a regular file"):
        check_paths(read=[fifo])


@pytest.mark.parametrize(
    ("name", "expected"),
    [("-rf", "rf"), ("--x", "x"), (".-.x", "x"), ("a" * 300, "a" * 80), ("ok_1.v2", "ok_1.v2"), ("", "item")],
)
def test_case12_safe_file_name_never_starts_with_dash_or_dot(name: str, expected: str) -> None:
    assert safe_file_name(name) == expected


def test_describe_os_error_names_the_path_and_the_fix() -> None:
    error = OSError(errno.EACCES, "Permission denied", "/data/out.json")
    assert (
        describe_os_error(error)
        == "/data/out.json: permission denied; fix its permissions or choose another path"
    )
    full = OSError(errno.ENOSPC, "No space left on device", "/data/out.json")
    assert "free some space" in describe_os_error(full)
    assert describe_os_error(OSError(errno.EIO, "Input/output error")) == (
        "Input/output error; check the path and the disk"
    )
