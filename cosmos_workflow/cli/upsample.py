"""``cosmos-workflow upsample-prompts``: the main job."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import progress as bars
from rich.table import Table

from cosmos_workflow import api
from cosmos_workflow import report as review
from cosmos_workflow.cli.app import app, saves_results, setup_logging, stderr
from cosmos_workflow.cli.display import text
from cosmos_workflow.cli.options import (
    REFINER,
    RUN,
    SAMPLING,
    SENT,
    TOKENS,
    ConfigFile,
    settings_from_flags,
    shared_options,
)
from cosmos_workflow.config import ResolvedSettings, RunOptions, run_options
from cosmos_workflow.errors import UsageError
from cosmos_workflow.runner import Progress, RunResult
from cosmos_workflow.specs.batch import Problem

if TYPE_CHECKING:
    from cosmos_workflow.executors.remote import RemoteConfig

#: finished, but some items failed (status error or fallback), were invalid (items, spec files), or have
#: no result
EXIT_PARTIAL = 3


@app.command("upsample-prompts")
@saves_results
@shared_options(
    input_dir=(*SENT, "engine", "model", "batch_size", "first_batch", *TOKENS, *REFINER, *SAMPLING),
    force=RUN,
)
def upsample_prompts(
    ctx: typer.Context,
    prompts_file: Annotated[
        Path | None,
        typer.Argument(help="JSON list (or .jsonl) of {name, prompt, video_path}", show_default=False),
    ] = None,
    output_file: Annotated[
        Path | None,
        typer.Option("--output-file", "-o", help="output JSON list (default: <prompts>.upsampled.json)"),
    ] = None,
    input_dir: Annotated[
        Path | None, typer.Option(help="a folder of PromptSpec files to upsample in place, instead of a file")
    ] = None,
    force: Annotated[bool, typer.Option(help="redo every item, ignoring earlier results")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar, warnings only")] = False,
    report: Annotated[
        bool,
        typer.Option(
            "--report", help="also write the review page: OUT.html beside the output, DIR/report.html"
        ),
    ] = False,
    config: ConfigFile = None,
    remote: Annotated[
        bool, typer.Option(help="run on the GPU host of \\[remote] over SSH (see `remote check`)")
    ] = False,
    **flags: Any,
) -> None:
    """Upsample every prompt with the model loaded once; rerun the same command to resume.

    Settings not given as flags come from the config file and COSMOS_* variables (see `config`).
    Under torchrun each process runs its shard and the last one writes the output; --num-gpu N
    starts that torchrun itself; with --executor ray the batch runs on a Ray cluster's actor pool
    and this process writes the output.
    """
    resolved = settings_from_flags(ctx, dict(locals()) | flags, config)
    setup_logging(quiet=quiet)
    output = _output_path(prompts_file, output_file, input_dir)
    options = run_options(resolved.settings.upsample, output=output, force=force)
    host = _remote_config(resolved) if remote else None
    if input_dir is not None:
        _run_specs(input_dir, options, quiet, report, host)
        return
    assert prompts_file is not None
    with _progress(quiet) as advance:
        result, problems = api.upsample_file(prompts_file, output, options, remote=host, progress=advance)
    # a rank that did not write the output exits 0: a non-zero exit makes torchrun stop the others
    _summary(result, problems, output if result.wrote_output else None)
    if report and result.wrote_output:
        page = review.report_path_for(output)
        _wrote_page(review.write_report(result.records, page, source=output, elapsed=result.elapsed_s))
    # an item skipped as invalid, or with no result, is missing from the output: it failed, as far
    # as a script can tell (exit 0 means every item is in the output as ok or text_only)
    if (result.failed or problems or result.missing) and result.wrote_output:
        raise typer.Exit(EXIT_PARTIAL)


def _output_path(prompts_file: Path | None, output_file: Path | None, input_dir: Path | None) -> Path:
    if (prompts_file is None) == (input_dir is None):
        raise UsageError("give either PROMPTS_FILE or --input-dir (one of them)")
    if input_dir is not None and output_file is not None:
        raise UsageError(
            "--output-file does not apply to --input-dir: results go into the spec files "
            "(and DIR/.upsampling/results.json); drop -o"
        )
    if output_file is not None:
        return output_file
    if prompts_file is not None:
        return prompts_file.with_name(f"{prompts_file.stem}.upsampled.json")
    assert input_dir is not None
    return input_dir / ".upsampling" / "results.json"


def _remote_config(resolved: ResolvedSettings) -> RemoteConfig:
    from cosmos_workflow.executors.remote import remote_config

    return remote_config(resolved)


def _run_specs(
    input_dir: Path, options: RunOptions, quiet: bool, report: bool, remote: RemoteConfig | None
) -> None:
    from cosmos_workflow.workflow import upsample_spec_dir

    with _progress(quiet) as advance:
        summary = upsample_spec_dir(input_dir, options, progress=advance, remote=remote)
    stderr.print(text(summary.describe(), newlines=True), highlight=False)
    if report:
        _wrote_page(review.write_spec_report(input_dir, input_dir / review.SPEC_REPORT_NAME).path)
    if not summary.complete:  # an invalid spec file counts as failed, as an invalid item does
        raise typer.Exit(EXIT_PARTIAL)


def _wrote_page(path: Path) -> None:
    stderr.print(f"review page -> {path}", markup=False, highlight=False)


def _silent(count: int, total: int | None = None) -> None:
    """The progress callback of ``--quiet``."""


@contextmanager
def _progress(quiet: bool) -> Iterator[Progress]:
    if quiet:
        yield _silent
        return
    columns = (
        bars.TextColumn("upsampling"),
        bars.BarColumn(),
        bars.MofNCompleteColumn(),
        bars.TextColumn("{task.fields[rate]}"),
        bars.TimeRemainingColumn(),
    )
    bar = bars.Progress(*columns, console=stderr, transient=False)
    task = bar.add_task("upsampling", total=None, rate="")

    def advance(count: int, total: int | None = None) -> None:
        if not bar.live.is_started:  # shown once work starts: a refusal before it is one line
            bar.start()
        if total is not None:
            bar.update(task, total=total)
        bar.update(task, advance=count)
        speed = bar.tasks[0].speed
        bar.update(task, rate=f"{speed:.2f} items/s" if speed else "")

    try:
        yield advance
    finally:
        bar.stop()


def _summary(result: RunResult, problems: Sequence[Problem], output: Path | None) -> None:
    table = Table(title="Summary", title_justify="left")
    table.add_column("status")
    table.add_column("items", justify="right")
    for status in ("ok", "text_only", "fallback", "error"):
        table.add_row(status, str(result.counts.get(status, 0)))
    if problems:
        table.add_row("invalid (skipped)", str(len(problems)))
    if result.missing:
        table.add_row("missing (no result)", str(len(result.missing)))
    stderr.print(table)
    total = len(result.records)
    done_now = total - result.resumed
    rate = done_now / result.elapsed_s if result.elapsed_s > 0 else 0.0
    stderr.print(
        text(
            f"{total} items ({result.resumed} already done) in {result.elapsed_s:.1f} s, {rate:.2f} items/s"
            + (f" -> {output}" if output else " (this rank's shard; another rank merges)")
        ),
        highlight=False,
    )
    for record in result.records:
        if record.error:
            stderr.print(text(f"{record.status} {record.name}: {record.error}"), highlight=False)
    for problem in problems if output else ():
        stderr.print(text(f"invalid (skipped) {problem}"), highlight=False)
