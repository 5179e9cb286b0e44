"""SSH to the GPU host with paramiko.

- Key authentication only: the ``ssh_key`` file and the ssh-agent's keys; no password is ever
  asked for, sent or stored (an encrypted key file must be loaded into the agent).
- Host keys are checked against ``known_hosts``. ``strict`` refuses an unknown key, naming its
  SHA256 fingerprint and the fix (``cosmos-workflow remote trust``); ``accept-new`` records it.
  A changed key is always refused.
- Connect, banner and authentication timeouts, keepalives, and retries with exponential backoff
  on transient network errors only (refused, reset, timed out): never on a key or auth problem.
- Commands are argument lists, joined with ``shlex.quote`` for the remote shell: a user string is
  always one literal argument, never shell syntax.

The client factory is injectable (tests swap the network edge); the real thing is tested against
an OpenSSH server on 127.0.0.1 (``scripts/ci/sshd.sh``).
"""

from __future__ import annotations

import contextlib
import logging
import select
import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import paramiko
import tenacity

from cosmos_workflow.errors import (
    ConfigError,
    HostKeyError,
    RemoteAuthError,
    RemoteCommandError,
    RemoteConnectionError,
    reason,
)
from cosmos_workflow.executors.remote.hostkeys import (
    KnownHosts,
    changed_key_error,
    describe_key,
    host_key_name,
    unknown_key_error,
    unreachable,
)
from cosmos_workflow.executors.remote.settings import SSHSettings, check_key_files

log = logging.getLogger("cosmos_workflow")
# paramiko reports every connection and SFTP session at INFO, and a dropped connection from its
# transport thread at ERROR ("Socket exception: ..."); our own errors say what happened and the fix
logging.getLogger("paramiko").setLevel(logging.CRITICAL)

ClientFactory = Callable[[], paramiko.SSHClient]

#: errors of the network, not of the configuration: worth another try after a pause
_TRANSIENT_OS = (
    TimeoutError,
    ConnectionRefusedError,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    EOFError,
    paramiko.ssh_exception.NoValidConnectionsError,
)
_POLL_S = 0.5
#: sh program text (constant): run "$@" in the folder "$1"
_IN_FOLDER = 'cd -- "$1" && shift && exec "$@"'


