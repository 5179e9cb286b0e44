"""Files to and from the host over SFTP, by content hash, all inside ``remote_dir``.

An upload goes to ``remote_dir/blobs/<sha256><ext>``: a file already there is not sent again. It is
written to ``remote_dir/tmp/<sha256><ext>.part`` first, its sha256 checked on the host
(``sha256sum``, an argument list), then renamed into place, so a name in ``blobs/`` always holds
the whole, verified content. An interrupted upload resumes from the part's length; a part that
fails the check is deleted and sent again from the start, once.

Downloads are the mirror image: to ``<local>.part``, resumed from its length, checked against the
host's sha256, then renamed over the local path.

Every remote path is relative to ``remote_dir``, checked lexically (no absolute path, no ``..``
escaping it) and, for what is read, against the host's resolved path (no symlink leading out).
Remote names come from hashes or :func:`safe_name`, never from raw user strings.

What this makes on the host is the remote user's alone: folders ``0700`` and files ``0600``, set
in the SFTP request that creates them (never changed afterwards, so no moment is world-readable).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import posixpath
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ParamSpec, TypeVar

import paramiko

from cosmos_workflow.errors import RemoteConnectionError, TransferError, reason
from cosmos_workflow.executors.remote.ssh import Connection

log = logging.getLogger("cosmos_workflow")

CHUNK = 1 << 20
BLOBS = "blobs"
PARTS = "tmp"
#: modes of the folders and files made on the host (the server's umask can only narrow them)
DIR_MODE = 0o700
FILE_MODE = 0o600

P = ParamSpec("P")
T = TypeVar("T")

#: told the bytes sent or received so far for the current file
ByteProgress = Callable[[int], None]

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")
_SHA256 = re.compile(r"\\?([0-9a-f]{64})\s")


def safe_name(text: str, *, limit: int = 60) -> str:
    """A file name made from any string: ``[A-Za-z0-9._-]`` only, plus a hash of the original so
    two strings that sanitise alike stay apart (``a b`` and ``a_b``)."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    stem = _SAFE.sub("_", text).strip("._-")[:limit] or "item"
    return f"{stem}-{digest}"


def safe_suffix(path: Path | str) -> str:
    """The file's extension when it is plain (``.mp4``), else nothing."""
    suffix = Path(path).suffix.lower()
    return suffix if _SUFFIX.fullmatch(suffix) else ""


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def inside_path(relative: str) -> str:
    """``relative`` normalised; refused when absolute or when it climbs out with ``..``."""
    if not relative or "\0" in relative or relative.startswith("/"):
        raise TransferError(f"remote path {relative!r} must be a path relative to remote_dir; refused")
    normal = posixpath.normpath(relative)
    if normal in (".", "..") or normal.startswith("../"):
        raise TransferError(f"remote path {relative!r} leaves remote_dir; refused")
    return normal


def open_private(sftp: paramiko.SFTPClient, path: str, mode: str) -> paramiko.SFTPFile:
    """``sftp.open(path, mode)`` for writing, a new file created ``0600``. paramiko's own ``open``
    sends no permissions, so the server would create the file 0666 less its umask (world-readable);
    this sends the same OPEN request with the mode in its attributes."""
    flags = paramiko.sftp.SFTP_FLAG_WRITE | paramiko.sftp.SFTP_FLAG_CREATE
    flags |= paramiko.sftp.SFTP_FLAG_APPEND if "a" in mode else paramiko.sftp.SFTP_FLAG_TRUNC
    attributes = paramiko.SFTPAttributes()
    attributes.st_mode = FILE_MODE
    kind, message = sftp._request(paramiko.sftp.CMD_OPEN, sftp._adjust_cwd(path), flags, attributes)
    if kind != paramiko.sftp.CMD_HANDLE:
        raise paramiko.SFTPError("Expected handle")
    return paramiko.SFTPFile(sftp, message.get_binary(), mode)


def _refused_by_host(exc: BaseException) -> bool:
    """An SFTP failure status from the server (paramiko raises it as a plain IOError), as opposed
    to the connection failing (EOF, SSH errors, socket errors)."""
    if isinstance(exc, EOFError | paramiko.SSHException | ConnectionError):
        return False
    return "Socket is closed" not in str(exc)


@dataclass(frozen=True)
class Upload:
    """Where a local file is on the host, and what it took to get it there."""

    remote: str  #: relative to remote_dir
    sha256: str
    size: int
    sent: int  #: bytes sent this time (0: it was there already)
    resumed_from: int = 0


