"""The Typer application and the one place that turns errors into a line and an exit code."""

from __future__ import annotations

import functools
import logging
import signal
import sys
from collections.abc import Callable
from contextvars import ContextVar
from types import FrameType
from typing import ParamSpec

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from cosmos_workflow import __version__
from cosmos_workflow.cli.display import PlainLogText, text
from cosmos_workflow.errors import CosmosWorkflowError, UsageError
from cosmos_workflow.journal import defer_interrupt, saved_this_process
from cosmos_workflow.paths import describe_os_error

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
#: emoji off: ":smile:" in a user's name is text, not a picture (user strings go through display.text)
stdout = Console(soft_wrap=True, width=_WIDTH, emoji=False)
stderr = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 160, emoji=False)

EXIT_FAILED = 1
EXIT_USAGE = 2


def setup_logging(*, quiet: bool = False, verbose: bool = False) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = RichHandler(console=stderr, show_time=False, show_path=False, markup=False)
    handler.addFilter(PlainLogText())
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
    stderr.print(Text("error: ", style="bold red") + text(message), highlight=False)
    return typer.Exit(code)


Params = ParamSpec("Params")

#: whether the command running now saves results as it goes (see :func:`saves_results`)
_resumable: ContextVar[bool] = ContextVar("resumable", default=False)


def saves_results(command: Callable[Params, None]) -> Callable[Params, None]:
    """Declare a command that saves results as it goes, so that rerunning it resumes: only such a
    command, interrupted, says what it saved and to rerun it. Every other one says it stopped."""

    @functools.wraps(command)
    def running(*args: Params.args, **kwargs: Params.kwargs) -> None:
        token = _resumable.set(True)
        try:
            command(*args, **kwargs)
        finally:
            _resumable.reset(token)

    return running


class Interrupted(BaseException):
    """SIGINT or SIGTERM. It unwinds like KeyboardInterrupt (``finally`` blocks run, the engine is
    closed) but is not one: the CLI library turns KeyboardInterrupt into a silent exit 130.
    ``resumable``: the interrupted command saves results as it goes (see :func:`saves_results`)."""

    def __init__(self, signum: int, *, resumable: bool = False) -> None:
        super().__init__(signum)
        self.signum = signum
        self.resumable = resumable


def _interrupt(signum: int, frame: FrameType | None) -> None:
    if defer_interrupt(signum):  # a journal line is being saved: raised again once it is
        return
    # asked here, while the command still runs (unwinding leaves it)
    raise Interrupted(signum, resumable=_resumable.get())


def interrupted_message(signum: int, *, resumable: bool) -> str:
    """What was saved and how to resume; for a command that saves nothing, that it stopped."""
    name = signal.Signals(signum).name
    if not resumable:
        return f"interrupted by {name}; stopped"
    saved = saved_this_process()
    if not saved:
        return f"interrupted by {name} before any new result was saved; rerun the same command to resume"
    where = ", ".join(f"{count} in {path}" for path, count in saved.items())
    return (
        f"interrupted by {name}; results saved: {where}; "
        "rerun the same command to resume (saved items are not redone)"
    )


def main() -> None:
    """Console entry point: library errors become one line and a non-zero exit, here only."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        app()
    except UsageError as exc:
        stderr.print(text(f"error: {exc}"), highlight=False)
        sys.exit(EXIT_USAGE)
    except CosmosWorkflowError as exc:
        stderr.print(text(f"error: {exc}"), highlight=False)
        sys.exit(EXIT_FAILED)
    except ValidationError as exc:  # an option combination the records refuse
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        stderr.print(text(f"error: invalid options: {problems}"), highlight=False)
        sys.exit(EXIT_USAGE)
    except OSError as exc:  # a file-system failure anywhere: the path and the fix, no traceback
        stderr.print(text(f"error: {describe_os_error(exc)}"), highlight=False)
        sys.exit(EXIT_FAILED)
    except Interrupted as exc:
        stderr.print(text(interrupted_message(exc.signum, resumable=exc.resumable)), highlight=False)
        sys.exit(128 + exc.signum)
