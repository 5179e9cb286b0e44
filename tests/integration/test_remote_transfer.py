"""SFTP transfer against a real OpenSSH server: by content, verified, resumable, inside remote_dir."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from cosmos_workflow.errors import RemoteConnectionError, TransferError
from cosmos_workflow.executors.remote import Connection, RemoteConfig, RemoteDir
from cosmos_workflow.executors.remote.transfer import file_sha256
from tests.sshd import Sshd, config_for, drop

HOSTILE_DIR = "~/tests/dir with space 'q' \"dq\" $(touch pwned) `touch pwned`; touch pwned"


@pytest.fixture
def blob(tmp_path: Path) -> Path:
    path = tmp_path / "clip one 'it''s' $(x);.MP4"
    path.write_bytes(os.urandom(3_000_000))
    return path


@pytest.fixture
def folder(remote_config: RemoteConfig) -> RemoteDir:
    connection = Connection(remote_config.remote).open()
    yield RemoteDir(connection, remote_config.remote_dir)
    connection.close()


def test_upload_once_by_content_then_download(folder: RemoteDir, blob: Path, tmp_path: Path) -> None:
    first = folder.upload(blob)
    assert first.remote == f"blobs/{file_sha256(blob)}.mp4"
    assert (first.sent, first.size, first.resumed_from) == (blob.stat().st_size, blob.stat().st_size, 0)
    assert folder.sha256(first.remote) == first.sha256
    again = folder.upload(blob)
    assert (again.remote, again.sent) == (first.remote, 0)  # already there: not sent again
    copy = tmp_path / "copy" / "back.mp4"
    assert folder.download(first.remote, copy) == copy
    assert copy.read_bytes() == blob.read_bytes()
    assert not copy.with_name("back.mp4.part").exists()
    assert folder.connection.run(["ls", "-A", folder.path("tmp")]).stdout == ""  # no part left


def test_same_content_under_another_name_is_not_sent(folder: RemoteDir, blob: Path, tmp_path: Path) -> None:
    other = tmp_path / "renamed.mp4"
    other.write_bytes(blob.read_bytes())
    folder.upload(blob)
    assert folder.upload(other).sent == 0


def test_upload_cut_midway_resumes_where_it_stopped(folder: RemoteDir, blob: Path) -> None:
    size = blob.stat().st_size

    def cut(done: int) -> None:
        if done >= size // 2:
            drop(folder.connection)

    with pytest.raises(RemoteConnectionError, match="rerun the same command to resume"):
        folder.upload(blob, progress=cut)
    folder.connection.open()
    part = f"tmp/{file_sha256(blob)}.mp4.part"
    have = folder.size(part)
    assert have is not None and 0 < have < size
    resumed = folder.upload(blob)
    assert resumed.resumed_from == have
    assert resumed.sent == size - have
    assert folder.sha256(resumed.remote) == file_sha256(blob)
    assert not folder.exists(part)


def test_corrupt_partial_upload_restarts_from_scratch(
    folder: RemoteDir, blob: Path, caplog: pytest.LogCaptureFixture
) -> None:
    part = f"tmp/{file_sha256(blob)}.mp4.part"
    folder.write_bytes(part, b"garbage" * 1000)
    with caplog.at_level(logging.WARNING):
        done = folder.upload(blob)
    assert done.resumed_from == 7000
    assert done.sent == blob.stat().st_size - 7000 + blob.stat().st_size
    assert folder.sha256(done.remote) == file_sha256(blob)
    assert "sending it again from the start" in caplog.text


def test_download_cut_midway_resumes(folder: RemoteDir, blob: Path, tmp_path: Path) -> None:
    remote = folder.upload(blob).remote
    target = tmp_path / "back.mp4"
    target.with_name("back.mp4.part").write_bytes(blob.read_bytes()[:1_000_000])
    received: list[int] = []
    folder.download(remote, target, progress=received.append)
    assert target.read_bytes() == blob.read_bytes()
    assert received[0] > 1_000_000  # it went on from the part, not from zero


def test_hostile_remote_dir_is_used_literally(
    sshd: Sshd, known_hosts: Path, blob: Path, tmp_path: Path
) -> None:
    config = config_for(sshd, known_hosts, HOSTILE_DIR)
    with Connection(config.remote) as connection:
        folder = RemoteDir(connection, config.remote_dir)
        assert folder.root == HOSTILE_DIR.replace("~", sshd.home, 1)
        remote = folder.upload(blob).remote
        folder.download(remote, tmp_path / "back")
        folder.write_bytes("jobs/a b/'c'.json", b"{}")
        assert folder.read_bytes("jobs/a b/'c'.json") == b"{}"
        assert connection.run(["test", "-e", f"{sshd.home}/pwned"], check=False).returncode == 1
        assert connection.run(["test", "-e", f"{sshd.home}/tests/pwned"], check=False).returncode == 1
        connection.run(["rm", "-rf", "--", folder.root])
    assert (tmp_path / "back").read_bytes() == blob.read_bytes()


@pytest.mark.parametrize("escaping", ["../outside", "/etc/passwd", "blobs/../../x", ".."])
def test_paths_escaping_remote_dir_are_refused(folder: RemoteDir, escaping: str, tmp_path: Path) -> None:
    with pytest.raises(TransferError, match="refused"):
        folder.download(escaping, tmp_path / "x")
    with pytest.raises(TransferError, match="refused"):
        folder.write_bytes(escaping, b"x")


def test_a_symlink_leading_out_of_remote_dir_is_refused(folder: RemoteDir, tmp_path: Path) -> None:
    folder.connection.run(["ln", "-s", "/etc", folder.path("evil")])
    with pytest.raises(TransferError, match="outside remote_dir; refused"):
        folder.download("evil/passwd", tmp_path / "passwd")
    with pytest.raises(TransferError, match="outside remote_dir; refused"):
        folder.read_bytes("evil/hostname")
    assert not (tmp_path / "passwd").exists()


def test_unwritable_remote_dir_names_the_fix(sshd: Sshd, known_hosts: Path, blob: Path) -> None:
    config = config_for(sshd, known_hosts, "/root/cosmos-not-allowed")
    with Connection(config.remote) as connection, pytest.raises(TransferError, match="remote_dir"):
        RemoteDir(connection, config.remote_dir).upload(blob)
