"""Issue 23, the remote and launcher cases: one test per case, named after it. The remote ones run
on the loopback sshd (real SSH, host keys verified); this machine is the host, so what arrived
there is read directly from the test user's home."""

# ruff: noqa: F811  (the fixtures imported from the remote test modules are parameters of their name)

from __future__ import annotations

import json
import logging
import os
import pwd
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from cosmos_workflow import api
from cosmos_workflow.config import UpsampleSettings, run_options
from cosmos_workflow.errors import RemoteConnectionError
from cosmos_workflow.executors import Executor, RunContext
from cosmos_workflow.executors.local import LocalExecutor
from cosmos_workflow.executors.remote import Connection, RemoteConfig, RemoteDir, RemoteExecutor
from cosmos_workflow.runner import Job
from cosmos_workflow.specs.batch import BatchItem
from tests.e2e.test_remote_cli import cli as remote_cli
from tests.e2e.test_remote_cli import config, lines  # noqa: F401  (config: a fixture)
from tests.e2e.test_remote_run import (  # noqa: F401  (remote_toml: a fixture)
    FAKE,
    ROOT,
    Config,
    cli,
    journal_lines,
    records,
    remote_dir_of,
    remote_toml,
    slow_remote_run,
    start_cli,
    wait,
)
from tests.sshd import Sshd, drop
from tests.videos import make_video

FAKE_KEY = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAcosmos-test-secret\n"


def _host_files(root: Path) -> list[Path]:
    return [root, *sorted(root.rglob("*"))]


def test_caseA_remote_sends_only_planned_videos(remote_toml: Config, tmp_path: Path, sshd: Sshd) -> None:
    config = remote_toml("venv")
    key = tmp_path / "home" / ".ssh" / "id_ed25519"
    key.parent.mkdir(parents=True)
    key.write_bytes(FAKE_KEY)
    video = tmp_path / "clip.mp4"
    make_video(video, 96, 64, frames=4)
    source = tmp_path / "prompts.json"
    items = [
        {"name": "key", "prompt": "a boat on a lake", "video_path": str(key)},
        {"name": "passwd", "prompt": "a car turns left", "video_path": "/etc/passwd"},
        {"name": "real", "prompt": "a red car", "video_path": str(video)},
    ]
    source.write_text(json.dumps(items))
    output = tmp_path / "out.json"
    run = cli("upsample-prompts", str(source), "-o", str(output), *FAKE, "--config", str(config), "--remote")
    assert run.returncode == 0, run.stderr
    assert "videos: 1 distinct, 1 sent" in run.stderr and "2 not sent (not a usable video" in run.stderr
    got = records(output)
    assert [r["status"] for r in got] == ["text_only", "text_only", "ok"]
    assert [r["video_path"] for r in got] == [str(key), "/etc/passwd", str(video)]
    assert all("from the text alone" in str(r["warning"]) for r in got[:2])  # said here, as locally
    remote = remote_dir_of(config, sshd)
    assert [p.name for p in (remote / "blobs").iterdir()] == [f"{_sha256(video)}.mp4"]
    passwd = Path("/etc/passwd").read_bytes().splitlines()[0]
    for path in _host_files(remote):
        if path.is_file():
            data = path.read_bytes()
            assert b"cosmos-test-secret" not in data and passwd not in data, path
        # the host's copies are the remote user's alone, from their creation on
        want = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.lstat().st_mode) == want, f"{path}: {oct(path.lstat().st_mode)}"


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_caseB_item_edited_while_the_remote_job_runs_is_done_in_a_follow_up_job(
    remote_toml: Config, tmp_path: Path
) -> None:
    config = remote_toml("venv")
    args, output = slow_remote_run(config, tmp_path, 16)
    process = start_cli(*args)
    wait(lambda: journal_lines(output) >= 3, "three results", process=process)
    process.kill()  # SIGKILL: the job on the host runs on
    process.communicate()
    source = Path(args[1])
    items = json.loads(source.read_text())
    items[12]["prompt"] = "an edited prompt: a blue bicycle"
    source.write_text(json.dumps(items))
    rerun = cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert "reattaching to the job still running" in rerun.stderr
    assert "no result for 1 item(s) (item12); running them in a follow-up job" in rerun.stderr
    got = records(output)
    assert [r["name"] for r in got] == [f"item{n}" for n in range(16)]
    assert got[12]["original_prompt"] == "an edited prompt: a blue bicycle"
    assert "a blue bicycle" in str(got[12]["upsampled_prompt"])
    assert all(r["status"] == "text_only" for r in got)


