"""Where planned jobs run: this process, a torchrun rank, (next) a Ray actor pool or a remote host.

Every executor implements :class:`Executor`; :func:`executor_for` picks the one this process is
in (a torchrun rank when started by torchrun with more than one process, else local).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cosmos_workflow.executors.base import Executor, KeyedItem
from cosmos_workflow.executors.local import LocalExecutor

if TYPE_CHECKING:
    from cosmos_workflow.engines import Engine

__all__ = ["Executor", "KeyedItem", "LocalExecutor", "executor_for"]


def executor_for(engine: Engine | None = None) -> Executor:
    """A torchrun rank's executor under torchrun, else the local one (with the caller's engine)."""
    from cosmos_workflow.executors.torchrun import TorchrunExecutor, rank_info

    info = rank_info()
    if info is None:
        return LocalExecutor(engine)
    return TorchrunExecutor(info)
