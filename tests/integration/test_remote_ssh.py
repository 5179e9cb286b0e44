"""SSH against a real OpenSSH server on 127.0.0.1: host keys, key-only auth, argv, timeouts."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

import paramiko
import pytest

from cosmos_workflow.errors import (
    ConfigError,
    HostKeyError,
    RemoteAuthError,
    RemoteCommandError,
    RemoteConnectionError,
)
from cosmos_workflow.executors.remote import Connection, KnownHosts, RemoteConfig, host_key_status, trust_host
from tests.sshd import Sshd, drop

HOSTILE = ["a b", "it's", 'say "hi"', "$(touch pwned)", "`touch pwned`", "x; touch pwned", "a\\b", "*", "~"]


def _settings(config: RemoteConfig, **changes: object) -> RemoteConfig:
    return config.model_copy(update={"remote": config.remote.model_copy(update=changes)})


def _server_key(sshd: Sshd) -> paramiko.PKey:
    kind, blob = sshd.host_key_pub.read_text().split()[:2]
    return paramiko.PKey.from_type_string(kind, __import__("base64").b64decode(blob))


def test_arguments_reach_the_host_literally(remote_config: RemoteConfig) -> None:
    with Connection(remote_config.remote) as connection:
        result = connection.run(["printf", "%s\\n", *HOSTILE], timeout=30)
        assert result.stdout.splitlines() == HOSTILE
        assert connection.run(["test", "-e", f"{connection.home()}/pwned"], check=False).returncode == 1


def test_exit_status_and_stderr_come_back(remote_config: RemoteConfig) -> None:
    with Connection(remote_config.remote) as connection:
        result = connection.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False)
        assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
        with pytest.raises(RemoteCommandError, match=r"failed on 127.0.0.1 \(exit 3\): err") as caught:
            connection.run(["sh", "-c", "echo err >&2; exit 3"])
        assert caught.value.returncode == 3


def test_large_output_on_both_streams_does_not_stall(remote_config: RemoteConfig) -> None:
    script = "head -c 3000000 /dev/zero | tr '\\0' o; head -c 3000000 /dev/zero | tr '\\0' e >&2"
    with Connection(remote_config.remote) as connection:
        result = connection.run(["sh", "-c", script], timeout=60)
    assert (len(result.stdout), len(result.stderr)) == (3_000_000, 3_000_000)


def test_command_timeout(remote_config: RemoteConfig) -> None:
    with (
        Connection(remote_config.remote) as connection,
        pytest.raises(RemoteCommandError, match="timed out after 1 s"),
    ):
        connection.run(["sleep", "30"], timeout=1)


def test_stream_yields_lines_as_they_come(remote_config: RemoteConfig) -> None:
    with Connection(remote_config.remote) as connection:
        lines = list(connection.stream(["sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.1; done"]))
    assert lines == ["line 1", "line 2", "line 3"]


def test_home_is_expanded_for_configured_paths(remote_config: RemoteConfig, sshd: Sshd) -> None:
    with Connection(remote_config.remote) as connection:
        assert connection.expand("~/x y") == f"{sshd.home}/x y"
        assert connection.expand("/abs/~") == "/abs/~"


def test_unknown_host_key_is_refused_with_its_fingerprint(
    remote_config: RemoteConfig, tmp_path: Path
) -> None:
    config = _settings(remote_config, known_hosts=tmp_path / "empty_known_hosts")
    with pytest.raises(HostKeyError) as caught:
        Connection(config.remote).open()
    status = host_key_status(config.remote)
    message = str(caught.value)
    assert status.key.fingerprint in message and status.key.fingerprint.startswith("SHA256:")
    assert "cosmos-workflow remote trust" in message
    assert not (tmp_path / "empty_known_hosts").exists()


def test_accept_new_records_the_key_then_connects(
    remote_config: RemoteConfig, tmp_path: Path, sshd: Sshd
) -> None:
    path = tmp_path / "new" / "known_hosts"
    config = _settings(remote_config, known_hosts=path, host_key_policy="accept-new")
    with Connection(config.remote) as connection:
        assert connection.run(["true"]).returncode == 0
    assert KnownHosts(path).keys_for(f"[{sshd.host}]:{sshd.port}") == [_server_key(sshd)]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    strict = _settings(config, host_key_policy="strict")
    with Connection(strict.remote) as connection:  # now known: strict accepts it
        assert connection.run(["true"]).returncode == 0


@pytest.mark.parametrize("policy", ["strict", "accept-new"])
def test_changed_host_key_is_refused_whatever_the_policy(
    remote_config: RemoteConfig, tmp_path: Path, sshd: Sshd, policy: str
) -> None:
    path = tmp_path / "known_hosts"
    impostor = paramiko.Ed25519Key.generate() if hasattr(paramiko.Ed25519Key, "generate") else None
    if impostor is None:
        impostor = _other_ed25519_key(tmp_path)
    KnownHosts(path).record(f"[{sshd.host}]:{sshd.port}", impostor)
    config = _settings(remote_config, known_hosts=path, host_key_policy=policy)
    with pytest.raises(HostKeyError, match="has CHANGED") as caught:
        Connection(config.remote).open()
    assert _server_key(sshd).fingerprint in str(caught.value)
    assert impostor.fingerprint in str(caught.value)
    assert "remote trust --replace" in str(caught.value)


def _other_ed25519_key(tmp_path: Path) -> paramiko.PKey:
    import subprocess

    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return paramiko.Ed25519Key.from_private_key_file(str(key))


def test_trust_records_then_replace_swaps_a_changed_key(
    remote_config: RemoteConfig, tmp_path: Path, sshd: Sshd
) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(
        "# kept comment\nother.example ssh-ed25519 " + _other_ed25519_key(tmp_path).get_base64() + "\n"
    )
    settings = _settings(remote_config, known_hosts=path).remote
    assert trust_host(host_key_status(settings), settings) == "recorded"
    assert trust_host(host_key_status(settings), settings) == "already"
    name = f"[{sshd.host}]:{sshd.port}"
    KnownHosts(path).forget(name)
    KnownHosts(path).record(name, _other_ed25519_key(tmp_path / ".."))
    with pytest.raises(HostKeyError, match="CHANGED"):
        trust_host(host_key_status(settings), settings)
    assert trust_host(host_key_status(settings), settings, replace=True) == "replaced"
    assert KnownHosts(path).keys_for(name) == [_server_key(sshd)]
    assert path.read_text().startswith("# kept comment\nother.example ")
    with Connection(settings) as connection:
        assert connection.run(["true"]).returncode == 0


def test_hashed_known_hosts_entries_are_honoured(
    remote_config: RemoteConfig, tmp_path: Path, sshd: Sshd
) -> None:
    path = tmp_path / "known_hosts"
    name = f"[{sshd.host}]:{sshd.port}"
    hashed = paramiko.HostKeys.hash_host(name)
    key = _server_key(sshd)
    path.write_text(f"{hashed} {key.get_name()} {key.get_base64()}\n")
    settings = _settings(remote_config, known_hosts=path).remote
    with Connection(settings) as connection:
        assert connection.run(["true"]).returncode == 0
    assert KnownHosts(path).forget(name) == 1


def test_wrong_client_key_is_refused(
    remote_config: RemoteConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    import subprocess

    wrong = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    config = _settings(remote_config, ssh_key=wrong)
    with pytest.raises(RemoteAuthError, match=r"refused key .*wrong_key.*authorized_keys"):
        Connection(config.remote).open()


def test_passphrase_protected_key_points_to_the_agent(
    remote_config: RemoteConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    import subprocess

    locked = tmp_path / "locked_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(locked)], check=True)
    config = _settings(remote_config, ssh_key=locked)
    with pytest.raises(RemoteAuthError, match="passphrase-protected; load it into ssh-agent"):
        Connection(config.remote).open()


def test_missing_key_file_is_a_config_error(remote_config: RemoteConfig, tmp_path: Path) -> None:
    config = _settings(remote_config, ssh_key=tmp_path / "nope")
    with pytest.raises((ConfigError, RemoteAuthError), match="nope"):
        Connection(config.remote).open()


def test_unreachable_port_is_retried_then_reported(
    remote_config: RemoteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = _settings(remote_config, port=port, connect_attempts=3)
    waits: list[float] = []
    with caplog.at_level(logging.WARNING), pytest.raises(RemoteConnectionError, match=r"after 3 tries"):
        Connection(config.remote, sleep=waits.append).open()
    assert len(waits) == 2 and waits[1] > waits[0]


def test_connection_dropped_mid_command_is_reported_then_reopened(remote_config: RemoteConfig) -> None:
    connection = Connection(remote_config.remote).open()
    lines = connection.stream(["sh", "-c", "echo started; sleep 20; echo never"])
    assert next(lines) == "started"
    drop(connection)
    with pytest.raises(RemoteConnectionError, match="dropped during `sh -c"):
        next(lines)
    assert connection.run(["echo", "back"]).stdout == "back\n"  # opened again on the next use
    connection.close()


def test_commands_are_quoted_for_a_posix_shell() -> None:
    assert shlex.join(["echo", "$(id)"]) == "echo '$(id)'"
