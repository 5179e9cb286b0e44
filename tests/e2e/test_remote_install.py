"""Two runs installing this cosmos-workflow into one environment on the host at once (two users'
runs, or a rerun started while another still installs): they take turns on the host's install
lock, the second finds the code installed and leaves it, and both end with it importable. Without
the lock, one run's ``--force-reinstall`` removed files the other's pip was writing (CI, stop 29:
``No such file or directory: .../cosmos_workflow-0.1.0.dist-info/INSTALLER...tmp``)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cosmos_workflow.executors.remote import Connection, RemoteConfig, RemoteDir, code
from tests.sshd import Sshd

pytestmark = pytest.mark.slow


def test_two_installs_into_one_venv_at_once_take_turns(
    remote_config: RemoteConfig, remote_python: str, sshd: Sshd, tmp_path: Path
) -> None:
    wheel = code.build_wheel(tmp_path / "cache")
    settings = remote_config.remote.model_copy(update={"python": remote_python})
    with Connection(settings) as connection:
        python = connection.expand(remote_python)
        connection.run([python, "-m", "pip", "uninstall", "-q", "-y", "cosmos-workflow"], check=False)
        assert code.installed_hash(connection, python) is None
    installed: list[bool] = []
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def install(run: int) -> None:
        try:
            with Connection(settings) as connection:
                folder = RemoteDir(connection, f"{remote_config.remote_dir}/run{run}")
                start.wait(30)
                installed.append(code.install_in_venv(connection, folder, python, wheel))
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    runs = [threading.Thread(target=install, args=(n,)) for n in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(600)

    assert not failures, failures
    assert sorted(installed) == [False, True]  # one installed, the other waited and found it there
    with Connection(settings) as connection:
        assert code.installed_hash(connection, python) == wheel.code_hash
        lock = connection.run(["sh", "-c", "ls ~/.cache/cosmos-workflow/install-*.lock"]).stdout.split()
    assert len(lock) == 1  # one lock for the one interpreter
