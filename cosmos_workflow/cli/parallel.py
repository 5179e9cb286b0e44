"""``cosmos-workflow merge``: merge the journals of ranks that ran separately into one output.

A torchrun run merges by itself when its last rank finishes. This command is for the other cases:
a rank died and its results are to be collected without a rerun, ranks ran as separate jobs, or
the output file was lost. It needs no option flags: records are matched to items by name and
original prompt, not by request key, because keys hash every option and the videos' absolute
paths and mtimes, which differ across a Docker mount or a copied folder (see
:mod:`cosmos_workflow.executors.merge`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cosmos_workflow.cli.app import app, setup_logging, stderr
from cosmos_workflow.cli.display import text
from cosmos_workflow.cli.options import PromptsFile
from cosmos_workflow.errors import InputFileError
from cosmos_workflow.executors.merge import MergeResult, merge_output
from cosmos_workflow.journal import journals_for
from cosmos_workflow.specs.batch import load_batch

#: written, but some items have no result or failed
EXIT_INCOMPLETE = 3


@app.command("merge")
def merge(
    prompts_file: PromptsFile,
    output_file: Annotated[
        Path | None,
        typer.Option("--output-file", "-o", help="the output JSON list (default: <prompts>.upsampled.json)"),
    ] = None,
) -> None:
    """Merge every journal beside OUTPUT (all ranks + single process) into OUTPUT, in input order."""
    setup_logging()
    output = output_file or prompts_file.with_name(f"{prompts_file.stem}.upsampled.json")
    batch = load_batch(prompts_file)
    if not journals_for(output):
        raise InputFileError(
            f"no journal found beside {output} (expected {output.name}.journal.jsonl or "
            f"{output.name}.rank<N>.journal.jsonl); pass the same --output-file as the upsample run"
        )
    result = merge_output(batch.items, output)
    _report(result, output)
    failed = sum(1 for r in result.records if not r.done)
    if result.missing or failed:
        raise typer.Exit(EXIT_INCOMPLETE)


def _report(result: MergeResult, output: Path) -> None:
    names = ", ".join(path.name for path in result.journals)
    stderr.print(
        text(
            f"merged {len(result.records)} items from {len(result.journals)} journals ({names}) -> {output}"
        ),
        highlight=False,
    )
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
