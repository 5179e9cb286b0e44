"""Which connection errors are retried: the network edge swapped for a scripted client.

The real network is tested against sshd on loopback (tests/integration/test_remote_ssh.py); here
only the classification is checked, because a reset or a banner timeout cannot be caused on demand.
"""

from __future__ import annotations

from collections.abc import Callable

import paramiko
import pytest

from cosmos_workflow.errors import RemoteAuthError, RemoteConnectionError
from cosmos_workflow.executors.remote import Connection, SSHSettings

SETTINGS = SSHSettings(
    host="gpu.example", user="me", known_hosts="/nonexistent/known_hosts", connect_attempts=4
)


def scripted(errors: list[BaseException]) -> tuple[Callable[[], paramiko.SSHClient], list[int]]:
    """A client factory whose connect raises the given errors in turn, then succeeds."""
    calls: list[int] = []

    class Client(paramiko.SSHClient):  # type: ignore[misc]
        def connect(self, **kwargs: object) -> None:
            calls.append(1)
            if errors:
                raise errors.pop(0)

    return Client, calls


@pytest.mark.parametrize(
    "error",
    [
        ConnectionResetError("reset by peer"),
        TimeoutError("timed out"),
        paramiko.SSHException("Error reading SSH protocol banner"),
        EOFError(),
    ],
)
def test_transient_errors_are_retried_with_growing_waits(error: BaseException) -> None:
    factory, calls = scripted([error, error])
    waits: list[float] = []
    Connection(SETTINGS, client_factory=factory, sleep=waits.append).open()
    assert len(calls) == 3
    assert len(waits) == 2 and waits[0] < waits[1]


def test_retries_stop_after_the_configured_attempts() -> None:
    factory, calls = scripted([ConnectionResetError("reset")] * 10)
    with pytest.raises(RemoteConnectionError, match=r"cannot reach gpu.example:22 \(after 4 tries\): reset"):
        Connection(SETTINGS, client_factory=factory, sleep=lambda _: None).open()
    assert len(calls) == 4


@pytest.mark.parametrize(
    ("error", "kind", "message"),
    [
        (paramiko.AuthenticationException("denied"), RemoteAuthError, "refused the ssh-agent's keys"),
        (paramiko.SSHException("No authentication methods available"), RemoteAuthError, "authorized_keys"),
        (paramiko.SSHException("Incompatible ssh peer"), RemoteConnectionError, "Incompatible ssh peer"),
    ],
)
def test_configuration_errors_are_not_retried(
    error: BaseException, kind: type[Exception], message: str
) -> None:
    factory, calls = scripted([error])
    with pytest.raises(kind, match=message):
        Connection(SETTINGS, client_factory=factory, sleep=lambda _: None).open()
    assert len(calls) == 1
