"""A detached job on the real loopback sshd: survives a dropped connection, stops on request."""

from __future__ import annotations

import time

import pytest

from cosmos_workflow.executors.remote import Connection, RemoteConfig, RemoteDir
from cosmos_workflow.executors.remote.job import JournalTail, RemoteJob
from tests.sshd import drop


@pytest.fixture
def folder(remote_config: RemoteConfig) -> RemoteDir:
    connection = Connection(remote_config.remote).open()
    yield RemoteDir(connection, remote_config.remote_dir)
    connection.close()


def wait_for(job: RemoteJob, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while job.status().state != state:
        assert time.monotonic() < deadline, f"job never became {state}: {job.status()}"
        time.sleep(0.2)


def test_exit_status_and_log_of_a_finished_job(folder: RemoteDir) -> None:
    job = RemoteJob(folder, "exits")
    assert job.status().state == "none"
    job.start(["sh", "-c", 'printf "%s\\n" "$@"; exit 3', "sh", "$(touch pwned)", "a b;"], env={"X": "it's"})
    wait_for(job, "exited")
    assert job.status().exit_code == 3
    assert job.log_tail() == "$(touch pwned)\na b;"
    assert not folder.exists(f"{job.dir}/pwned")


def test_job_survives_a_dropped_connection_and_stops_on_request(folder: RemoteDir) -> None:
    job = RemoteJob(folder, "long")
    job.start(["sh", "-c", "echo started; sleep 60; echo never"])
    wait_for(job, "running")
    drop(folder.connection)
    folder.connection.reconnect()
    time.sleep(0.5)
    assert job.status().state == "running"  # the job did not die with the connection
    stopped = job.stop(grace_s=10)
    assert stopped.state == "exited" and stopped.exit_code != 0
    assert "never" not in job.log_tail()


def test_journal_tail_reads_only_complete_new_lines(folder: RemoteDir) -> None:
    tail = JournalTail(folder, "out")
    assert tail.read() == []
    folder.write_bytes("out/r.json.journal.jsonl", b'{"a": 1}\n{"b"')
    folder.write_bytes("out/r.json.journal.jsonl.old", b'{"old": 1}\n')
    assert tail.read() == ['{"a": 1}']
    folder.write_bytes("out/r.json.journal.jsonl", b'{"a": 1}\n{"b": 2}\n')
    folder.write_bytes("out/r.json.rank1.journal.jsonl", b'{"c": 3}\n')
    assert tail.read() == ['{"b": 2}', '{"c": 3}']
    assert tail.read() == []