class _Losing(Executor):
    """Runs every job but one here; the one it loses has no result (as a host that returned none)."""

    def __init__(self, lose: str) -> None:
        self.lose = lose
        self.local = LocalExecutor()

    def execute(self, jobs: Sequence[Job], run: RunContext) -> None:
        self.local.execute([job for job in jobs if job.item.name != self.lose], run)


def test_caseB_an_item_with_no_result_makes_the_run_partial(tmp_path: Path) -> None:
    items = [BatchItem(name=name, prompt=f"a boat, {name}") for name in ("a", "b", "c")]
    output = tmp_path / "up.json"
    options = run_options(UpsampleSettings(engine="fake", model="fake"), output=output)
    result = api.upsample(items, options, output=output, executor=_Losing("b"))
    assert result.missing == ["b"] and [r.name for r in result.records] == ["a", "c"]
    assert [r["name"] for r in records(output)] == ["a", "c"]  # the CLI exits 3 on result.missing


def test_caseC_num_gpu_above_the_devices_is_refused_at_once(tmp_path: Path) -> None:
    source = tmp_path / "p.json"
    source.write_text(json.dumps([{"name": "a", "prompt": "a boat"}]))
    output = tmp_path / "out.json"
    started = time.monotonic()
    command = [sys.executable, "-m", "cosmos_workflow", "upsample-prompts", str(source), "-o", str(output)]
    run = subprocess.run(
        [*command, *FAKE, "--num-gpu", "100000"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert time.monotonic() - started < 30
    assert run.returncode == 2, run.stderr
    cores = len(os.sched_getaffinity(0))
    assert run.stderr.strip().splitlines() == [
        f"error: num_gpu 100000 starts one process per device, and there are {cores} CPU cores this "
        f"process may use (the fake engine uses no GPU); pass --num-gpu {cores} or fewer"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]  # no log, no journal: nothing started


def test_caseD_transfer_error_always_has_a_reason(remote_config: RemoteConfig, tmp_path: Path) -> None:
    """A host that stops answering mid-upload: paramiko's timeout carries no message (the issue's
    'stopped after 92274688 bytes: ; rerun'); the error names its type instead."""
    blob = tmp_path / "blob.mp4"
    blob.write_bytes(os.urandom(40_000_000))
    quick = remote_config.remote.model_copy(update={"connect_timeout": 1.0})  # SFTP times out in 6 s
    with Connection(quick) as connection:
        folder = RemoteDir(connection, remote_config.remote_dir)
        server = int(connection.run(["sh", "-c", "echo $PPID"]).stdout)  # this connection's sshd
        stalled: list[int] = []

        def stall(done: int) -> None:
            if done > 1_000_000 and not stalled:
                stalled.append(server)
                os.kill(server, signal.SIGSTOP)

        try:
            with pytest.raises(RemoteConnectionError) as failed:
                folder.upload(blob, progress=stall)
        finally:
            os.kill(server, signal.SIGCONT)
    assert re.search(r"stopped after \d+ bytes: TimeoutError; rerun", str(failed.value)), str(failed.value)


def _run_cut_once(
    remote_config: RemoteConfig, python: str, tmp_path: Path, cut: Callable[[Connection], None]
) -> None:
    """Six slow items on the host (9 s: a loaded machine must not finish them all between two polls,
    or the cut lands after the last read); ``cut`` breaks the connection after the first result."""
    config = remote_config.model_copy(
        update={"remote": remote_config.remote.model_copy(update={"python": python})}
    )
    items = [BatchItem(name=f"item{n}", prompt=f"a boat, take {n}") for n in range(6)]
    output = tmp_path / "up.json"
    settings = UpsampleSettings(
        engine="fake", model="fake", batch_size=1, engine_options={"seconds_per_batch": 1.5}
    )
    executor = RemoteExecutor(config)
    done: list[int] = []

    def progress(count: int, total: int | None = None) -> None:
        if total is None and not done:
            done.append(count)
            cut(executor.connection)

    result = api.upsample(
        items, run_options(settings, output=output), output=output, executor=executor, progress=progress
    )
    assert [r.status for r in result.records] == ["text_only"] * 6
    assert done and done[0] < 6, "the cut came after the last result: nothing was left to reconnect for"


def _close_socket(connection: Connection) -> None:
    """The socket fails under paramiko's transport thread, which notices first (as when the
    network fails while nothing is being sent)."""
    transport = connection.client.get_transport()
    assert transport is not None
    transport.sock.close()
    time.sleep(1)


def test_caseD_paramiko_socket_exception_line_is_not_printed(
    remote_config: RemoteConfig, remote_python: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        _run_cut_once(remote_config, remote_python, tmp_path, _close_socket)
    assert "Socket exception" not in caplog.text  # paramiko's own line stays out; the run goes on


def test_caseD_reconnect_warning_says_reconnecting_not_rerun(
    remote_config: RemoteConfig, remote_python: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        _run_cut_once(remote_config, remote_python, tmp_path, drop)
    [warning] = [r.getMessage() for r in caplog.records if "connection to" in r.getMessage()]
    assert "reconnecting (try 1 of 5): the job runs on there" in warning and "rerun" not in warning


def _other_key(tmp_path: Path) -> str:
    key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return " ".join(key.with_suffix(".pub").read_text().split()[:2])


def test_caseD_trust_says_changed_first_and_refuses(config: Path, sshd: Sshd, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    recorded = f"[{sshd.host}]:{sshd.port} {_other_key(tmp_path)}\n"
    known_hosts.write_text(recorded)
    refused = remote_cli("remote", "trust", "--config", str(config), stdin="y\n")
    assert refused.returncode == 1
    assert "record this key" not in refused.stdout + refused.stderr  # nothing asked
    [error] = refused.stderr.strip().splitlines()
    assert error.startswith(f"error: host key of [{sshd.host}]:{sshd.port} has CHANGED")
    # the hint names the config file the user passed
    assert error.endswith(f"`cosmos-workflow remote trust --replace --config {config}`")
    assert known_hosts.read_text() == recorded
    declined = remote_cli("remote", "trust", "--config", str(config), "--replace", stdin="n\n")
    assert declined.returncode == 1 and "it has CHANGED; replace it in" in declined.stdout
    assert known_hosts.read_text() == recorded
    replaced = remote_cli("remote", "trust", "--config", str(config), "--replace", "--yes")
    assert replaced.returncode == 0 and f"replaced in {known_hosts}" in replaced.stdout
    assert "already trusted" in remote_cli("remote", "trust", "--config", str(config)).stdout


def test_caseD_hints_name_the_config_file(config: Path) -> None:
    result = remote_cli("remote", "check", "--config", str(config))
    assert result.returncode == 1
    assert f"then: cosmos-workflow remote trust --config {config}" in lines(result)["host"]


def test_caseD_docker_mode_leaves_files_of_the_user_not_root(
    remote_toml: Config, tmp_path: Path, docker_image: str, sshd: Sshd
) -> None:
    config = remote_toml("docker", image=docker_image)
    video = tmp_path / "clip.mp4"
    make_video(video, 96, 64, frames=4)
    source = tmp_path / "prompts.json"
    source.write_text(json.dumps([{"name": "one", "prompt": "a red car", "video_path": str(video)}]))
    output = tmp_path / "out.json"
    run = cli("upsample-prompts", str(source), "-o", str(output), *FAKE, "--config", str(config), "--remote")
    assert run.returncode == 0, run.stderr
    assert [r["status"] for r in records(output)] == ["ok"]
    user = pwd.getpwnam(sshd.user)
    files = _host_files(remote_dir_of(config, sshd))
    assert any(p.name == "results.json.journal.jsonl" for p in files)  # written in the container
    for path in files:
        assert (path.lstat().st_uid, path.lstat().st_gid) == (user.pw_uid, user.pw_gid), path
        assert stat.S_IMODE(path.lstat().st_mode) == (0o700 if path.is_dir() else 0o600), path


def test_caseD_remote_check_says_the_image_has_no_torch(config: Path, docker_image: str) -> None:
    assert remote_cli("remote", "trust", "--config", str(config), "--yes").returncode == 0
    env = {"COSMOS_REMOTE_MODE": "docker", "COSMOS_DOCKER_IMAGE": docker_image}
    result = remote_cli("remote", "check", "--config", str(config), env=env)
    assert result.returncode == 1
    image = lines(result)["image"]
    assert image.startswith(f"FAIL  image          {docker_image}")
    assert "torch does not import there (ModuleNotFoundError: No module named 'torch')" in image
    assert "fix: use an image with torch" in image
    venv = remote_cli("remote", "check", "--config", str(config))  # the test venv has CPU torch
    assert re.search(r"with pip and torch \d", lines(venv)["interpreter"])
