"""``cosmos-workflow create-spec`` and ``list-specs``: the PromptSpec folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, get_args

import typer
from pydantic import TypeAdapter, ValidationError
from rich.table import Table

from cosmos_workflow.cli.app import app, stderr, stdout
from cosmos_workflow.cli.display import text
from cosmos_workflow.errors import UsageError
from cosmos_workflow.specs.prompt_spec import MODALITIES, Modality, UpsampleFrom
from cosmos_workflow.specs.store import DEFAULT_SPECS_DIR, SpecStore, StoredSpec

SpecsDir = Annotated[Path, typer.Option(help="the spec folder")]


def parse_controls(pairs: list[str]) -> dict[Modality, str | None]:
    """``depth=PATH`` pairs, or a bare ``vis``/``edge`` (computed from the input video), in order."""
    controls: dict[Modality, str | None] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        modality = _modality(key.strip(), pair)
        if modality in controls:
            raise UsageError(f"--control {modality} given twice; give each modality once")
        controls[modality] = _video_arg(raw, f"--control {modality}=") if sep and raw.strip() else None
    return controls


def _modality(key: str, pair: str) -> Modality:
    for modality in MODALITIES:
        if key == modality:
            return modality
    raise UsageError(
        f"--control {pair!r}: unknown modality {key!r}; "
        f"use one of {', '.join(MODALITIES)}, e.g. --control depth=d.mp4"
    )


def _video_arg(raw: str, option: str = "--video") -> str:
    """An existing local file is stored absolute; any other path as given (it may live on the GPU host)."""
    if not raw.strip():
        raise UsageError(f"{option} is empty; pass the video's path")
    if "\x00" in raw:
        raise UsageError(f"{option} contains a NUL character; fix the path")
    path = Path(raw).expanduser()
    if path.is_file():
        return str(path.resolve())
    stderr.print(text(f"warning: {raw} not found here; stored as given"), highlight=False)
    return raw


@app.command("create-spec")
def create_spec(
    name: Annotated[str, typer.Argument(help="a short name for the shot; names the file")],
    prompt: Annotated[str, typer.Argument(help="the short prompt to upsample later")],
    video: Annotated[str, typer.Option("--video", help="the input video")],
    negative_prompt: Annotated[str, typer.Option(help="what the generated video must avoid")] = "",
    control: Annotated[
        list[str] | None,
        typer.Option(
            help="control input MODALITY=PATH (vis, edge, depth, seg), repeatable; the first decides"
        ),
    ] = None,
    upsample_from: Annotated[
        str, typer.Option(help="video the upsampler sees: auto (Cosmos rule), input, vis, edge, depth, seg")
    ] = "auto",
    specs_dir: SpecsDir = DEFAULT_SPECS_DIR,
) -> None:
    """Write a new PromptSpec file and print its path."""
    stored = SpecStore(specs_dir).create(
        name,
        prompt,
        input_video_path=_video_arg(video),
        negative_prompt=negative_prompt,
        control_inputs=parse_controls(control or []),
        upsample_from=_upsample_from(upsample_from),
    )
    stderr.print(text(f"created {stored.spec.name} ({stored.spec.id})"), highlight=False)
    stdout.print(text(stored.path), highlight=False)


def _upsample_from(value: str) -> UpsampleFrom:
    try:
        return TypeAdapter(UpsampleFrom).validate_python(value)
    except ValidationError:
        raise UsageError(
            f"--upsample-from {value!r}; use one of {', '.join(get_args(UpsampleFrom))}"
        ) from None


@app.command("list-specs")
def list_specs(specs_dir: SpecsDir = DEFAULT_SPECS_DIR) -> None:
    """Show the folder's specs as a table; unreadable files are listed on stderr."""
    scan = SpecStore(specs_dir).scan()
    for problem in scan.problems:
        stderr.print(text(f"invalid {problem}"), highlight=False)
    if not scan.specs:
        stderr.print(text(f"no specs in {specs_dir}; create one with create-spec"), highlight=False)
        return
    stdout.print(_table(scan.specs))


def _table(specs: list[StoredSpec]) -> Table:
    table = Table(title="Prompt specs")
    for column in ("name", "id", "created", "video", "controls", "upsampled", "prompt"):
        table.add_column(column, overflow="fold")
    for stored in specs:
        spec = stored.spec
        controls = ", ".join(
            m if p is None else f"{m}={Path(p).name}" for m, p in spec.control_inputs.items()
        )
        cells = (
            spec.name,
            spec.id,
            spec.timestamp.strftime("%Y-%m-%d %H:%M"),
            Path(spec.input_video_path).name if spec.input_video_path else "-",
            controls or "-",
            _upsampled(stored),
            _short(spec.prompt),
        )
        table.add_row(*(text(cell) for cell in cells))
    return table


def _upsampled(stored: StoredSpec) -> str:
    spec = stored.spec
    if spec.upsampled_at is not None:
        return spec.upsampled_at.strftime("%Y-%m-%d %H:%M")
    return "yes (legacy)" if spec.is_upsampled else "no"


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
