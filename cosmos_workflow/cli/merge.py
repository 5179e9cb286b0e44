"""``cosmos-workflow merge``: merge the journals of ranks that ran separately into one output.

A torchrun run merges by itself when its last rank finishes. This command is for the other cases:
a rank died and its results are to be collected without a rerun, ranks ran as separate jobs, or
the output file was lost. It needs no run options: records are matched to items by name and
original prompt, not by request key, because keys hash every option and the videos' absolute
paths and mtimes, which differ across a Docker mount or a copied folder (see
:mod:`cosmos_workflow.journal_merge`). The output's rules are a run's (:func:`api.merge`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cosmos_workflow import api
from cosmos_workflow.cli.app import app, setup_logging, stderr
from cosmos_workflow.cli.display import text
from cosmos_workflow.cli.options import PromptsFile
from cosmos_workflow.journal_merge import MergeResult
from cosmos_workflow.specs.batch import Problem

#: written, but some items have no result or failed
EXIT_INCOMPLETE = 3


@app.command("merge")
def merge(
    prompts_file: PromptsFile,
    output_file: Annotated[
        Path | None,
        typer.Option("--output-file", "-o", help="the output JSON list (default: <prompts>.upsampled.json)"),
    ] = None,
    clips_dir: Annotated[
        Path | None,
        typer.Option(help="the folder the run wrote its clips to (default: <output stem>_clips beside it)"),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(help="replace OUTPUT even if it loses records it holds (the old one is kept beside it)"),
    ] = False,
) -> None:
    """Merge what OUTPUT holds and every journal beside it (all ranks + single process) into
    OUTPUT, in input order; never with less than it holds, unless --force."""
    setup_logging()
    output = output_file or prompts_file.with_name(f"{prompts_file.stem}.upsampled.json")
    result, problems = api.merge(prompts_file, output, clips_dir=clips_dir, force=force)
    _report(result, problems, output)
    failed = sum(1 for r in result.records if not r.done)
    if result.missing or failed or problems:
        raise typer.Exit(EXIT_INCOMPLETE)


def _report(result: MergeResult, problems: list[Problem], output: Path) -> None:
    names = ", ".join(path.name for path in result.journals)
    held = f" and the {result.held} records {output.name} held" if result.held else ""
    stderr.print(
        text(
            f"merged {len(result.records)} items from {len(result.journals)} journals ({names}){held} "
            f"-> {output}"
        ),
        highlight=False,
    )
    if result.kept is not None:
        stderr.print(text(f"the replaced {output.name} is kept as {result.kept}"), highlight=False)
    for problem in problems:
        stderr.print(text(f"invalid (skipped) {problem}"), highlight=False)
    for record in result.records:
        if not record.done:
            stderr.print(text(f"{record.status} {record.name}: {record.error}"), highlight=False)
    if result.missing:
        stderr.print(
            text(
                f"missing {len(result.missing)} item(s) with no result in any journal: "
                f"{', '.join(result.missing)}; rerun the upsample command to do them"
            ),
            highlight=False,
        )
