"""Compiled kernels kept across processes, so a second run does not compile from scratch.

transformers compiles the decoding step with torch.compile (Inductor), which writes generated
code, compiled graphs and Triton kernels to a cache and finds them there in the next process.
Left alone, that cache lives under the temporary folder (``/tmp/torchinductor_<user>``), which
many machines empty at boot. The hf engine points it at one documented folder instead:

    ``$XDG_CACHE_HOME/cosmos-workflow/torch-compile`` (``~/.cache/...`` without XDG_CACHE_HOME)

with Inductor's cache in ``inductor/`` and Triton's in ``triton/``. ``--engine-option
compile_cache=PATH`` picks another folder; ``compile_cache=off`` leaves torch's settings as
they are. ``TORCHINDUCTOR_CACHE_DIR`` or ``TRITON_CACHE_DIR`` set by the user win over the
default folder (not over an explicit PATH). Deleting the folder is always safe.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger("cosmos_workflow")

#: environment variable read by torch's Inductor and by Triton, with the sub-folder of each
CACHE_VARIABLES = {"TORCHINDUCTOR_CACHE_DIR": "inductor", "TRITON_CACHE_DIR": "triton"}


def compile_cache_folder(setting: str) -> Path | None:
    """The folder for ``setting`` ('default', 'off' or a path); None for 'off'."""
    if setting == "off":
        return None
    if setting == "default":
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "cosmos-workflow" / "torch-compile"
    return Path(setting).expanduser()


def use_compile_cache(setting: str) -> Path | None:
    """Point Inductor's and Triton's caches at the folder for ``setting``; return the folder."""
    folder = compile_cache_folder(setting)
    if folder is None:
        return None
    for variable, sub in CACHE_VARIABLES.items():
        if setting == "default" and os.environ.get(variable):
            continue  # the user's own choice
        (folder / sub).mkdir(parents=True, exist_ok=True)
        os.environ[variable] = str(folder / sub)
    logger.info("compiled kernels are cached in %s", ", ".join(os.environ[v] for v in CACHE_VARIABLES))
    return folder
