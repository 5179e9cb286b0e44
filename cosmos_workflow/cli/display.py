"""User strings made safe to print: never read as Rich markup or emoji codes, never a terminal
control sequence, never an unencodable character.

Every string that came from a user (item and spec names, prompts, paths, and the messages that
quote them) is printed through :func:`text` (a ``rich.text.Text``, which Rich never parses) or
:func:`plain`. Control characters (ESC sequences, backspace, bidi overrides) and lone
surrogates are shown as their escapes, e.g. ``\\x1b[31m``, so the user sees what is there.
"""

from __future__ import annotations

import logging
import re

from rich.text import Text

# C0 and C1 controls (tab kept), DEL, bidi embeddings/overrides/isolates, lone surrogates
_UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_ONE_LINE = re.compile(f"[{_UNSAFE}\n]")
_MULTI_LINE = re.compile(f"[{_UNSAFE}]")


def _escape(match: re.Match[str]) -> str:
    return ascii(match.group())[1:-1]


def plain(value: object, *, newlines: bool = False) -> str:
    """``str(value)`` with control characters and lone surrogates written as escapes."""
    return (_MULTI_LINE if newlines else _ONE_LINE).sub(_escape, str(value))


def text(value: object, style: str = "", *, newlines: bool = False) -> Text:
    """``value`` as literal rich text: no markup, no emoji codes, no control sequences."""
    return Text(plain(value, newlines=newlines), style=style)


class PlainLogText(logging.Filter):
    """Log messages (they quote item names and paths) made safe like everything else printed."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = plain(record.getMessage(), newlines=True)
        record.args = None
        return True