class RemoteDir:
    """The ``remote_dir`` folder on the host: every path checked to stay inside it."""

    def __init__(self, connection: Connection, remote_dir: str) -> None:
        self.connection = connection
        self.configured = remote_dir
        self._root: str | None = None
        self._real_root: str | None = None

    # -- paths ------------------------------------------------------------------------------------

    @property
    def root(self) -> str:
        """The absolute remote folder (``~`` expanded); created on first use."""
        if self._root is None:
            root = posixpath.normpath(self.connection.expand(self.configured))
            self._mkdirs(root)
            self._real_root = str(self._sftp_call(self.connection.sftp().normalize, root))
            self._root = root
        return self._root

    def path(self, relative: str) -> str:
        """The absolute remote path of ``relative``; refused when it would leave ``remote_dir``."""
        return f"{self.root}/{inside_path(relative)}"

    def _inside(self, absolute: str) -> str:
        """``absolute`` after resolving symlinks on the host; refused when that leaves remote_dir."""
        self.root  # noqa: B018  (resolves _real_root)
        real = str(self._sftp_call(self.connection.sftp().normalize, absolute))
        if not (real + "/").startswith(f"{self._real_root}/"):
            raise TransferError(f"remote path {absolute!r} resolves to {real!r}, outside remote_dir; refused")
        return real

    def makedirs(self, relative: str) -> str:
        absolute = self.path(relative)
        self._mkdirs(absolute)
        self._inside(absolute)
        return absolute

    def _mkdirs(self, absolute: str) -> None:
        sftp = self.connection.sftp()
        missing: list[str] = []
        current = absolute
        while current not in ("/", "") and not self._is_dir(current):
            missing.append(current)
            current = posixpath.dirname(current)
        for folder in reversed(missing):
            try:
                sftp.mkdir(folder, mode=DIR_MODE)
            except OSError as exc:
                if not self._is_dir(folder):
                    raise TransferError(
                        f"cannot create {folder!r} on the host: {exc}; check remote_dir"
                    ) from exc

    def _is_dir(self, absolute: str) -> bool:
        attributes = self._stat(absolute)
        return attributes is not None and stat.S_ISDIR(attributes.st_mode or 0)

    def _stat(self, absolute: str) -> paramiko.SFTPAttributes | None:
        try:
            return self._sftp_call(self.connection.sftp().stat, absolute)
        except FileNotFoundError:
            return None

    def size(self, relative: str) -> int | None:
        """Size of a remote file, or None when it does not exist."""
        attributes = self._stat(self.path(relative))
        return attributes.st_size if attributes is not None else None

    def listdir(self, relative: str) -> list[str]:
        """Names in a remote folder; empty when it does not exist."""
        absolute = self.path(relative)
        try:
            self._inside(absolute)
            return [str(name) for name in self._sftp_call(self.connection.sftp().listdir, absolute)]
        except FileNotFoundError:
            return []

    def rename(self, relative: str, new: str) -> None:
        """Rename inside remote_dir, replacing ``new`` if it exists."""
        self._sftp_call(self.connection.sftp().posix_rename, self.path(relative), self.path(new))

    def exists(self, relative: str) -> bool:
        return self._stat(self.path(relative)) is not None

    def remove(self, relative: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._sftp_call(self.connection.sftp().remove, self.path(relative))

    def sha256(self, relative: str) -> str:
        """The file's sha256, computed on the host."""
        return self.sha256_many([relative])[relative]

    def sha256_many(self, relatives: Sequence[str]) -> dict[str, str]:
        """Each file's sha256, computed on the host in one command."""
        absolute = [self._inside(self.path(relative)) for relative in relatives]
        out = self.connection.run(["sha256sum", "--", *absolute], timeout=1800).stdout.splitlines()
        digests = [_SHA256.match(line + " ") for line in out]
        if len(digests) != len(relatives) or not all(digests):
            raise TransferError(f"sha256sum on the host printed {out[:2]!r}; is coreutils installed there?")
        return {relative: match.group(1) for relative, match in zip(relatives, digests, strict=True) if match}

    # -- small files --------------------------------------------------------------------------------

    def read_bytes(self, relative: str, *, offset: int = 0) -> bytes:
        """A (small) remote file's content from ``offset``; empty when it does not exist."""
        absolute = self.path(relative)
        try:
            self._inside(absolute)
            with self._sftp_call(self.connection.sftp().open, absolute, "rb") as handle:
                handle.seek(offset)
                return bytes(handle.read())
        except FileNotFoundError:
            return b""

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write a small file atomically: a temporary name, then rename."""
        absolute = self.path(relative)
        self._mkdirs(posixpath.dirname(absolute))
        tmp = f"{posixpath.dirname(absolute)}/.{posixpath.basename(absolute)}.{os.getpid()}.tmp"
        sftp = self.connection.sftp()
        with self._sftp_call(open_private, sftp, tmp, "wb") as handle:
            handle.write(data)
        self._sftp_call(sftp.posix_rename, tmp, absolute)

    # -- uploads ------------------------------------------------------------------------------------

    def upload(
        self, local: Path, *, sha256: str | None = None, progress: ByteProgress | None = None
    ) -> Upload:
        """Put ``local`` in ``blobs/`` by content; not sent when the host has it already."""
        digest = sha256 or file_sha256(local)
        return self._put(local, f"{BLOBS}/{digest}{safe_suffix(local)}", digest, progress, by_content=True)

    def upload_as(self, local: Path, relative: str, *, progress: ByteProgress | None = None) -> Upload:
        """Put ``local`` at ``relative`` (verified, atomic); not sent when the same content is there."""
        return self._put(local, relative, file_sha256(local), progress, by_content=False)

    def _put(
        self, local: Path, final: str, digest: str, progress: ByteProgress | None, *, by_content: bool
    ) -> Upload:
        size = local.stat().st_size
        if self.size(final) == size and (by_content or self.sha256(final) == digest):
            return Upload(final, digest, size, sent=0)
        self.makedirs(posixpath.dirname(inside_path(final)))
        self.makedirs(PARTS)
        part = f"{PARTS}/{digest}{safe_suffix(local)}.part"
        offset = self._resumable(part, size)
        sent = self._send(local, part, offset, progress)
        if self.sha256(part) != digest:
            if offset == 0:
                self.remove(part)
                raise TransferError(f"{local} arrived corrupted on the host (sha256 differs); retry the run")
            log.warning("%s: the resumed upload failed its checksum; sending it again from the start", local)
            self.remove(part)
            sent += self._send(local, part, 0, progress)
            if self.sha256(part) != digest:
                raise TransferError(f"{local} arrived corrupted on the host twice (sha256 differs)")
        self._sftp_call(self.connection.sftp().posix_rename, self.path(part), self.path(final))
        return Upload(final, digest, size, sent=sent, resumed_from=offset)

    def _resumable(self, part: str, size: int) -> int:
        have = self.size(part) or 0
        if have > size:
            self.remove(part)
            return 0
        if have:
            log.info("resuming the upload of %s at %d of %d bytes", part, have, size)
        return have

    def _send(self, local: Path, part: str, offset: int, progress: ByteProgress | None) -> int:
        absolute = self.path(part)
        sftp = self.connection.sftp()
        sent = 0
        with (
            local.open("rb") as source,
            self._sftp_call(open_private, sftp, absolute, "ab" if offset else "wb") as target,
        ):
            target.set_pipelined(True)
            source.seek(offset)
            sent = self._copy(source, target, offset, progress)
        return sent

    def _copy(self, source: IO[bytes], target: IO[bytes], done: int, progress: ByteProgress | None) -> int:
        copied = 0
        try:
            while chunk := source.read(CHUNK):
                target.write(chunk)
                copied += len(chunk)
                if progress:
                    progress(done + copied)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self.connection.close()
            raise RemoteConnectionError(
                f"the transfer stopped after {done + copied} bytes: {reason(exc)}; "
                "rerun the same command to resume it"
            ) from exc
        return copied

    # -- downloads ----------------------------------------------------------------------------------

    def download(
        self, relative: str, local: Path, *, sha256: str | None = None, progress: ByteProgress | None = None
    ) -> Path:
        """Fetch a remote file to ``local`` (verified against the host's ``sha256``, computed there
        when not given; atomic); skipped when ``local`` matches."""
        digest = sha256 or self.sha256(relative)
        if local.is_file() and file_sha256(local) == digest:
            return local
        local.parent.mkdir(parents=True, exist_ok=True)
        part = local.with_name(local.name + ".part")
        offset = part.stat().st_size if part.exists() else 0
        self._receive(relative, part, offset, progress)
        if file_sha256(part) != digest:
            part.unlink()
            if not offset:
                raise TransferError(f"{relative} arrived corrupted from the host (sha256 differs); retry")
            self._receive(relative, part, 0, progress)
            if file_sha256(part) != digest:
                part.unlink()
                raise TransferError(f"{relative} arrived corrupted from the host twice (sha256 differs)")
        os.replace(part, local)
        return local

    def _receive(self, relative: str, part: Path, offset: int, progress: ByteProgress | None) -> None:
        absolute = self._inside(self.path(relative))
        with (
            self._sftp_call(self.connection.sftp().open, absolute, "rb") as source,
            part.open("ab" if offset else "wb") as target,
        ):
            source.seek(offset)
            source.prefetch()
            self._copy(source, target, offset, progress)

    def _sftp_call(self, method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """An SFTP call; a missing file stays FileNotFoundError, the rest become our errors."""
        try:
            return method(*args, **kwargs)
        except FileNotFoundError:
            raise
        except PermissionError as exc:
            raise TransferError(
                f"permission denied on the host ({exc}); {self.connection.settings.user} must own "
                f"remote_dir {self.configured}"
            ) from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if _refused_by_host(exc) and self.connection.alive:
                raise TransferError(f"the host refused a file operation: {exc}") from exc
            self.connection.close()
            raise RemoteConnectionError(
                f"the connection to {self.connection.settings.address} dropped during a transfer "
                f"({reason(exc)}); rerun the same command to resume"
            ) from exc
