"""``cosmos-workflow plan``: what will be sent for each item, and whether it fits."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from cosmos_workflow import api
from cosmos_workflow.cli.app import EXIT_FAILED, app, stderr, stdout
from cosmos_workflow.cli.display import text
from cosmos_workflow.cli.options import (
    SHARED,
    ConfigFile,
    PromptsFile,
    settings_from_flags,
    shared_options,
)
from cosmos_workflow.config import encoder_limit_of, plan_settings
from cosmos_workflow.planner import Plan
from cosmos_workflow.specs.batch import load_batch

STATUS_STYLE = {"ok": "green", "adjusted": "yellow", "text_only": "cyan", "overflow": "red", "error": "red"}


@app.command()
@shared_options(prompts_file=SHARED)
def plan(
    ctx: typer.Context,
    prompts_file: PromptsFile,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list instead of a table")] = False,
    config: ConfigFile = None,
    **flags: Any,
) -> None:
    """Plan every item's frames, size and tokens against the model's context, without a model."""
    settings = settings_from_flags(ctx, flags, config).settings.upsample
    batch = load_batch(prompts_file)
    for problem in batch.problems:
        stderr.print(text(f"skipped {problem}"), highlight=False)
    plans = api.plan(batch.items, plan_settings(settings), model=settings.model)
    limit = encoder_limit_of(settings)
    planned, fit = _print_json(plans, limit) if as_json else _print_table(list(plans))
    if limit is not None and not as_json:
        stdout.print(
            text(
                f"answers: at most {limit} tokens of the generator's encoder ({settings.encoder_tokenizer})"
            ),
            highlight=False,
        )
    if not planned or not fit:
        raise typer.Exit(EXIT_FAILED)


def _print_json(plans: Iterator[Plan], encoder_limit: int | None = None) -> tuple[int, bool]:
    """A JSON list written one plan per line as each is planned: memory stays flat for any size;
    each row says the ``encoder_limit`` of the answers when there is one.

    ASCII-only (``\\uXXXX`` escapes), so no name can carry a terminal control sequence."""
    count, fit = 0, True
    out = sys.stdout
    out.write("[")
    extra = {} if encoder_limit is None else {"encoder_limit": encoder_limit}
    for plan in plans:
        out.write(("," if count else "") + "\n  " + json.dumps(plan.model_dump(mode="json") | extra))
        count, fit = count + 1, fit and plan.fits
    out.write("\n]\n" if count else "]\n")
    out.flush()
    return count, fit


def _print_table(plans: list[Plan]) -> tuple[int, bool]:
    stdout.print(_table(plans))
    for p in plans:
        if p.message:
            stdout.print(text(f"{p.name}: {p.message}"), highlight=False)
    return len(plans), all(p.fits for p in plans)


def _table(plans: list[Plan]) -> Table:
    table = Table(title="Token plan: prompt (images + text) + answer <= limit")
    table.add_column("name", overflow="fold")
    for column in ("source", "sent", "frames", "image", "text", "prompt", "answer", "limit"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for p in plans:
        table.add_row(
            text(p.name),
            _size(p.source_width, p.source_height),
            _size(p.width, p.height),
            str(p.frames),
            str(p.image_tokens),
            str(p.text_tokens),
            str(p.total_tokens),
            str(p.max_tokens),
            str(p.max_model_len),
            Text(p.status, style=STATUS_STYLE[p.status]),
        )
    return table


def _size(width: int | None, height: int | None) -> str:
    return f"{width}x{height}" if width and height else "-"
