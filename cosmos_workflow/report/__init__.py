"""The review page: for every shot, the frames the model saw beside the prompt it wrote.

One self-contained HTML file (inline CSS and JavaScript, thumbnails as JPEG data URLs loaded as
they scroll into view, a strict Content-Security-Policy, every user string escaped) built from an
``upsample-prompts`` output file or from a PromptSpec folder::

    write_report(records, Path("out/upsampled.html"))          # records: UpsampleRecord list
    write_report_for_file(Path("out/upsampled.json"))          # -> out/upsampled.html
    write_spec_report(Path("inputs/prompts"), Path("report.html"))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cosmos_workflow.errors import ReportError
from cosmos_workflow.report._page import Card, make_card, render_page, write_page
from cosmos_workflow.report._shots import PENDING, Shot, load_records, shot_from_spec, shots_from_records
from cosmos_workflow.report._summary import Summary, summarise
from cosmos_workflow.report._thumbnails import MAX_JPEG_BYTES, Frames, Thumbnail, all_shot_frames
from cosmos_workflow.specs.results import UpsampleRecord
from cosmos_workflow.specs.store import SpecProblem, SpecStore

__all__ = [
    "MAX_JPEG_BYTES",
    "PENDING",
    "SPEC_REPORT_NAME",
    "Card",
    "Frames",
    "Shot",
    "SpecReport",
    "Summary",
    "Thumbnail",
    "build_cards",
    "load_records",
    "render_report",
    "report_path_for",
    "write_report",
    "write_report_for_file",
    "write_spec_report",
]


#: the page of a spec folder, inside it (``report --input-dir`` and ``upsample-prompts --report``)
SPEC_REPORT_NAME = "report.html"


def report_path_for(output: Path) -> Path:
    """``out/upsampled.json`` -> ``out/upsampled.html``: the page's default place."""
    return output.with_suffix(".html")


def build_cards(
    shots: Sequence[Shot], base_dirs: Sequence[Path], *, workers: int | None = None
) -> list[Card]:
    """Decode every shot's frames into cards, in threads (FFmpeg and libjpeg work outside the GIL);
    shots that send the same frames are decoded once."""
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        frames = all_shot_frames(shots, base_dirs, pool.map)
    return [make_card(number, shot, f) for number, (shot, f) in enumerate(zip(shots, frames, strict=True), 1)]


def render_report(
    shots: Sequence[Shot],
    *,
    title: str,
    source: str,
    base_dirs: Sequence[Path] = (),
    elapsed: float | None = None,
    workers: int | None = None,
) -> str:
    """The page's HTML for ``shots``; relative video paths resolve against ``base_dirs`` in turn."""
    cards = build_cards(shots, [Path.cwd(), *base_dirs], workers=workers)
    return render_page(cards, summarise(shots, elapsed=elapsed), title=title, source=source)


def write_report(
    records: Sequence[UpsampleRecord],
    output: Path,
    *,
    source: Path | None = None,
    elapsed: float | None = None,
    workers: int | None = None,
) -> Path:
    """Write the page for ``records`` (an ``upsample-prompts`` result) at ``output``.

    ``source`` is the output JSON the records came from: named in the header, and its folder is
    where relative video paths are looked up after the current folder. ``elapsed`` is the run's
    duration in seconds, when the caller knows it.
    """
    origin = source or output
    html = render_report(
        shots_from_records(records),
        title=f"Upsampled prompts: {origin.stem}",
        source=str(origin),
        base_dirs=[origin.parent],
        elapsed=elapsed,
        workers=workers,
    )
    return write_page(output, html)


def write_report_for_file(results: Path, output: Path | None = None, *, workers: int | None = None) -> Path:
    """Read an ``upsample-prompts`` output JSON and write its page (default: beside it, ``.html``)."""
    target = output or report_path_for(results)
    if target.resolve() == results.resolve():
        raise ReportError(f"the report would overwrite {results}; pass -o with an .html file")
    records = load_records(results)
    return write_report(records, target, source=results, workers=workers)


@dataclass(frozen=True)
class SpecReport:
    path: Path
    shots: int
    problems: list[SpecProblem] = field(default_factory=list)


def write_spec_report(specs_dir: Path, output: Path, *, workers: int | None = None) -> SpecReport:
    """Write the page for every spec in ``specs_dir``; unreadable spec files come back as problems."""
    scan = SpecStore(specs_dir).scan()
    shots = [shot_from_spec(stored) for stored in scan.specs]
    html = render_report(
        shots, title=f"Prompt specs: {specs_dir.name or specs_dir}", source=str(specs_dir), workers=workers
    )
    return SpecReport(write_page(output, html), len(shots), scan.problems)
