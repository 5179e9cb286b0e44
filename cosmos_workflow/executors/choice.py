"""What runs a batch, chosen once from the run's options: the one place that says which
combinations are refused, and why.

:func:`choose` answers, in this order:

- ``remote`` given: the ``[remote]`` GPU host (not with another ``--executor`` than ``local``, nor
  an encoder tokenizer: its path is not sent to the host yet);
- an ``executor`` other than ``local`` (the executors are named once, in
  :data:`~cosmos_workflow.settings.EXECUTORS`): that executor's class, e.g. a Ray cluster's actor
  pool (started once, never under torchrun, nor with ``num_gpu > 1``; for ``ray`` the options
  already refused ``--num-gpu``/``--cuda-devices`` and an engine that does not run on Ray);
- ``num_gpu > 1`` in a single process: a torchrun child process, no more ranks than devices;
- this process started by torchrun (unless ``shard`` is off): this rank's shard;
- else this process.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from cosmos_workflow.errors import UsageError
from cosmos_workflow.executors.base import Executor
from cosmos_workflow.executors.launcher import TorchrunLauncher, device_limit
from cosmos_workflow.executors.local import LocalExecutor
from cosmos_workflow.executors.torchrun import RankInfo, TorchrunExecutor, rank_info
from cosmos_workflow.settings import EXECUTORS
from cosmos_workflow.tokenizer import encoder_tokenizer_file

if TYPE_CHECKING:
    from cosmos_workflow.config import RunOptions
    from cosmos_workflow.executors.remote import RemoteConfig

#: what runs a batch: an executor, or the torchrun child process that ``num_gpu > 1`` starts
Runs = Executor | TorchrunLauncher


def choose(options: RunOptions, *, remote: RemoteConfig | None = None, shard: bool = True) -> Runs:
    """What runs the batch ``options`` ask for, on ``remote`` when given; or one UsageError saying
    why that cannot be. ``shard`` off: a torchrun rank runs all the items itself (a spec folder)."""
    info = rank_info()
    if remote is not None:
        return _remote(options, remote)
    if options.executor != "local":
        return _named(options, info)
    if options.num_gpu > 1 and info is None:
        return _launcher(options)
    if info is None or not shard:
        return LocalExecutor()
    return TorchrunExecutor(info)


def _remote(options: RunOptions, remote: RemoteConfig) -> Executor:
    if options.executor != "local":
        raise UsageError(
            f"--remote runs the batch on the [remote] host; drop --executor {options.executor} (or use one)"
        )
    encoder = options.encoder_tokenizer
    if encoder is not None and encoder_tokenizer_file(encoder.expanduser()) is None:
        raise UsageError(
            f"--encoder-tokenizer {encoder} is a folder without tokenizer.json, and --remote sends the "
            "host one file to count the answers with: point it at a tokenizer.json, or drop --remote"
        )
    from cosmos_workflow.executors.remote import RemoteExecutor

    return RemoteExecutor(remote)


def _named(options: RunOptions, info: RankInfo | None) -> Executor:
    """The executor of :data:`~cosmos_workflow.settings.EXECUTORS` that ``options`` name, run once
    in this process, in torchrun's stead."""
    name = options.executor
    if info is not None:
        raise UsageError(f"--executor {name} runs once, not under torchrun: start it with plain python")
    if options.num_gpu > 1:
        raise UsageError(
            f"--num-gpu {options.num_gpu} starts torchrun, whose ranks run the local executor; drop "
            f"--num-gpu or --executor {name}"
        )
    module_name, _, class_name = EXECUTORS[name][1].partition(":")
    executor: type[Executor] = getattr(importlib.import_module(module_name), class_name)
    return executor()


def _launcher(options: RunOptions) -> TorchrunLauncher:
    """Refused at once (nothing started) when the run wants more processes than there are devices."""
    limit, devices = device_limit(options)
    if options.num_gpu > limit:
        raise UsageError(
            f"num_gpu {options.num_gpu} starts one process per device, and there are {limit} {devices}; "
            f"pass --num-gpu {limit} or fewer"
        )
    return TorchrunLauncher(options.num_gpu, options.cuda_devices)
