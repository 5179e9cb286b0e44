"""One job on the host, detached from the SSH session that started it.

The job's folder (``remote_dir/jobs/<id>/``) holds its batch, its output and journals (``out/``),
``job.pid`` (the pid of its session leader, which is also its process group), ``job.log`` (stdout
and stderr) and, once it ended, ``job.exit`` (its exit status). It runs under ``setsid`` with
its input and output redirected, so a dropped connection (or this process ending) does not stop
it; a later run finds it by its folder and reattaches. Stopping it sends SIGTERM to its process
group (a background job has SIGINT ignored; the Docker client forwards SIGTERM to the container,
whose ``--init`` passes it on), then SIGKILL. The journal loses nothing either way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cosmos_workflow.executors.remote.ssh import Connection
from cosmos_workflow.executors.remote.transfer import RemoteDir

log = logging.getLogger("cosmos_workflow")

#: sh program text (constant): $1 the job folder, the rest the command; user data only as "$@".
#: The session leader traps TERM (its child does not inherit a trap) so it outlives a stop and
#: records the job's exit status. umask 077: what the job writes (log, journals, clips) is the
#: remote user's alone, as what the upload made.
_LAUNCH = """umask 077
cd "$1" || exit 1
shift
rm -f job.exit
setsid sh -c 'trap : TERM HUP; "$@" >job.log 2>&1; echo $? >job.exit.tmp; mv job.exit.tmp job.exit' sh "$@" \
</dev/null >/dev/null 2>&1 &
echo $! >job.pid
"""

State = Literal["running", "exited", "lost", "none"]


@dataclass(frozen=True)
class JobStatus:
    state: State
    exit_code: int | None = None
    pid: int | None = None


class RemoteJob:
    """The job in ``jobs/<job_id>/`` of ``folder``."""

    def __init__(self, folder: RemoteDir, job_id: str, *, container: str | None = None) -> None:
        self.folder = folder
        self.dir = f"jobs/{job_id}"
        #: the Docker container's name (docker mode), for stopping it when its client is gone
        self.container = container

    @property
    def connection(self) -> Connection:
        return self.folder.connection

    def file(self, name: str) -> str:
        return f"{self.dir}/{name}"

    def start(self, command: Sequence[str], env: dict[str, str] | None = None) -> JobStatus:
        """Launch ``command`` in the job folder, detached; returns at once."""
        absolute = self.folder.makedirs(self.dir)
        environment = [f"{key}={value}" for key, value in (env or {}).items()]
        prefix = ["env", *environment] if environment else []
        self.connection.run(["sh", "-c", _LAUNCH, "sh", absolute, *prefix, *command], timeout=60)
        return self.status()

    def status(self) -> JobStatus:
        code = self.folder.read_bytes(self.file("job.exit")).strip()
        pid_text = self.folder.read_bytes(self.file("job.pid")).strip()
        pid = int(pid_text) if pid_text.isdigit() else None
        if code.lstrip(b"-").isdigit():
            return JobStatus("exited", int(code), pid)
        if pid is None:
            return JobStatus("none")
        alive = self.connection.run(["kill", "-0", str(pid)], check=False, timeout=30).returncode == 0
        return JobStatus("running" if alive else "lost", None, pid)

    def stop(self, *, grace_s: float = 20.0) -> JobStatus:
        """SIGTERM to the job's process group, then SIGKILL when it has not ended after ``grace_s``."""
        status = self.status()
        pid = status.pid
        if status.state != "running" or pid is None:
            return status
        self._signal("TERM", pid)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            time.sleep(0.5)
            status = self.status()
            if status.state != "running":
                return status
        log.warning("the remote job did not stop on SIGTERM within %.0f s; killing it", grace_s)
        self._signal("KILL", pid)
        if self.container:
            self.connection.run(["docker", "rm", "-f", self.container], check=False, timeout=60)
        return self.status()

    def _signal(self, name: str, pid: int) -> None:
        self.connection.run(["kill", f"-{name}", "--", f"-{pid}"], check=False, timeout=30)

    def log_tail(self, lines: int = 20) -> str:
        text = self.folder.read_bytes(self.file("job.log")).decode(errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:])


class JournalTail:
    """New complete lines of the journals in a remote folder (``*.journal.jsonl``), read from
    where the last call stopped; a line still being written waits for its newline."""

    def __init__(self, folder: RemoteDir, directory: str) -> None:
        self.folder = folder
        self.directory = directory
        self.offsets: dict[str, int] = {}
        self.partial: dict[str, bytes] = {}

    def read(self) -> list[str]:
        lines: list[str] = []
        for name in sorted(n for n in self.folder.listdir(self.directory) if n.endswith(".journal.jsonl")):
            data = self.folder.read_bytes(f"{self.directory}/{name}", offset=self.offsets.get(name, 0))
            self.offsets[name] = self.offsets.get(name, 0) + len(data)
            *complete, self.partial[name] = (self.partial.get(name, b"") + data).split(b"\n")
            lines += [line.decode(errors="replace") for line in complete if line.strip()]
        return lines
