"""``cosmos-workflow remote check`` and ``remote trust`` as a user runs them, on a real sshd."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cosmos_workflow.executors.remote import KnownHosts
from cosmos_workflow.executors.remote.check import disk_verdict
from tests.sshd import Sshd

ROOT = Path(__file__).resolve().parents[2]
# every test here checks the one remote_dir below, where `check` writes and removes a probe file of
# a fixed name: one worker runs them all (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("remote-cli-check-dir")


def cli(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cosmos_workflow", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=os.environ | (env or {}),
        input=stdin,
        timeout=300,
    )


@pytest.fixture
def config(sshd: Sshd, tmp_path: Path, remote_python: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""[remote]
host = "{sshd.host}"
port = {sshd.port}
user = "{sshd.user}"
ssh_key = "{sshd.client_key}"
known_hosts = "{tmp_path / "known_hosts"}"
mode = "venv"
python = "{remote_python}"

[paths]
remote_dir = "~/tests/cli check"
"""
    )
    return path


def lines(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """check name -> its line."""
    return {line.split()[1]: line for line in result.stdout.splitlines() if line.strip()}


def test_check_refuses_unknown_host_then_trust_then_check_passes(
    config: Path, sshd: Sshd, tmp_path: Path
) -> None:
    refused = cli("remote", "check", "--config", str(config))
    assert refused.returncode == 1
    by_name = lines(refused)
    assert by_name["host"].startswith("FAIL  host key") and "SHA256:" in by_name["host"]
    assert (
        "fix: check the fingerprint with the host's admin, then: cosmos-workflow remote trust"
        in by_name["host"]
    )
    assert by_name["authentication"].startswith("SKIP")

    declined = cli("remote", "trust", "--config", str(config), stdin="n\n")
    assert declined.returncode == 1 and not (tmp_path / "known_hosts").exists()

    trusted = cli("remote", "trust", "--config", str(config), "--yes")
    assert trusted.returncode == 0, trusted.stderr
    fingerprint = trusted.stdout.split()[3]
    assert trusted.stdout.startswith(f"[{sshd.host}]:{sshd.port} presents ssh-ed25519 SHA256:")
    [key] = KnownHosts(tmp_path / "known_hosts").keys_for(f"[{sshd.host}]:{sshd.port}")
    assert key.fingerprint == fingerprint
    assert "already trusted" in cli("remote", "trust", "--config", str(config)).stdout

    passed = cli("remote", "check", "--config", str(config))
    assert passed.returncode == 0, passed.stdout + passed.stderr
    by_name = lines(passed)
    no_gpu = shutil.which("nvidia-smi") is None
    free_gib = float(re.search(r"([0-9.]+) GiB free", by_name["remote_dir"]).group(1))  # type: ignore[union-attr]
    disk = disk_verdict(free_gib)[0].upper()  # this machine's free space decides OK or WARN
    verdicts = ["OK", "OK", disk, "OK", "WARN" if no_gpu else "OK", "SKIP"]
    assert [line.split()[0] for line in by_name.values()] == verdicts
    if no_gpu:
        assert "nvidia-smi found no GPU: the job will run on the CPU" in by_name["gpus"]
    assert f"{sshd.home}/tests/cli check is writable" in by_name["remote_dir"]
    assert "Python 3." in by_name["interpreter"] and "with pip" in by_name["interpreter"]


def test_check_reports_each_broken_part_with_its_fix(config: Path, tmp_path: Path) -> None:
    assert cli("remote", "trust", "--config", str(config), "--yes").returncode == 0
    broken = {
        "COSMOS_REMOTE_PYTHON": "/nonexistent/python3",
        "COSMOS_DOCKER_CHECKPOINT_DIR": "~/no checkpoint here",
        "COSMOS_REMOTE_GPUS": "64",
    }
    result = cli("remote", "check", "--config", str(config), env=broken)
    assert result.returncode == 1
    by_name = lines(result)
    assert by_name["interpreter"].startswith("FAIL") and "fix: set [remote] python" in by_name["interpreter"]
    assert (
        by_name["checkpoint"].startswith("FAIL") and "fix: download the checkpoint" in by_name["checkpoint"]
    )
    if shutil.which("nvidia-smi") is not None:
        assert by_name["gpus"].startswith("FAIL") and "fix: set gpus = " in by_name["gpus"]


def test_wrong_key_fails_authentication_and_skips_the_rest(config: Path, tmp_path: Path) -> None:
    assert cli("remote", "trust", "--config", str(config), "--yes").returncode == 0
    wrong = tmp_path / "wrong"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    env = {"COSMOS_REMOTE_SSH_KEY": str(wrong), "SSH_AUTH_SOCK": ""}
    result = cli("remote", "check", "--config", str(config), env=env)
    assert result.returncode == 1
    by_name = lines(result)
    assert by_name["authentication"].startswith("FAIL") and "authorized_keys" in by_name["authentication"]
    assert by_name["remote_dir"].startswith("SKIP")


def test_docker_mode_checks_the_daemon_and_the_image(config: Path, docker_image: str) -> None:
    assert cli("remote", "trust", "--config", str(config), "--yes").returncode == 0
    env = {"COSMOS_REMOTE_MODE": "docker", "COSMOS_DOCKER_IMAGE": docker_image}
    result = cli("remote", "check", "--config", str(config), env=env)
    by_name = lines(result)
    # found; the test image has no torch, which fails it (tests/e2e/test_hostile_remote.py)
    assert by_name["docker"].startswith("OK") and by_name["image"].startswith(
        f"FAIL  image          {docker_image}"
    )
    missing = cli(
        "remote", "check", "--config", str(config), env=env | {"COSMOS_DOCKER_IMAGE": "no/such:image"}
    )
    assert missing.returncode == 1
    assert "fix: on the host: docker pull no/such:image" in lines(missing)["image"]


def test_missing_config_is_one_line(tmp_path: Path) -> None:
    result = cli("remote", "check", "--config", str(tmp_path / "none.toml"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: config file {tmp_path / 'none.toml'} not found; check --config or $COSMOS_WORKFLOW_CONFIG"
    ]
