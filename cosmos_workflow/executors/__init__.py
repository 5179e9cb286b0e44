"""Where planned jobs run: this process, a torchrun rank, a Ray actor pool, a remote host.

Every executor implements :class:`Executor`. The ones ``--executor`` names are declared once, a
line each, in :data:`cosmos_workflow.settings.EXECUTORS`. Which one runs a batch is decided in one
place, :func:`cosmos_workflow.executors.choice.choose`, from the run's options (``executor``,
``num_gpu > 1``, ``--remote``) and the process it is in (a torchrun rank or not); it also says why a
combination is refused.
"""

from __future__ import annotations

from cosmos_workflow.executors.base import Executor, KeyedItem, RunContext
from cosmos_workflow.executors.local import LocalExecutor

__all__ = ["Executor", "KeyedItem", "LocalExecutor", "RunContext"]
