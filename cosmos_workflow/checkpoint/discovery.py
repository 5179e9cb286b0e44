"""Which checkpoint a run loads when no model is named: Cosmos-Transfer1's upsampler, where its
download script puts it (``$COSMOS_CHECKPOINT_DIR`` first, then ``./checkpoints``); a folder of the
per-control layout is narrowed to the control's variant."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from cosmos_workflow.checkpoint.variants import pick_variant
from cosmos_workflow.errors import ConfigError

log = logging.getLogger("cosmos_workflow")

#: where Cosmos-Transfer1's download script puts the upsampler, inside its checkpoints folder
UPSAMPLER_CHECKPOINT = Path("nvidia/Cosmos-UpsamplePrompt1-12B-Transfer")
#: the checkpoints folder Cosmos-Transfer1 downloaded into (the one holding ``nvidia/``)
CHECKPOINT_DIR_ENV = "COSMOS_CHECKPOINT_DIR"


def checkpoint_for(model: str | None, control: str | None, *, env: Mapping[str, str], cwd: Path) -> str:
    """``model``, else the upsampler found by :func:`default_checkpoint`; a folder holding
    per-control variants gives the one of ``control``."""
    if not model:
        model = str(default_checkpoint(env, cwd))
    if Path(model).is_dir():
        return str(pick_variant(Path(model), control))
    return model


def checkpoint_candidates(env: Mapping[str, str], cwd: Path) -> list[tuple[str, Path]]:
    """Where the upsampler is looked for when no model is given, in this order (the first found
    wins): ``$COSMOS_CHECKPOINT_DIR/nvidia/Cosmos-UpsamplePrompt1-12B-Transfer``, then
    ``checkpoints/nvidia/Cosmos-UpsamplePrompt1-12B-Transfer`` under the working directory."""
    candidates = []
    if env.get(CHECKPOINT_DIR_ENV):
        root = Path(env[CHECKPOINT_DIR_ENV]).expanduser()
        candidates.append((f"${CHECKPOINT_DIR_ENV}", root / UPSAMPLER_CHECKPOINT))
    candidates.append(("the working directory", cwd / "checkpoints" / UPSAMPLER_CHECKPOINT))
    return candidates


def default_checkpoint(env: Mapping[str, str], cwd: Path) -> Path:
    """The first of :func:`checkpoint_candidates` that exists, or one line saying where it looked."""
    candidates = checkpoint_candidates(env, cwd)
    for origin, path in candidates:
        if path.is_dir():
            log.info("no model given; using %s (under %s)", path, origin)
            return path
    looked = " and ".join(f"{path} ({origin})" for origin, path in candidates)
    unset = "" if env.get(CHECKPOINT_DIR_ENV) else f"; ${CHECKPOINT_DIR_ENV} is not set"
    raise ConfigError(
        f"no model given and no upsampler checkpoint at {looked}{unset}: pass --model PATH to a "
        "Pixtral/Cosmos upsampler checkpoint, a served model name with --engine openai, or --model "
        "tiny-random to try the pipeline with a tiny random model"
    )
