"""Where planned jobs run: this process, a torchrun rank, a Ray actor pool, a remote host.

Every executor implements :class:`Executor`; :func:`executor_for` picks the one the options ask
for (``executor = "ray"``) or the one this process is in (a torchrun rank when started by torchrun
with more than one process, else local), and :func:`launcher_for` the torchrun child that
``num_gpu > 1`` starts from a single process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cosmos_workflow.errors import UsageError
from cosmos_workflow.executors.base import Executor, KeyedItem, RunContext
from cosmos_workflow.executors.local import LocalExecutor

if TYPE_CHECKING:
    from cosmos_workflow.config import RunOptions
    from cosmos_workflow.engines import Engine
    from cosmos_workflow.executors.spawn import TorchrunLauncher

__all__ = ["Executor", "KeyedItem", "LocalExecutor", "RunContext", "executor_for", "launcher_for"]


def executor_for(
    options: RunOptions | None = None, engine: Engine | None = None, *, shard: bool = True
) -> Executor:
    """Ray when ``options`` ask for it; else a torchrun rank's executor under torchrun (unless
    ``shard`` is off), else the local one (with the caller's engine)."""
    from cosmos_workflow.executors.torchrun import TorchrunExecutor, rank_info

    info = rank_info()
    if options is not None and options.executor == "ray":
        if info is not None:
            raise UsageError("--executor ray runs once, not under torchrun: start it with plain python")
        from cosmos_workflow.executors.ray import RayExecutor

        return RayExecutor()
    if info is None or not shard:
        return LocalExecutor(engine)
    return TorchrunExecutor(info)


def launcher_for(options: RunOptions) -> TorchrunLauncher | None:
    """The torchrun child process for ``num_gpu > 1``, unless this process is a rank already."""
    from cosmos_workflow.executors.spawn import launcher_for as torchrun_launcher_for

    return torchrun_launcher_for(options)
