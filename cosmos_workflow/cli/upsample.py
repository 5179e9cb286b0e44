"""``cosmos-workflow upsample-prompts``: the main job."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich import progress as bars
from rich.table import Table

from cosmos_workflow import api
from cosmos_workflow.cli.app import app, setup_logging, stderr
from cosmos_workflow.cli.options import (
    FrameSampling,
    MaxModelLen,
    MaxResolution,
    MaxTokens,
    Model,
    NumFrames,
    Preprocess,
    Sampling,
    plan_settings,
)
from cosmos_workflow.engines import EngineConfig, SamplingParams
from cosmos_workflow.errors import ConfigError
from cosmos_workflow.parallel.torchrun import RankResult, run_distributed_if_needed
from cosmos_workflow.runner import Progress, RunOptions, RunResult

#: finished, but some items failed (status error or fallback)
EXIT_PARTIAL = 3


class OnError(StrEnum):
    error = "error"
    original = "original"


def parse_engine_options(pairs: list[str]) -> dict[str, str | int | float | bool | None]:
    """``KEY=VALUE`` pairs; numbers and true/false are converted."""
    options: dict[str, str | int | float | bool | None] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"--engine-option {pair!r} is not KEY=VALUE; e.g. --engine-option max_num_seqs=64"
            )
        options[key] = _scalar(raw)
    return options


def _scalar(raw: str) -> str | int | float | bool:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


@app.command("upsample-prompts")
def upsample_prompts(
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
    preprocess: Preprocess = True,
    max_resolution: MaxResolution = "480",
    num_frames: NumFrames = 2,
    frame_sampling: FrameSampling = Sampling.first,
    engine: Annotated[
        str, typer.Option(help="auto (vLLM with a GPU, else transformers), hf, vllm, openai, or fake")
    ] = "auto",
    model: Model = None,
    batch_size: Annotated[
        str, typer.Option(help="requests per engine call, or 'auto' (from free GPU memory; hf engine)")
    ] = "8",
    max_model_len: MaxModelLen = 4096,
    max_tokens: MaxTokens = 300,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0)] = 0.6,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0)] = 1.0,
    seed: Annotated[int | None, typer.Option(help="seed for reproducible sampling")] = None,
    on_error: Annotated[
        OnError,
        typer.Option(help="'original': write the original prompt (status fallback) when an item fails"),
    ] = OnError.error,
    force: Annotated[bool, typer.Option(help="redo every item, ignoring earlier results")] = False,
    clips: Annotated[
        bool,
        typer.Option(
            "--clips/--no-clips", help="write each preprocessed clip (the output's preprocessed_video)"
        ),
    ] = True,
    clips_dir: Annotated[
        Path | None,
        typer.Option(help="folder for the preprocessed clips (default: <output>_clips beside the output)"),
    ] = None,
    control: Annotated[
        str | None,
        typer.Option(help="vis, edge, depth or seg: picks the matching folder of a per-control checkpoint"),
    ] = None,
    device: Annotated[str | None, typer.Option(help="e.g. cuda:0 or cpu (default: automatic)")] = None,
    engine_option: Annotated[
        list[str] | None, typer.Option(help="engine setting KEY=VALUE, repeatable (e.g. base_url=...)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar, warnings only")] = False,
) -> None:
    """Upsample every prompt with the model loaded once; rerun the same command to resume."""
    setup_logging(quiet=quiet)
    output = _output_path(prompts_file, output_file, input_dir)
    options = RunOptions(
        plan=plan_settings(
            preprocess=preprocess,
            max_resolution=max_resolution,
            num_frames=num_frames,
            frame_sampling=frame_sampling,
            max_tokens=max_tokens,
            max_model_len=max_model_len,
        ),
        sampling=SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed),
        engine=EngineConfig(
            engine=engine,
            model=_model(model, engine, control),
            max_model_len=max_model_len,
            max_images_per_prompt=num_frames,
            device=device,
            options=parse_engine_options(engine_option or []),
        ),
        batch_size=_batch_size(batch_size),
        on_error=on_error.value,
        force=force,
        clips_dir=(clips_dir or output.with_name(f"{output.stem}_clips")) if clips and preprocess else None,
    )
    if input_dir is not None:
        _run_specs(input_dir, options, quiet)
        return
    assert prompts_file is not None
    with _progress(quiet) as advance:
        # under torchrun this process is one rank: its shard, and the merge if it finishes last
        outcome = run_distributed_if_needed(prompts_file, output, options, advance)
        result, problems = outcome or api.upsample_file(prompts_file, output, options, progress=advance)
    # a rank that did not merge exits 0: a non-zero exit makes torchrun stop the other ranks
    merged = not isinstance(result, RankResult) or result.merged
    _summary(result, len(problems), output if merged else None)
    if result.failed and merged:
        raise typer.Exit(EXIT_PARTIAL)


def _batch_size(value: str) -> int | Literal["auto"]:
    if value == "auto":
        return "auto"
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"--batch-size {value!r} is not a positive number; pass e.g. 32, or 'auto'")
    return int(value)


def _model(model: str | None, engine: str, control: str | None) -> str:
    if model and Path(model).is_dir():
        from cosmos_workflow.checkpoint import pick_variant

        return str(pick_variant(Path(model), control))
    if model:
        return model
    if engine == "fake":
        return "fake"
    raise ConfigError(
        "no model given: pass --model PATH to a Pixtral/Cosmos upsampler checkpoint, a served model name "
        "with --engine openai, or --model tiny-random to try the pipeline with a tiny random model"
    )


def _output_path(prompts_file: Path | None, output_file: Path | None, input_dir: Path | None) -> Path:
    if (prompts_file is None) == (input_dir is None):
        raise ConfigError("give either PROMPTS_FILE or --input-dir (one of them)")
    if input_dir is not None and output_file is not None:
        raise ConfigError(
            "--output-file does not apply to --input-dir: results go into the spec files "
            "(and DIR/.upsampling/results.json); drop -o"
        )
    if output_file is not None:
        return output_file
    if prompts_file is not None:
        return prompts_file.with_name(f"{prompts_file.stem}.upsampled.json")
    assert input_dir is not None
    return input_dir / ".upsampling" / "results.json"


def _run_specs(input_dir: Path, options: RunOptions, quiet: bool) -> None:
    from cosmos_workflow.specs import workflow

    with _progress(quiet) as advance:
        summary = workflow.upsample_spec_dir(input_dir, options, progress=advance)
    stderr.print(summary.describe(), markup=False, highlight=False)
    if summary.failed:
        raise typer.Exit(EXIT_PARTIAL)


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
    with bars.Progress(*columns, console=stderr, transient=False) as bar:
        task = bar.add_task("upsampling", total=None, rate="")

        def advance(count: int, total: int | None = None) -> None:
            if total is not None:
                bar.update(task, total=total)
            bar.update(task, advance=count)
            speed = bar.tasks[0].speed
            bar.update(task, rate=f"{speed:.2f} items/s" if speed else "")

        yield advance


def _summary(result: RunResult, invalid: int, output: Path | None) -> None:
    table = Table(title="Summary", title_justify="left")
    table.add_column("status")
    table.add_column("items", justify="right")
    for status in ("ok", "text_only", "fallback", "error"):
        table.add_row(status, str(result.counts.get(status, 0)))
    if invalid:
        table.add_row("invalid (skipped)", str(invalid))
    stderr.print(table)
    total = len(result.records)
    done_now = total - result.resumed
    rate = done_now / result.elapsed_s if result.elapsed_s > 0 else 0.0
    stderr.print(
        f"{total} items ({result.resumed} already done) in {result.elapsed_s:.1f} s, "
        f"{rate:.2f} items/s" + (f" -> {output}" if output else " (this rank's shard; another rank merges)"),
        markup=False,
        highlight=False,
    )
    for record in result.records:
        if record.error:
            stderr.print(f"{record.status} {record.name}: {record.error}", markup=False, highlight=False)
