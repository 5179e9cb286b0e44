"""The OpenSSH server on 127.0.0.1 that the remote tests use (``scripts/ci/sshd.sh``).

``COSMOS_TEST_SSHD`` names the JSON file that script writes. Without it the remote tests skip,
except under CI (``COSMOS_CI=1``), where a missing server is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cosmos_workflow.executors.remote import Connection, RemoteConfig

HOW = "start it with: export COSMOS_TEST_SSHD=$(bash scripts/ci/sshd.sh)  (as root)"


@dataclass(frozen=True)
class Sshd:
    host: str
    port: int
    user: str
    home: str
    client_key: Path
    known_hosts: Path
    host_key_pub: Path


def missing(what: str) -> None:
    """Fail under CI, skip elsewhere."""
    if os.environ.get("COSMOS_CI") == "1":
        pytest.fail(f"{what} (COSMOS_CI=1: the remote tests must run)")
    pytest.skip(what)


def load_sshd() -> Sshd:
    path = os.environ.get("COSMOS_TEST_SSHD")
    if not path or not Path(path).is_file():
        missing(f"no test sshd; {HOW}")
    info = json.loads(Path(str(path)).read_text())
    try:
        os.kill(info["pid"], 0)
    except OSError:
        missing(f"the test sshd (pid {info['pid']}) is not running; {HOW}")
    fields = {k: info[k] for k in ("host", "port", "user", "home")}
    paths = {k: Path(info[k]) for k in ("client_key", "known_hosts", "host_key_pub")}
    return Sshd(**fields, **paths)


@pytest.fixture(scope="session")
def sshd() -> Sshd:
    return load_sshd()


@pytest.fixture
def known_hosts(sshd: Sshd, tmp_path: Path) -> Path:
    """A private copy of the server's known_hosts (tests may change it)."""
    path = tmp_path / "ssh" / "known_hosts"
    path.parent.mkdir()
    shutil.copy(sshd.known_hosts, path)
    return path


def config_for(sshd: Sshd, known_hosts: Path, remote_dir: str, **remote: object) -> RemoteConfig:
    return RemoteConfig.model_validate(
        {
            "remote": {
                "host": sshd.host,
                "port": sshd.port,
                "user": sshd.user,
                "ssh_key": str(sshd.client_key),
                "known_hosts": str(known_hosts),
                "mode": "venv",
                "connect_attempts": 2,
                **remote,
            },
            "remote_dir": remote_dir,
            "image": TEST_IMAGE,
        }
    )


@pytest.fixture
def remote_config(sshd: Sshd, known_hosts: Path) -> Iterator[RemoteConfig]:
    """Settings for the test sshd with a fresh remote_dir (removed afterwards)."""
    remote_dir = f"~/tests/{uuid.uuid4().hex[:12]}"
    config = config_for(sshd, known_hosts, remote_dir)
    yield config
    with Connection(config.remote) as connection:
        connection.run(["rm", "-rf", "--", connection.expand(remote_dir)])


def drop(connection: Connection) -> None:
    """Cut the TCP connection under paramiko, as a network failure does."""
    import socket

    transport = connection.client.get_transport()
    assert transport is not None
    transport.sock.shutdown(socket.SHUT_RDWR)


#: the venv-mode interpreter scripts/ci/remote_venv.sh makes for the test user
REMOTE_PYTHON = "~/venv/bin/python"
TEST_IMAGE = "cosmos-workflow-test:latest"


@pytest.fixture(scope="session")
def remote_python(sshd: Sshd) -> str:
    if not (Path(sshd.home) / "venv" / "bin" / "python").exists():
        missing("no venv for the test user; run: bash scripts/ci/remote_venv.sh  (as root)")
    return REMOTE_PYTHON


@pytest.fixture(scope="session")
def docker_image(sshd: Sshd) -> str:
    import subprocess

    probe = ["runuser", "-u", sshd.user, "--", "docker", "image", "inspect", TEST_IMAGE]
    if shutil.which("docker") is None or subprocess.run(probe, capture_output=True).returncode != 0:
        missing(f"no Docker daemon with {TEST_IMAGE} usable by {sshd.user}; run: bash scripts/ci/docker.sh")
    return TEST_IMAGE
