"""``cosmos-workflow report``: the review page of an output file or a spec folder."""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from cosmos_workflow import report as review
from cosmos_workflow.cli.app import app, stderr, stdout
from cosmos_workflow.errors import InputFileError, UsageError


@app.command()
def report(
    results: Annotated[
        Path | None, typer.Argument(help="the output JSON of upsample-prompts", show_default=False)
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="the HTML file (default: beside RESULTS as .html, or DIR/report.html)"
        ),
    ] = None,
    input_dir: Annotated[
        Path | None, typer.Option(help="a PromptSpec folder (e.g. inputs/prompts) instead of RESULTS")
    ] = None,
    open_page: Annotated[bool, typer.Option("--open", help="open the page in the default browser")] = False,
) -> None:
    """Write one self-contained HTML page: each shot's frames as sent, its prompts, tokens, status."""
    if (results is None) == (input_dir is None):
        raise UsageError("give either RESULTS (an output JSON) or --input-dir (a spec folder)")
    if input_dir is not None:
        path = _spec_report(input_dir, output or input_dir / review.SPEC_REPORT_NAME)
    else:
        assert results is not None
        path = review.write_report_for_file(results, output)
    stdout.print(str(path), markup=False, highlight=False)
    if open_page:
        webbrowser.open(path.resolve().as_uri())


def _spec_report(input_dir: Path, output: Path) -> Path:
    if not input_dir.is_dir():
        raise InputFileError(f"--input-dir {input_dir} is not a folder; pass the spec folder")
    written = review.write_spec_report(input_dir, output)
    for problem in written.problems:
        stderr.print(f"skipped {problem}", markup=False, highlight=False)
    if not written.shots:
        stderr.print(f"no specs in {input_dir}; the page is empty", markup=False, highlight=False)
    return written.path
