"""Render the review page: one self-contained HTML file, no network, every user string escaped.

Jinja2 autoescapes everything the template prints; the page's own CSS and JavaScript are inlined
and allowed by their SHA-256 hashes in a Content-Security-Policy, so nothing else can run or load
(not even a ``<script>`` that somehow got past escaping), and images come only from data URLs.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from cosmos_workflow import __version__
from cosmos_workflow.errors import ReportError
from cosmos_workflow.files import write_text_atomic
from cosmos_workflow.report._shots import Shot
from cosmos_workflow.report._summary import Budget, Summary, budget_of
from cosmos_workflow.report._thumbnails import Frames

if TYPE_CHECKING:
    from jinja2 import Environment


@dataclass(frozen=True)
class Card:
    """One shot as the template shows it."""

    number: int
    """Position in the input (1-based): the page's default order."""
    shot: Shot
    frames: Frames
    budget: Budget | None


def make_card(number: int, shot: Shot, frames: Frames) -> Card:
    return Card(number=number, shot=shot, frames=frames, budget=budget_of(shot))


@cache
def _environment() -> Environment:
    from jinja2 import Environment, PackageLoader, StrictUndefined  # only when a page is made

    return Environment(
        loader=PackageLoader("cosmos_workflow.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def _asset(name: str) -> str:
    return resources.files("cosmos_workflow.report").joinpath("templates", name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def content_security_policy(style: str, script: str) -> str:
    """Nothing may load or run except the page's own style and script and data-URL images."""
    return (
        f"default-src 'none'; img-src data:; style-src {_csp_hash(style)}; "
        f"script-src {_csp_hash(script)}; base-uri 'none'; form-action 'none'"
    )


def render_page(cards: Sequence[Card], summary: Summary, *, title: str, source: str) -> str:
    style, script = _asset("report.css"), _asset("report.js")
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            title=title,
            source=source,
            cards=cards,
            summary=summary,
            style=style,
            script=script,
            csp=content_security_policy(style, script),
            generated=datetime.now(UTC).isoformat(sep=" ", timespec="seconds"),
            version=__version__,
        )
    )


def write_page(path: Path, html: str) -> Path:
    """Write atomically: a reader never sees half a page."""
    try:
        write_text_atomic(path, html)
    except OSError as exc:
        raise ReportError(
            f"cannot write the report {path}: {exc}; check the folder and free space, or pass -o"
        ) from exc
    return path
