"""torchrun's environment variables, and hiding them from an engine while it starts.

Each torchrun rank runs a self-contained single-GPU engine; an engine that sees RANK, WORLD_SIZE
or MASTER_* tries to join torchrun's process group (vLLM fails that way). Kept apart from
:mod:`cosmos_workflow.executors.torchrun` so engines can use it without importing the runner.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

#: Variables torchrun sets that would make an engine think it is part of a distributed job.
TORCHRUN_VARIABLES = frozenset(
    {
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "LOCAL_WORLD_SIZE",
        "GROUP_RANK",
        "GROUP_WORLD_SIZE",
        "ROLE_RANK",
        "ROLE_NAME",
        "ROLE_WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
        "OMP_NUM_THREADS_SET_BY_TORCHRUN",
    }
)
_TORCHELASTIC_PREFIX = "TORCHELASTIC_"


def is_torchrun_variable(name: str) -> bool:
    return name in TORCHRUN_VARIABLES or name.startswith(_TORCHELASTIC_PREFIX)


@contextlib.contextmanager
def hidden_torchrun_environment() -> Iterator[None]:
    """Remove torchrun's variables from ``os.environ`` for the block; restore them after.

    Worker processes the engine starts inside the block inherit the clean environment.
    """
    hidden = {name: value for name, value in os.environ.items() if is_torchrun_variable(name)}
    for name in hidden:
        del os.environ[name]
    try:
        yield
    finally:
        os.environ.update(hidden)
