"""Host keys: the host's identity, checked against an OpenSSH known_hosts file.

``strict`` (the default) refuses a key that is not on record, naming its SHA256 fingerprint and
the fix (``cosmos-workflow remote trust``); ``accept-new`` records it. A key that differs from the
one on record is always refused. ``remote trust`` shows the host's key and records it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import paramiko

from cosmos_workflow.errors import ConfigError, HostKeyError, RemoteConnectionError, reason
from cosmos_workflow.executors.remote.settings import KNOWN_HOSTS, SSHSettings
from cosmos_workflow.userfiles import check_user_file, read_user_text


def host_key_name(host: str, port: int) -> str:
    """The name known_hosts files use: ``host`` on port 22, else ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


def describe_key(key: paramiko.PKey) -> str:
    """``ssh-ed25519 SHA256:...``: what ``ssh-keygen -lf`` shows for the same key."""
    return f"{key.get_name()} {key.fingerprint}"


class KnownHosts:
    """One OpenSSH known_hosts file: look a host up, record a key, forget a host."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        """Whether the file is there; it must then be a regular file of bounded size."""
        if not self.path.exists():
            return False
        check_user_file(self.path, KNOWN_HOSTS)
        return True

    def load(self) -> paramiko.HostKeys:
        keys = paramiko.HostKeys()
        if self.exists():
            try:
                keys.load(str(self.path))
            except Exception as exc:  # paramiko raises several unrelated types for a bad line
                raise ConfigError(
                    f"known_hosts file {self.path} cannot be read: {exc}; fix or move it"
                ) from exc
        return keys

    def load_into(self, client: paramiko.SSHClient) -> None:
        """Make this file the client's trusted keys (nothing trusted when it does not exist)."""
        if self.exists():
            try:
                client.load_host_keys(str(self.path))
            except Exception as exc:
                raise ConfigError(
                    f"known_hosts file {self.path} cannot be read: {exc}; fix or move it"
                ) from exc

    def keys_for(self, name: str) -> list[paramiko.PKey]:
        found = self.load().lookup(name)
        return list(found.values()) if found is not None else []

    def record(self, name: str, key: paramiko.PKey) -> None:
        """Append ``name key`` (the file and its folder are created private when missing)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        line = paramiko.hostkeys.HostKeyEntry([name], key).to_line()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            if handle.tell() > 0 and not _ends_with_newline(self.path):
                handle.write("\n")
            handle.write(line)

    def forget(self, name: str) -> int:
        """Remove every line for ``name`` (plain or hashed); the file is rewritten atomically."""
        if not self.exists():
            return 0
        lines = read_user_text(self.path, KNOWN_HOSTS).splitlines(keepends=True)
        kept = [line for line in lines if not _line_names(line, name)]
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        os.chmod(tmp, self.path.stat().st_mode & 0o777)
        os.replace(tmp, self.path)
        return len(lines) - len(kept)


def _line_names(line: str, name: str) -> bool:
    """Whether a known_hosts line is for ``name`` (hashed ``|1|salt|hash`` names included)."""
    fields = line.split()
    if not fields or fields[0].startswith("#"):
        return False
    hostname_field = fields[1] if fields[0].startswith("@") and len(fields) > 1 else fields[0]
    return any(
        entry == name or (entry.startswith("|1|") and paramiko.HostKeys.hash_host(name, entry) == entry)
        for entry in hostname_field.split(",")
    )


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def unknown_key_error(settings: SSHSettings, name: str, key: paramiko.PKey) -> HostKeyError:
    return HostKeyError(
        f"host key of {name} is unknown: {describe_key(key)} is not in {settings.known_hosts}; "
        "check that fingerprint with the host's admin (on the host: ssh-keygen -lf "
        f"/etc/ssh/ssh_host_ed25519_key.pub), then run `{settings.command('remote', 'trust')}` to record "
        'it, or set host_key_policy = "accept-new" in [remote]',
        host=name,
        fingerprint=key.fingerprint,
    )


def changed_key_error(
    settings: SSHSettings, name: str, sent: paramiko.PKey, known: paramiko.PKey
) -> HostKeyError:
    return HostKeyError(
        f"host key of {name} has CHANGED: {settings.known_hosts} has {describe_key(known)}, the host "
        f"sent {describe_key(sent)}; the connection may be intercepted, so nothing was sent. If the "
        "host was reinstalled, check the new fingerprint with its admin, then run "
        f"`{settings.command('remote', 'trust', '--replace')}`",
        host=name,
        fingerprint=sent.fingerprint,
    )


def fetch_host_key(settings: SSHSettings) -> paramiko.PKey:
    """The key the host presents, without authenticating (for ``remote trust`` and ``remote check``)."""
    name = host_key_name(settings.host, settings.port)
    known = KnownHosts(settings.known_hosts).keys_for(name)
    try:
        sock = socket.create_connection((settings.host, settings.port), timeout=settings.connect_timeout)
    except OSError as exc:
        raise unreachable(settings, exc) from exc
    transport = paramiko.Transport(sock)
    try:
        if known:  # ask for the type on record, as the connection itself will
            options = transport.get_security_options()
            first = known[0].get_name()
            options.key_types = [first, *[t for t in options.key_types if t != first]]
        transport.start_client(timeout=settings.connect_timeout)
        return transport.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise unreachable(settings, exc) from exc
    finally:
        transport.close()


@dataclass(frozen=True)
class HostKeyStatus:
    """The key the host presents, and what known_hosts says about it."""

    name: str  #: as known_hosts writes it: host, or [host]:port
    key: paramiko.PKey
    known: tuple[paramiko.PKey, ...]

    @property
    def trusted(self) -> bool:
        return any(k == self.key for k in self.known)

    @property
    def changed(self) -> bool:
        return bool(self.known) and not self.trusted


def host_key_status(settings: SSHSettings) -> HostKeyStatus:
    name = host_key_name(settings.host, settings.port)
    key = fetch_host_key(settings)
    return HostKeyStatus(name, key, tuple(KnownHosts(settings.known_hosts).keys_for(name)))


def trust_host(status: HostKeyStatus, settings: SSHSettings, *, replace: bool = False) -> str:
    """Record the host's key in known_hosts; a different key on record is replaced only with
    ``replace``. Returns what was done: ``already``, ``recorded`` or ``replaced``."""
    if status.trusted:
        return "already"
    refuse_changed(status, settings, replace=replace)
    known_hosts = KnownHosts(settings.known_hosts)
    if status.changed:
        known_hosts.forget(status.name)
    known_hosts.record(status.name, status.key)
    return "replaced" if status.changed else "recorded"


def refuse_changed(status: HostKeyStatus, settings: SSHSettings, *, replace: bool) -> None:
    """A key that differs from the one on record is refused, unless ``replace`` says the host was
    reinstalled (asked before any question about recording it)."""
    if status.changed and not replace:
        raise changed_key_error(settings, status.name, status.key, status.known[0])


def unreachable(settings: SSHSettings, exc: BaseException, tries: int = 1) -> RemoteConnectionError:
    after = f" (after {tries} tries)" if tries > 1 else ""
    return RemoteConnectionError(
        f"cannot reach {settings.host}:{settings.port}{after}: {reason(exc)}; check [remote] "
        "host and port, that sshd runs there, and the network"
    )
