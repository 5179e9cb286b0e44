"""The older Cosmos layout: one checkpoint folder per control (depth/, segmentation/, viscontrol/)."""

from __future__ import annotations

from pathlib import Path

from cosmos_workflow.checkpoint.params import MISTRAL_PARAMS
from cosmos_workflow.errors import ConfigError, ModelLoadError

#: Per-control variant folders of the older Cosmos layout, by spec control name.
CONTROL_VARIANTS = {
    "vis": "viscontrol",
    "edge": "viscontrol",
    "viscontrol": "viscontrol",
    "depth": "depth",
    "seg": "segmentation",
    "segmentation": "segmentation",
}


def pick_variant(checkpoint_dir: Path, control: str | None) -> Path:
    """The folder to load for a spec's control: a flat checkpoint is itself; a per-control
    layout (depth/, segmentation/, viscontrol/) gives the folder matching ``control``."""
    checkpoint_dir = Path(checkpoint_dir)
    if _is_checkpoint(checkpoint_dir):
        return checkpoint_dir
    present = sorted({v for v in CONTROL_VARIANTS.values() if _is_checkpoint(checkpoint_dir / v)})
    if not present:
        raise ModelLoadError(
            f"{checkpoint_dir} is neither a checkpoint (params.json or config.json) nor a per-control "
            "layout (depth/, segmentation/, viscontrol/); point --model at the checkpoint folder"
        )
    if control is None:
        raise ConfigError(
            f"{checkpoint_dir} holds one checkpoint per control {present}; give the spec a control "
            "or point --model at one of them"
        )
    variant = CONTROL_VARIANTS.get(control.lower())
    if variant is None or variant not in present:
        raise ConfigError(
            f"no checkpoint for control {control!r} in {checkpoint_dir} (it has {present}); "
            f"controls map as {CONTROL_VARIANTS}"
        )
    return checkpoint_dir / variant


def _is_checkpoint(folder: Path) -> bool:
    return (folder / MISTRAL_PARAMS).is_file() or (folder / "config.json").is_file()
