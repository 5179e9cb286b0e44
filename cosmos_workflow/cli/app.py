"""The Typer application and the one place that turns errors into a line and an exit code."""

from __future__ import annotations

import logging
import sys

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.logging import RichHandler

from cosmos_workflow import __version__
from cosmos_workflow.errors import CosmosWorkflowError, UsageError

app = typer.Typer(
    name="cosmos-workflow",
    help="Upsample short prompts + videos into long Cosmos prompts, within the model's token budget.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: data goes to stdout, logs and progress to stderr
#: a file or pipe gets wide tables rather than rich's 80-column default
_WIDTH = None if sys.stdout.isatty() else 160
stdout = Console(soft_wrap=True, width=_WIDTH)
stderr = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 160)

EXIT_FAILED = 1
EXIT_USAGE = 2


def setup_logging(*, quiet: bool = False, verbose: bool = False) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = RichHandler(console=stderr, show_time=False, show_path=False, markup=False)
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)
    # mistral-common reports its vocabulary set-up at INFO on every tokenizer load
    logging.getLogger("mistral_common").setLevel(max(level, logging.WARNING))


def version_callback(value: bool) -> None:
    if value:
        stdout.print(f"cosmos-workflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True),
) -> None:
    """cosmos-workflow: batch prompt upsampling for NVIDIA Cosmos."""


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    """Print one clear error line on stderr; return the Exit to raise."""
    stderr.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def main() -> None:
    """Console entry point: library errors become one line and a non-zero exit, here only."""
    try:
        app()
    except UsageError as exc:
        stderr.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(EXIT_USAGE)
    except CosmosWorkflowError as exc:
        stderr.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(EXIT_FAILED)
    except ValidationError as exc:  # an option combination the records refuse
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        stderr.print(f"error: invalid options: {problems}", highlight=False, markup=False)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        stderr.print("interrupted; rerun the same command to resume", markup=False)
        sys.exit(130)
