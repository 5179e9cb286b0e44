"""File-system primitives shared by every layer: atomic JSON writes and one-writer locks."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from cosmos_workflow.errors import OutputBusyError


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename over ``path``.

    The temp file is removed if anything fails (a full disk, an interrupt), so no debris is left.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            tmp.unlink()
        raise


def lock_path_for(target: Path) -> Path:
    """The hidden lock file of ``target``: ``out.json`` -> ``.out.json.lock``."""
    return target.with_name(f".{target.name}.lock")


@contextmanager
def exclusive_lock(target: Path, *, owner_of: Path | None = None) -> Iterator[None]:
    """Be the only process writing ``target``; refuse at once (no waiting) if another live one is.

    The lock is an ``flock`` on a hidden sidecar file holding the owner's pid. The kernel drops it
    when the owner dies, even by SIGKILL, so a killed run never blocks its rerun. The file itself
    stays: removing it while another process has it open would let two owners in. ``owner_of``
    names what the user knows the lock by (the output file) in the refusal.
    """
    lock = lock_path_for(target)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputBusyError(_busy_message(owner_of or target, _owner(fd))) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _owner(fd: int) -> str:
    with suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode().strip()
        if text.isdigit():
            return f"pid {text}"
    return "another process"


def _busy_message(target: Path, owner: str) -> str:
    return (
        f"another run ({owner}) is writing {target} right now; wait for it to finish "
        "(a rerun then resumes), stop it, or pass a different --output-file"
    )
