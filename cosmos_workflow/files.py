"""File-system primitives shared by every layer: atomic JSON and text writes, one-writer locks."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path

from cosmos_workflow.errors import OutputBusyError, PathError
from cosmos_workflow.text import replace_lone_surrogates


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON atomically (see :func:`write_atomic`), indented, UTF-8."""
    encoder = json.JSONEncoder(indent=2, ensure_ascii=False)
    write_atomic(path, [*encoder.iterencode(data), "\n"])


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` atomically (see :func:`write_atomic`), UTF-8."""
    write_atomic(path, [text])


def write_atomic(path: Path, chunks: Iterable[str]) -> None:
    """Write ``chunks`` to a temp file in the same folder, fsync, then rename over ``path``.

    The temp file is removed if anything fails (a full disk, an interrupt), so no debris is left.
    A special file or a folder at ``path`` is never replaced. Text UTF-8 cannot hold (a lone
    surrogate) is written as U+FFFD rather than failing the write.
    """
    _refuse_special(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            for chunk in chunks:  # a JSON chunk never splits a surrogate: it is one character
                handle.write(replace_lone_surrogates(chunk))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            tmp.unlink()
        raise


def keep_copy(path: Path, *, now: datetime) -> Path:
    """Copy ``path`` beside itself as ``<name>.bak-<UTC time>`` (``-2``, ``-3``... when taken;
    an existing file is never overwritten) before it is replaced; return the copy's path."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    number = 1
    while True:
        copy = path.with_name(f"{path.name}.bak-{stamp}" + (f"-{number}" if number > 1 else ""))
        try:
            _copy_to_new_file(path, copy)
        except FileExistsError:
            number += 1
            continue
        return copy


def _copy_to_new_file(source: Path, target: Path) -> None:
    """Copy into a file that must not exist yet, fsync'd; a failed copy leaves nothing behind."""
    with source.open("rb") as reader, target.open("xb") as writer:
        try:
            shutil.copyfileobj(reader, writer)
            writer.flush()
            os.fsync(writer.fileno())
        except BaseException:
            target.unlink(missing_ok=True)
            raise


def _refuse_special(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    if not stat.S_ISREG(mode):
        raise PathError(f"{path} exists and is not a regular file; it is left alone: pass another path")


def lock_path_for(target: Path) -> Path:
    """The hidden lock file of ``target``: ``out.json`` -> ``.out.json.lock``."""
    return target.with_name(f".{target.name}.lock")


@contextmanager
def flocked(lock: Path, *, wait: bool = True, on_wait: Callable[[], None] | None = None) -> Iterator[int]:
    """Hold an exclusive ``flock`` on the file ``lock`` (created if missing) for the block.

    Busy: with ``wait`` (after calling ``on_wait``) block until it is free, else raise
    :class:`BlockingIOError`. The kernel drops the lock when its process dies, even by SIGKILL.
    """
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


@contextmanager
def exclusive_lock(target: Path, *, owner_of: Path | None = None) -> Iterator[None]:
    """Be the only process writing ``target``; refuse at once (no waiting) if another live one is.

    The lock is an ``flock`` on a hidden sidecar file holding the owner's pid (see
    :func:`flocked`), so a killed run never blocks its rerun. The file itself stays: removing it
    while another process has it open would let two owners in. ``owner_of`` names what the user
    knows the lock by (the output file) in the refusal.
    """
    lock = lock_path_for(target)
    try:
        with flocked(lock, wait=False) as fd:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
    except BlockingIOError:
        raise OutputBusyError(_busy_message(owner_of or target, _owner(lock))) from None


def _owner(lock: Path) -> str:
    with suppress(OSError, ValueError):
        text = lock.read_text(encoding="ascii")[:32].strip()
        if text.isdigit():
            return f"pid {text}"
    return "another process"


def _busy_message(target: Path, owner: str) -> str:
    return (
        f"another run ({owner}) is writing {target} right now; wait for it to finish "
        "(a rerun then resumes), stop it, or pass a different --output-file"
    )
