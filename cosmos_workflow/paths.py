"""Every path the user gives, checked before any model loads; names that become file names.

:func:`check_paths` refuses, up front and with one line naming the path and the fix, what would
otherwise fail after the model work or destroy something: an output that is a device, a FIFO, a
socket or a folder, the input file given as the output, a parent that is a file, a folder this
user cannot write in. :func:`safe_file_name` turns a user's name into one harmless file-name
component. :func:`describe_os_error` is the wording of every ``OSError`` the CLI reports.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cosmos_workflow.errors import PathError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: longest file-name stem made from a user's name (file systems allow 255 bytes per component)
MAX_NAME = 80

_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
}


def safe_file_name(name: str, *, fallback: str = "item", limit: int = MAX_NAME) -> str:
    """``name`` as one file-name component: ``[A-Za-z0-9._-]`` only, no ``..``, never starting
    with ``.`` (hidden) or ``-`` (read as an option by other tools), at most ``limit`` characters."""
    safe = _UNSAFE.sub("_", name)
    safe = re.sub(r"\.{2,}", ".", safe).strip("._-")[:limit]
    return safe or fallback


def check_paths(
    *, read: Iterable[Path] = (), write: Iterable[Path] = (), folders: Iterable[Path] = ()
) -> None:
    """Refuse unusable paths before any work; raise :class:`PathError` naming the first one.

    ``read``: files the run reads (the prompts file): they must exist and be regular files.
    ``write``: files the run replaces (the output, its journal): a regular file or nothing, none
    of ``read``, in a folder this user can write (created if missing). ``folders``: folders the
    run writes into (clips, specs): a folder or nothing, writable.
    """
    inputs = {_identity(path): path for path in read}
    for path in write:
        _check_output_file(path, inputs)
    for path in folders:
        _check_folder(path)


def _identity(path: Path) -> tuple[int, int]:
    status = _stat(path, "input file")
    if status is None:
        raise PathError(f"input file {path} not found; check the path")
    kind = file_kind(status.st_mode)
    if kind is not None:  # a FIFO too: with no writer, reading it would wait for ever
        raise PathError(f"input file {path} is {kind}, not a regular file; pass a JSON file")
    return status.st_dev, status.st_ino


def _check_output_file(path: Path, inputs: dict[tuple[int, int], Path]) -> None:
    if str(path) in ("", "."):
        raise PathError("the output path is empty; pass a file name, e.g. -o out/upsampled.json")
    status = _stat(path, "output file")
    if status is not None:
        if stat.S_ISDIR(status.st_mode):
            raise PathError(f"output {path} is a folder; pass a file path, e.g. {path / 'upsampled.json'}")
        kind = file_kind(status.st_mode)
        if kind is not None:
            raise PathError(f"output {path} is {kind}; writing would replace it: pass a regular file path")
        same = inputs.get((status.st_dev, status.st_ino))
        if same is not None:
            raise PathError(f"output {path} is the input file {same}; pass a different output file")
    _check_folder(path.parent)


def _check_folder(folder: Path) -> None:
    """``folder`` or its nearest existing ancestor is a folder this user can create files in."""
    for candidate in (folder, *folder.parents):
        status = _stat(candidate, "folder")
        if status is None:
            continue
        if not stat.S_ISDIR(status.st_mode):
            kind = file_kind(status.st_mode) or "a file"
            raise PathError(f"{candidate} is {kind}, not a folder; fix the path")
        _probe_writable(candidate)
        return


def _probe_writable(folder: Path) -> None:
    """Create and remove a hidden file: the only test that sees read-only mounts, ACLs and quotas."""
    try:
        handle, name = tempfile.mkstemp(prefix=".cosmos-write-check-", dir=folder)
    except OSError as exc:
        raise PathError(f"cannot write in folder {folder}: {os_error_fix(exc)}") from exc
    os.close(handle)
    with contextlib.suppress(OSError):
        os.unlink(name)


def _stat(path: Path, what: str) -> os.stat_result | None:
    """The path's status (symlinks followed), None when nothing is there."""
    _check_text(path, what)
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise PathError(f"{what} {path}: {os_error_fix(exc)}") from exc


def _check_text(path: Path, what: str) -> None:
    text = str(path)
    if "\x00" in text:
        raise PathError(f"{what} {text!r} contains a NUL character; fix the path")
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        raise PathError(f"{what} {text!r} holds characters no file name can have; fix the path") from None


def file_kind(mode: int) -> str | None:
    """What a non-regular file is ("a FIFO (named pipe)"), None for a regular file."""
    return None if stat.S_ISREG(mode) else _KINDS.get(stat.S_IFMT(mode), "not a regular file")


_FIXES = {
    errno.EACCES: "permission denied; fix its permissions or choose another path",
    errno.EPERM: "operation not permitted; fix its permissions or choose another path",
    errno.EROFS: "read-only file system; choose a writable folder",
    errno.ENOSPC: "no space left on the device; free some space or choose another folder",
    errno.EDQUOT: "disk quota exceeded; free some space or choose another folder",
    errno.ENAMETOOLONG: "file name too long; use a shorter name or path",
    errno.ENOENT: "no such file or folder; check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
    errno.EISDIR: "it is a folder; pass a file path",
    errno.ELOOP: "too many levels of symbolic links; check the path",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n)",
}


def os_error_fix(exc: OSError) -> str:
    """What happened and what to do about it, without the path."""
    return _FIXES.get(exc.errno or 0, f"{exc.strerror or exc}; check the path and the disk")


def describe_os_error(exc: OSError) -> str:
    """One line: the path(s) involved, what happened, and what to do about it."""
    paths = [os.fsdecode(p) for p in (exc.filename, exc.filename2) if isinstance(p, str | bytes)]
    return f"{' -> '.join(paths)}: {os_error_fix(exc)}" if paths else os_error_fix(exc)
