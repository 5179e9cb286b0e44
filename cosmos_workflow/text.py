"""User text made safe for UTF-8 files.

JSON may spell half a surrogate pair (``"x\\ud83d"``: an emoji cut by a JavaScript ``slice``);
Python then holds a lone surrogate, which no UTF-8 file can store, so the first journal write
would fail. At the boundary (reading a prompts file or a spec) each one becomes U+FFFD and the
item says so.
"""

from __future__ import annotations

import re
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def replace_lone_surrogates(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (a valid pair is never split in a str)."""
    return _LONE_SURROGATE.sub(REPLACEMENT, text)


def clean_strings(value: Any) -> tuple[Any, list[str]]:
    """``value`` (shallow JSON data: a record) with lone surrogates replaced, and the keys (or
    ``item``) where that happened."""
    if isinstance(value, str):
        cleaned = replace_lone_surrogates(value)
        return cleaned, ([] if cleaned == value else ["item"])
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        changed: list[str] = []
        for key, item in value.items():
            out[key], inner = clean_strings(item)
            changed += [str(key)] if inner else []
        return out, changed
    if isinstance(value, list):
        pairs = [clean_strings(item) for item in value]
        return [p[0] for p in pairs], ["item"] if any(p[1] for p in pairs) else []
    return value, []


def replacement_note(fields: list[str]) -> str:
    return (
        f"a broken character (half an emoji or other lone surrogate) in {', '.join(fields)} "
        "was replaced with U+FFFD; fix the text in the input if it matters"
    )