class _UnknownKeyPolicy(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """strict: refuse (with the fingerprint and the fix); accept-new: record and go on."""

    def __init__(self, settings: SSHSettings) -> None:
        self.settings = settings

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if self.settings.host_key_policy != "accept-new":
            raise unknown_key_error(self.settings, hostname, key)
        KnownHosts(self.settings.known_hosts).record(hostname, key)
        log.warning(
            "recorded the new host key of %s (%s) in %s",
            hostname,
            describe_key(key),
            self.settings.known_hosts,
        )


class _Transient(RemoteConnectionError):
    """A network error worth retrying."""


@dataclass(frozen=True)
class CommandResult:
    """A finished remote command."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class Connection:
    """One SSH connection to the host; opened on first use, reopened by :meth:`reconnect`."""

    def __init__(
        self,
        settings: SSHSettings,
        *,
        client_factory: ClientFactory = paramiko.SSHClient,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._factory = client_factory
        self._sleep = sleep
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._home: str | None = None

    def __enter__(self) -> Connection:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lifecycle --------------------------------------------------------------------------------

    def open(self) -> Connection:
        """Connect (retrying transient network errors with backoff); a no-op when connected."""
        if self._client is not None and self.alive:
            return self
        self.close()
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient),
            stop=tenacity.stop_after_attempt(self.settings.connect_attempts),
            wait=tenacity.wait_exponential(multiplier=1, min=1, max=10),
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            self._client = retrying(self._connect_once)
        except _Transient as exc:
            raise unreachable(self.settings, exc.__cause__ or exc, self.settings.connect_attempts) from exc
        return self

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("SSH to %s failed (%s); retrying", self.settings.address, error)

    @property
    def alive(self) -> bool:
        transport = self._client.get_transport() if self._client else None
        return transport is not None and transport.is_active()

    def close(self) -> None:
        """Close the connection; a dead one (its transport gone) closes without complaint."""
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            if self._sftp is not None:
                self._sftp.close()
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            if self._client is not None:
                self._client.close()
        self._client, self._sftp = None, None

    def reconnect(self) -> Connection:
        self.close()
        return self.open()

    def _connect_once(self) -> paramiko.SSHClient:
        check_key_files(self.settings)  # a missing key is explained by _classify
        client = self._factory()
        client.set_missing_host_key_policy(_UnknownKeyPolicy(self.settings))
        KnownHosts(self.settings.known_hosts).load_into(client)
        try:
            client.connect(**self._connect_arguments())
        except BaseException as exc:
            client.close()
            raise self._classify(exc) from exc
        transport = client.get_transport()
        if transport is not None and self.settings.keepalive:
            transport.set_keepalive(self.settings.keepalive)
        return client

    def _connect_arguments(self) -> dict[str, Any]:
        s = self.settings
        return {
            "hostname": s.host,
            "port": s.port,
            "username": s.user,
            "key_filename": str(s.ssh_key) if s.ssh_key else None,
            "password": None,
            "passphrase": None,
            "allow_agent": True,
            "look_for_keys": False,
            "timeout": s.connect_timeout,
            "banner_timeout": s.connect_timeout,
            "auth_timeout": s.connect_timeout,
            "channel_timeout": s.connect_timeout,
        }

    def _classify(self, exc: BaseException) -> BaseException:
        s = self.settings
        if isinstance(exc, HostKeyError | KeyboardInterrupt):
            return exc
        if isinstance(exc, paramiko.BadHostKeyException):
            return changed_key_error(s, host_key_name(s.host, s.port), exc.key, exc.expected_key)
        if isinstance(exc, paramiko.PasswordRequiredException):
            return RemoteAuthError(
                f"key {s.ssh_key} is passphrase-protected; load it into ssh-agent (ssh-add {s.ssh_key}): "
                "cosmos-workflow never asks for or stores a passphrase"
            )
        if isinstance(exc, paramiko.AuthenticationException) or "No authentication methods" in str(exc):
            offered = f"key {s.ssh_key} and the ssh-agent's keys" if s.ssh_key else "the ssh-agent's keys"
            return RemoteAuthError(
                f"{s.address} refused {offered}: add the public key to ~/.ssh/authorized_keys of "
                f"{s.user} on the host, or set [remote] ssh_key to a key it accepts"
            )
        if isinstance(exc, FileNotFoundError) and s.ssh_key and not s.ssh_key.exists():
            return ConfigError(f"[remote] ssh_key {s.ssh_key} does not exist; fix the path")
        if isinstance(exc, _TRANSIENT_OS) or _banner_problem(exc):
            return _Transient(reason(exc))
        if isinstance(exc, OSError | paramiko.SSHException):
            return unreachable(s, exc)
        return exc

    # -- commands ---------------------------------------------------------------------------------

    @property
    def client(self) -> paramiko.SSHClient:
        self.open()
        assert self._client is not None
        return self._client

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = 300.0,
        check: bool = True,
        stdin: bytes | None = None,
        cwd: str | None = None,
    ) -> CommandResult:
        """Run ``argv`` on the host (in ``cwd``) and wait; ``check`` raises on a non-zero exit."""
        if cwd is not None:
            argv = ["sh", "-c", _IN_FOLDER, "sh", cwd, *argv]
        command = shlex.join(argv)
        channel = self._session(command)
        try:
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
            out, err = _drain(channel, timeout, command)
            code = _exit_status(channel)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._dropped(command, exc) from exc
        finally:
            channel.close()
        result = CommandResult(tuple(argv), code, out.decode(errors="replace"), err.decode(errors="replace"))
        if check and code != 0:
            raise command_failed(self.settings, result)
        return result

    def stream(self, argv: Sequence[str]) -> Iterator[str]:
        """Run ``argv`` and yield its stdout lines as they come (stderr is logged at debug)."""
        command = shlex.join(argv)
        channel = self._session(command)
        buffer = b""
        try:
            channel.shutdown_write()
            while not _finished(channel):
                select.select([channel], [], [], _POLL_S)
                while channel.recv_stderr_ready():
                    log.debug("%s: %s", argv[0], channel.recv_stderr(65536).decode(errors="replace"))
                if channel.recv_ready():
                    buffer += channel.recv(65536)
                    *lines, buffer = buffer.split(b"\n")
                    yield from (line.decode(errors="replace") for line in lines)
            if buffer:
                yield buffer.decode(errors="replace")
            _exit_status(channel)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._dropped(command, exc) from exc
        finally:
            channel.close()

    def _session(self, command: str) -> paramiko.Channel:
        self._check_not_dropped(command)
        transport = self.client.get_transport()
        try:
            assert transport is not None
            channel = transport.open_session(timeout=self.settings.connect_timeout)
            channel.exec_command(command)
        except (OSError, EOFError, paramiko.SSHException, AssertionError) as exc:
            raise self._dropped(command, exc) from exc
        return channel

    def _check_not_dropped(self, command: str) -> None:
        """A connection that died since its last use is reported as dropped, not silently reopened:
        whether paramiko's transport thread noticed first must not decide whether the caller hears
        of it (it reconnects with :meth:`open` and says so)."""
        if self._client is not None and not self.alive:
            closed = ConnectionResetError("the connection was closed")
            raise self._dropped(command, closed) from closed

    def _dropped(self, command: str, exc: BaseException) -> RemoteConnectionError:
        self.close()
        return RemoteConnectionError(
            f"the connection to {self.settings.address} dropped during `{_short(command)}`: "
            f"{reason(exc)}; rerun the same command to reconnect and resume"
        )

    # -- files ------------------------------------------------------------------------------------

    def sftp(self) -> paramiko.SFTPClient:
        self._check_not_dropped("sftp")
        if self._sftp is None:
            try:
                self._sftp = self.client.open_sftp()
            except (OSError, EOFError, paramiko.SSHException) as exc:
                raise self._dropped("sftp", exc) from exc
            self._sftp.get_channel().settimeout(self.settings.connect_timeout * 6)
        return self._sftp

    def home(self) -> str:
        """The remote user's home folder (absolute)."""
        if self._home is None:
            self._home = self.sftp().normalize(".")
        return self._home

    def expand(self, path: str) -> str:
        """A configured remote path with ``~`` replaced by the remote home."""
        if path == "~" or path.startswith("~/"):
            return self.home() + path[1:]
        return path


def _exit_status(channel: paramiko.Channel) -> int:
    """The command's exit status; a channel closed without one means the connection dropped."""
    code = int(channel.recv_exit_status())
    transport = channel.get_transport()
    if code == -1 and not (transport is not None and transport.is_active()):
        raise EOFError("the connection closed before the command ended")
    return code


def _banner_problem(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, paramiko.SSHException) and ("banner" in text or "eof" in text or "reset" in text)


def _drain(channel: paramiko.Channel, timeout: float | None, command: str) -> tuple[bytes, bytes]:
    """Both output streams until the command's end; stderr read alongside so neither fills up."""
    deadline = None if timeout is None else time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    while not _finished(channel):
        if deadline is not None and time.monotonic() > deadline:
            raise RemoteCommandError(f"`{_short(command)}` timed out after {timeout:.0f} s on the host")
        select.select([channel], [], [], _POLL_S)
        while channel.recv_ready():
            out += channel.recv(65536)
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(65536)
    return bytes(out), bytes(err)


def _finished(channel: paramiko.Channel) -> bool:
    """All output read and the exit status in. sshd may send the status before the last output, so
    the end is the channel's EOF (it follows every byte of both streams), then the status."""
    if channel.recv_ready() or channel.recv_stderr_ready():
        return False
    if channel.closed:
        return True
    if not channel.eof_received:
        return False
    return bool(channel.status_event.wait(_POLL_S))


def command_failed(settings: SSHSettings, result: CommandResult) -> RemoteCommandError:
    detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["no output"]
    return RemoteCommandError(
        f"`{_short(shlex.join(result.argv))}` failed on {settings.host} "
        f"(exit {result.returncode}): {detail[0]}",
        returncode=result.returncode,
        stderr=result.stderr,
    )


def _short(command: str, limit: int = 120) -> str:
    return command if len(command) <= limit else command[: limit - 3] + "..."
