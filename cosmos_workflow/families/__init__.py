"""Model families behind one seam, chosen once from the checkpoint.

``config.json``'s ``model_type`` names the family (``llava`` with a Pixtral vision tower:
Pixtral; ``qwen2_5_vl``: Qwen2.5-VL); a Mistral-format folder (``params.json`` or ``tekken.json``)
and every named model (``tiny-random``, ``pixtral-12b-random``, a served model's name) are
Pixtral. A checkpoint of any other family is refused with one line naming its type. A family
declares its model types and names on its class; a new one is its module and a line in
:data:`FAMILIES` (its engines are the engines' affair: hf and vllm each load the families they serve).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from cosmos_workflow.errors import UsageError
from cosmos_workflow.families.base import Family
from cosmos_workflow.families.pixtral import PixtralFamily
from cosmos_workflow.families.qwen2_5_vl import Qwen25VLFamily

__all__ = [
    "FAMILIES",
    "Family",
    "family_for",
    "family_name",
    "family_name_of_config",
    "family_title",
    "model_type_of",
    "supported",
]


#: The families, the first the default (a folder without config.json, or a model name). A new
#: family is its module and one line here.
FAMILIES: tuple[type[Family], ...] = (PixtralFamily, Qwen25VLFamily)


def supported() -> dict[str, type[Family]]:
    """``config.json`` model types and the family that serves each."""
    return {model_type: family for family in FAMILIES for model_type in family.model_types}


@functools.lru_cache(maxsize=8)
def family_for(model: str | Path | None, system: str | None = None) -> Family:
    """The family of ``model`` (a checkpoint folder, a tokenizer file, or a model name), loaded
    once; every request's chat starts with the ``system`` prompt, if any."""
    return _family_of(_supported_type(model)).for_model(model, system)


def family_name(model: str | Path | None) -> str:
    """The name of ``model``'s family (``Family.name``) without loading its tokenizer."""
    return _name_of(_supported_type(model))


def family_name_of_config(config: object, source: str) -> str:
    """The name of the family (``Family.name``) of a checkpoint whose ``config.json`` parsed to
    ``config``, read elsewhere (e.g. on a remote host); one that names no model type (or None: a
    Mistral-format folder has no config.json) is Pixtral's. ``source`` names that checkpoint in the
    line refusing a model type no family serves."""
    return _name_of(_checked(_model_type_in(config), source))


def family_title(name: str) -> str:
    """A family's name (``Family.name``) as users know it: ``Pixtral``, ``Qwen2.5-VL / Cosmos-Reason1``."""
    return next((family.title for family in FAMILIES if family.name == name), name)


def _name_of(model_type: str | None) -> str:
    return _family_of(model_type).name


def _family_of(model_type: str | None) -> type[Family]:
    """The family serving a supported model type; the default one (Pixtral) for None."""
    return FAMILIES[0] if model_type is None else supported()[model_type]


def _supported_type(model: str | Path | None) -> str | None:
    """``model``'s checkpoint type when it has one, refused in one line if no family serves it."""
    return _checked(model_type_of(model), f"--model {model}")


def _checked(model_type: str | None, source: str) -> str | None:
    """``model_type`` if a family serves it (or None), else refused in one line naming ``source``."""
    if model_type is not None and model_type not in supported():
        served = ", ".join(f"{t} ({family.title})" for t, family in supported().items())
        raise UsageError(
            f"{source} is a {model_type!r} checkpoint, a model family cosmos-workflow does not "
            f"support; supported model types: {served}"
        )
    return model_type


def model_type_of(model: str | Path | None) -> str | None:
    """``config.json``'s model type when ``model`` is a folder with one that names it (else None)."""
    if model is None:
        return None
    config = Path(model).expanduser() / "config.json"
    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"--model {model}: cannot read {config}: {exc}") from exc
    return _model_type_in(data)


def _model_type_in(data: object) -> str | None:
    """The model type a parsed ``config.json`` names (None without one: Pixtral, as before
    families existed)."""
    if not isinstance(data, dict) or "model_type" not in data:
        return None
    model_type = str(data["model_type"])
    vision = data.get("vision_config")
    if (
        model_type == "llava"
        and isinstance(vision, dict)
        and vision.get("model_type", "pixtral") != "pixtral"
    ):
        return f"llava with a {vision['model_type']} vision tower"  # LLaVA-1.5 and kin: not Pixtral
    return model_type
