"""The one door for every file a user names: prompts files, spec files, journals, outputs read
back, TOML configs, SSH keys, known_hosts, a checkpoint's params.json.

A :class:`UserFile` declares, once, what a kind of file is called in messages, how large it may
be, which error it raises, what the fix is, and how it is parsed. Opening one:

- regular files only: a FIFO, device, socket or folder is refused with one line naming the path
  and the fix. The path is ``stat``-ed before it is opened (a device is never opened), opened with
  ``O_NONBLOCK`` (a FIFO never blocks) and ``fstat``-ed once open (a file swapped in between is
  still refused);
- a size cap per kind, checked before reading and while reading (a file that grows is cut off);
- bounded nesting for JSON and TOML: a bracket-depth scan refuses text nested deeper than
  :data:`MAX_NESTING` before ``json`` or ``tomllib`` could recurse (they raise ``RecursionError``
  at about a thousand levels).
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from cosmos_workflow.errors import CosmosWorkflowError
from cosmos_workflow.paths import describe_os_error, file_kind

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
#: deepest bracket nesting a JSON or TOML file may have; ours need 4 at most
MAX_NESTING = 64

Syntax = Literal["json", "toml", "text"]


@dataclass(frozen=True, kw_only=True)
class UserFile:
    """A kind of file users name, declared once where it is read."""

    what: str  #: its name in messages: "prompts file", "config file"
    max_bytes: int  #: larger is refused before anything is read
    error: type[CosmosWorkflowError]  #: raised for every problem
    fix: str  #: what to do when it is unusable: "pass a JSON list or JSONL file"
    missing: str = "check the path"  #: what to do when it is not there
    syntax: Syntax = "text"  #: "json" and "toml" text is refused when nested too deep
    encoding: str = "utf-8"

    def refuse(self, path: Path, problem: str) -> CosmosWorkflowError:
        """The error for ``path``: ``<what> <path> <problem>; <fix>``."""
        return self.error(f"{self.what} {path} {problem}; {self.fix}")


def open_user_file(path: Path, kind: UserFile) -> io.BufferedReader:
    """``path`` opened for reading in binary, once it is known to be a regular file within the
    cap; anything else is ``kind.error`` (not found included)."""
    try:
        return _open_regular(path, kind)
    except FileNotFoundError:
        raise kind.error(f"{kind.what} {path} not found; {kind.missing}") from None


def open_user_file_if_exists(path: Path, kind: UserFile) -> io.BufferedReader | None:
    """:func:`open_user_file`, or None when nothing is at ``path``."""
    try:
        return _open_regular(path, kind)
    except FileNotFoundError:
        return None


def check_user_file(path: Path, kind: UserFile) -> None:
    """Refuse ``path`` as :func:`open_user_file` would, for a library that opens it itself."""
    open_user_file(path, kind).close()


def read_user_bytes(path: Path, kind: UserFile) -> bytes:
    """The whole file, at most ``kind.max_bytes``."""
    with open_user_file(path, kind) as handle:
        size = os.fstat(handle.fileno()).st_size  # within the cap: checked when opened
        data = handle.read(size + 1)  # a buffer of the file's size, not of the cap
        if len(data) > size:  # it grew since (or is a /proc file, which states no size)
            data += handle.read(kind.max_bytes + 1 - len(data))
    if len(data) > kind.max_bytes:
        raise kind.refuse(path, f"is larger than {_size(kind.max_bytes)}, the limit of a {kind.what}")
    return data


def read_user_text(path: Path, kind: UserFile) -> str:
    """The whole file as text (``kind.encoding``), its nesting checked for ``kind.syntax``."""
    data = read_user_bytes(path, kind)
    try:
        text = data.decode(kind.encoding)
    except UnicodeDecodeError as exc:
        problem = f"{kind.what} {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        raise kind.error(problem) from None
    if kind.syntax != "text" and too_deep(data, kind.syntax):
        raise kind.refuse(path, f"is nested too deeply (more than {MAX_NESTING} levels of brackets)")
    return text


def too_deep(text: str | bytes, syntax: Literal["json", "toml"], limit: int = MAX_NESTING) -> bool:
    """Whether brackets (``[`` ``{``) outside strings and comments nest more than ``limit`` deep.

    Counted as a parser meets them, up to a stray closer (a parser stops there). The scan works on
    UTF-8 bytes, where a bracket or a quote is never part of another character, drops the strings
    with bytes operations and counts levels with numpy: a prompts file is scanned faster than
    it is parsed."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    brackets = _BRACKETS[syntax](data)
    depth = 0
    for start in range(0, len(brackets), _CHUNK):
        chunk = np.frombuffer(brackets, np.uint8, min(_CHUNK, len(brackets) - start), start)
        steps = (chunk & 2).astype(np.int8) - 1  # "[" and "{" have bit 1 set: +1; "]" "}": -1
        levels = depth + np.cumsum(steps, dtype=np.int32)
        stray = np.flatnonzero(levels < 0)  # a closer with nothing open: a parser stops there
        if stray.size:
            return bool(stray[0] > 0 and levels[: stray[0]].max() > limit)
        if levels.max() > limit:
            return True
        depth = int(levels[-1])
    return False


def _json_brackets(data: bytes) -> bytes:
    """The brackets outside JSON strings, in order."""
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")  # no quote left inside a string
    data = data.translate(None, _ALL_BUT_BRACKETS_AND_QUOTES)
    data = data.replace(b'""', b"")  # nothing between two quotes: an empty string, or "a", "b"
    return _QUOTED.sub(b"", data)  # what is left: strings that hold brackets


def _toml_brackets(data: bytes) -> bytes:
    """The brackets outside TOML strings and comments, in order (a config file is small)."""
    return _TOML_SKIP.sub(b"", data).translate(None, _ALL_BUT_BRACKETS)


_CHUNK = 1 << 24  # brackets counted at a time (their levels: 64 MiB)
_ALL_BUT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_ALL_BUT_BRACKETS_AND_QUOTES = bytes(b for b in range(256) if b not in b'[]{}"')
_QUOTED = re.compile(rb'"[^"]*"?')
_TOML_SKIP = re.compile(
    rb'"""(?:\\[\s\S]|[^\\])*?"""'  # multi-line basic string
    rb"|'''[\s\S]*?'''"  # multi-line literal string
    rb'|"(?:\\.|[^"\\\n])*"?'  # basic string
    rb"|'[^'\n]*'?"  # literal string
    rb"|#[^\n]*"  # comment
)
_BRACKETS = {"json": _json_brackets, "toml": _toml_brackets}


def _open_regular(path: Path, kind: UserFile) -> io.BufferedReader:
    try:
        _refuse_special(os.stat(path).st_mode, path, kind)  # a device is never opened
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # nor does a FIFO block
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise kind.error(f"cannot read {kind.what} {describe_os_error(exc)}") from exc
    except ValueError:  # a NUL in the name
        raise kind.error(f"{kind.what} {str(path)!r} holds a NUL character; fix the path") from None
    try:
        status = os.fstat(fd)  # what was opened, should the path have changed since the stat
        _refuse_special(status.st_mode, path, kind)
        if status.st_size > kind.max_bytes:
            raise kind.refuse(
                path, f"is {_size(status.st_size)}, over the {_size(kind.max_bytes)} limit of a {kind.what}"
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _refuse_special(mode: int, path: Path, kind: UserFile) -> None:
    special = file_kind(mode)
    if special is not None:
        raise kind.refuse(path, f"is {special}, not a regular file")


def _size(count: int) -> str:
    for unit, name in ((GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")):
        if count >= unit:
            return f"{count / unit:.1f} {name}"
    return f"{count} bytes"
