"""Turn a raw model answer into a clean prompt, or say why it cannot be one.

Models add preambles ("Here is the upsampled prompt:"), markdown, think blocks and wrapping
quotes. An empty or cut-off answer is never accepted as an upsampled prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cosmos_workflow.engines.base import Generation

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_PREAMBLE = re.compile(
    r"^\s*(?:sure[,!.]?\s*)?(?:here(?:'s| is| are)\b[^:\n]*:|"
    r"(?:upsampled|enhanced|improved|detailed|expanded)?\s*(?:prompt|caption|description)\s*:)\s*",
    re.IGNORECASE,
)
_MARKDOWN = [
    (re.compile(r"^\s{0,3}#{1,6}\s+", re.MULTILINE), ""),  # headings
    (re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+", re.MULTILINE), ""),  # list bullets
    (re.compile(r"(\*\*|__)(.+?)\1"), r"\2"),  # bold
    (re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])"), r"\1"),  # italics
    (re.compile(r"`{1,3}([^`]*)`{1,3}"), r"\1"),  # code
]
_QUOTES = [('"', '"'), ("'", "'"), ("\u201c", "\u201d"), ("\u2018", "\u2019")]


@dataclass(frozen=True)
class Cleaned:
    text: str
    problem: str | None  # None when the text is a usable prompt


def clean_text(raw: str) -> str:
    """Strip think blocks, preambles, markdown, wrapping quotes; join lines with spaces."""
    text = _THINK.sub("", raw).strip()
    text = _PREAMBLE.sub("", text, count=1)
    for pattern, replacement in _MARKDOWN:
        text = pattern.sub(replacement, text)
    text = " ".join(text.split())
    return _unquote(text)


def _unquote(text: str) -> str:
    for left, right in _QUOTES:
        if len(text) >= 2 and text.startswith(left) and text.endswith(right):
            inner = text[1:-1]
            if left not in inner and right not in inner:
                return inner.strip()
    return text


def accept(generation: Generation, max_tokens: int, *, ascii_only: bool = False) -> Cleaned:
    """A usable prompt, or the reason this answer cannot be one (with ``ascii_only``, an answer
    with a character outside ASCII is refused: the engines should never have produced it)."""
    if generation.finish_reason == "error":
        return Cleaned("", generation.error or "the engine failed on this request")
    text = clean_text(generation.text)
    if generation.finish_reason == "length":
        return Cleaned(
            text,
            f"answer cut off at max_tokens {max_tokens}; raise --max-tokens "
            "(and --max-model-len if needed) to let it finish",
        )
    if not text:
        return Cleaned("", "the model returned an empty answer")
    if ascii_only and not text.isascii():
        odd = next(c for c in text if not c.isascii())
        return Cleaned(text, f"the answer has a character outside ASCII ({odd!r}) though ascii_only is set")
    return Cleaned(text, None)
