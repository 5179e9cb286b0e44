"""Versions of optional libraries that cosmos-workflow works with, checked before they are used.

The Cosmos-Transfer1 image pins transformers 4.49.0, older than the transformers the ``hf`` engine
is written for (it uses transformers' attention-function registry, its masking utilities and the
Llava layout of the 5.x releases). Rather than fail deep inside a model call with a traceback, the
``hf`` engine and ``convert-checkpoint`` refuse at once with one line naming the version found and
the fix. (In that image, ``--engine vllm`` is the engine to use; ``auto`` picks it on a GPU.)
"""

from __future__ import annotations

import re
from importlib import metadata

from cosmos_workflow.errors import ModelLoadError

#: The lowest transformers release the hf engine is tested with: keep equal to the lower bound of
#: pyproject's ``hf`` extra (a test checks). CI runs the tiny-model tests on exactly this release.
TRANSFORMERS_FLOOR = "5.17.0"
HF_INSTALL_HINT = "pip install 'cosmos-workflow[hf]'"


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string: '4.49.0' -> (4, 49, 0), '5.17.0.dev0' -> (5, 17, 0)."""
    match = re.match(r"\d+(\.\d+)*", version)
    if match is None:
        raise ValueError(f"not a version: {version!r}")
    return tuple(int(part) for part in match.group(0).split("."))


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def require_transformers(purpose: str) -> None:
    """Refuse at once, in one line, when transformers is missing or older than the floor."""
    found = installed_version("transformers")
    if found is None:
        raise ModelLoadError(
            f"{purpose} needs transformers and torch, which are not installed; run: {HF_INSTALL_HINT}"
        )
    if release(found) < release(TRANSFORMERS_FLOOR):
        raise ModelLoadError(
            f"{purpose} needs transformers>={TRANSFORMERS_FLOOR} but this environment has transformers "
            f"{found} (the Cosmos-Transfer1 image pins 4.49.0); here use --engine vllm, which loads "
            f"Mistral-format checkpoints as they are, or run {HF_INSTALL_HINT} in a separate "
            "virtual environment"
        )
