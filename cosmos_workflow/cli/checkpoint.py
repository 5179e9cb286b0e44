"""``cosmos-workflow convert-checkpoint``: Mistral-format Pixtral -> Hugging Face format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cosmos_workflow.cli.app import app, setup_logging, stdout
from cosmos_workflow.cli.display import text


@app.command("convert-checkpoint")
def convert_checkpoint(
    src: Annotated[Path, typer.Argument(help="Mistral-format folder: params.json, consolidated.safetensors")],
    dst: Annotated[
        Path, typer.Argument(help="new folder for the Hugging Face checkpoint (the hf engine loads it)")
    ],
    control: Annotated[
        str | None,
        typer.Option(help="with a per-control layout (depth/, segmentation/, viscontrol/): which one"),
    ] = None,
) -> None:
    """Convert the Cosmos upsampler checkpoint so the transformers (hf) engine can load it."""
    from cosmos_workflow import checkpoint

    setup_logging()
    written = checkpoint.convert_checkpoint(checkpoint.pick_variant(src, control), dst)
    stdout.print(text(f"converted -> {written}"), highlight=False)
