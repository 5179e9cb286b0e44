"""``cosmos-workflow config``: the effective settings and where each one came from."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from cosmos_workflow.cli.app import app, stdout
from cosmos_workflow.cli.display import text
from cosmos_workflow.cli.options import ConfigFile
from cosmos_workflow.config import resolve_settings


@app.command("config")
def show_config(
    config: ConfigFile = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Print every setting's effective value and its source: default, file, env or flag."""
    resolved = resolve_settings(config_file=config)
    rows = resolved.rows()
    if as_json:
        data = {name: {"value": value, "source": source} for name, value, source in rows}
        stdout.print_json(json.dumps(data, default=str))
        return
    where = str(resolved.config_file) if resolved.config_file else "none (defaults and environment only)"
    table = Table(title=text(f"Settings (config file: {where})"), title_justify="left")
    for column in ("setting", "value", "source"):
        table.add_column(column, overflow="fold")
    for name, value, source in rows:
        table.add_row(text(name), text(repr(value) if isinstance(value, str) else str(value)), text(source))
    stdout.print(table)
