"""The torchrun executor: this process is one rank of ``torchrun --nproc_per_node=N``; data
parallel, no collectives.

Each rank loads its own single-GPU engine (GPU ``LOCAL_RANK``) and runs its shard of the items
into its own journal (``<output>.rank<R>.journal.jsonl``). Shards are balanced by an estimated
token cost computed from cheap video probes (size and frame count, no planning), identically on
every rank, so no rank talks to another and each rank plans only its own items. When a rank
finishes it writes a "done" marker; the rank that finds every marker present (the last to finish)
writes the output from all journals, in input order. A rank that dies leaves no marker, so
nothing is merged; rerunning the same command resumes every rank from the journals, and
``cosmos-workflow merge`` merges by hand.

torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR, ...) are hidden from the engine while it
runs: vLLM would otherwise try to join torchrun's process group (DOMAIN.md section 1).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from cosmos_workflow.engines import engine_class
from cosmos_workflow.engines.environment import hidden_torchrun_environment
from cosmos_workflow.executors.base import Finished, KeyedItem, RunContext
from cosmos_workflow.executors.local import LocalExecutor
from cosmos_workflow.files import write_json_atomic
from cosmos_workflow.journal import rank_journal_suffix
from cosmos_workflow.planner import probe_item, requested_long_side

if TYPE_CHECKING:
    from cosmos_workflow.config import RunOptions
    from cosmos_workflow.families import Family
    from cosmos_workflow.runner import Job, Progress
    from cosmos_workflow.specs.batch import BatchItem

log = logging.getLogger("cosmos_workflow")

#: TEST ONLY: "RANK:N" makes that rank exit abruptly after N new items, to test recovery.
CRASH_HOOK_ENV = "COSMOS_WORKFLOW_TEST_CRASH_RANK_AFTER"


@dataclass(frozen=True)
class RankInfo:
    """This process' place in a torchrun job."""

    rank: int
    world_size: int
    local_rank: int


def rank_info(env: Mapping[str, str] | None = None) -> RankInfo | None:
    """The torchrun rank of this process, or None outside torchrun (or with a single process)."""
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE", "1") or "1")
    if world <= 1:
        return None
    rank = int(env["RANK"])
    return RankInfo(rank=rank, world_size=world, local_rank=int(env.get("LOCAL_RANK", str(rank))))


def pin_device(options: RunOptions, info: RankInfo) -> RunOptions:
    """Give the engine GPU ``LOCAL_RANK`` unless a device was chosen or there is no GPU."""
    if options.engine.device is not None or not _cuda_available(options.engine.engine):
        return options
    engine = options.engine.model_copy(update={"device": f"cuda:{info.local_rank}"})
    return options.model_copy(update={"engine": engine})


def _cuda_available(engine: str) -> bool:
    if not engine_class(engine).needs_gpu:
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


# --------------------------------------------------------------------------------------------
# Sharding
# --------------------------------------------------------------------------------------------


def item_cost(item: BatchItem, options: RunOptions, tokenizer: Family) -> int:
    """Estimated tokens for one item, from a cheap probe: the requested frames at the requested
    size, about a token per 4 bytes of prompt, and the answer. Not the plan: balancing needs only
    a fair estimate, and each rank plans its own items once."""
    settings = options.plan
    text = len(item.prompt.encode()) // 4 + settings.max_tokens
    video, _ = probe_item(item)
    if video is None or not settings.num_frames:
        return text
    long_side = requested_long_side(video.width, video.height, settings, tokenizer.max_long_side)
    size = tokenizer.fitted_size(video.width, video.height, long_side)
    return tokenizer.vision_tokens(min(settings.num_frames, video.frame_count), *size) + text


def shard_by_cost(costs: Sequence[int], world_size: int) -> list[list[int]]:
    """Item indices per rank: greedy longest-processing-time, each shard in input order.

    Deterministic (ties go to the lower index and the lower rank), so every rank computes the
    same shards from the same file without communicating.
    """
    loads = [(0, rank) for rank in range(world_size)]
    shards: list[list[int]] = [[] for _ in range(world_size)]
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        load, rank = heapq.heappop(loads)
        shards[rank].append(index)
        heapq.heappush(loads, (load + costs[index], rank))
    return [sorted(shard) for shard in shards]


def shard_fingerprint(keys: Sequence[str]) -> str:
    """Identifies one rank's work: its request keys (which already hash the options)."""
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Done markers
# --------------------------------------------------------------------------------------------


def done_marker_path(output: Path, rank: int) -> Path:
    return output.with_name(f"{output.name}{rank_journal_suffix(rank)}.done.json")


def write_done_marker(output: Path, rank: int, fingerprint: str, items: int, resumed: int) -> None:
    marker = {"rank": rank, "fingerprint": fingerprint, "items": items, "resumed": resumed}
    write_json_atomic(done_marker_path(output, rank), marker)


def finished_ranks(output: Path, fingerprints: Sequence[str]) -> dict[int, dict[str, object]]:
    """Markers of ranks that finished *this* work (a stale marker of other work does not count)."""
    found: dict[int, dict[str, object]] = {}
    for rank, fingerprint in enumerate(fingerprints):
        try:
            marker = json.loads(done_marker_path(output, rank).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(marker, dict) and marker.get("fingerprint") == fingerprint:
            found[rank] = marker
    return found


# --------------------------------------------------------------------------------------------
# The executor
# --------------------------------------------------------------------------------------------


class TorchrunExecutor(LocalExecutor):
    """One rank: its shard of the items, its own journal, and the output if it finishes last."""

    name = "torchrun"

    def __init__(self, info: RankInfo) -> None:
        super().__init__()
        self.info = info
        self.journal_suffix = rank_journal_suffix(info.rank)
        self.primary = info.rank == 0
        self.fingerprints: list[str] = []

    def adapt(self, options: RunOptions) -> RunOptions:
        return pin_device(options, self.info)

    def select(self, items: Sequence[KeyedItem], options: RunOptions, tokenizer: Family) -> list[KeyedItem]:
        shards = shard_by_cost([item_cost(k.item, options, tokenizer) for k in items], self.info.world_size)
        self.fingerprints = [shard_fingerprint([items[i].key for i in shard]) for shard in shards]
        mine = [items[i] for i in shards[self.info.rank]]
        log.info("rank %d of %d: %d of %d items", self.info.rank, self.info.world_size, len(mine), len(items))
        return mine

    def execute(self, jobs: Sequence[Job], run: RunContext) -> None:
        with hidden_torchrun_environment():
            super().execute(jobs, replace(run, progress=_crash_hook(run.progress, self.info.rank)))

    def start(self, output: Path, options: RunOptions) -> None:
        """A forced rerun first removes this rank's marker, so no rank merges before it is done."""
        if options.force:
            done_marker_path(output, self.info.rank).unlink(missing_ok=True)

    def finish(self, output: Path, selected: Sequence[KeyedItem], resumed: int) -> Finished:
        rank = self.info.rank
        write_done_marker(output, rank, self.fingerprints[rank], len(selected), resumed)
        finished = finished_ranks(output, self.fingerprints)
        if len(finished) < self.info.world_size:
            waiting = sorted(set(range(self.info.world_size)) - set(finished))
            log.info("rank %d done; ranks %s still running, the last one merges", rank, waiting)
            return Finished(writes_output=False, resumed=resumed)
        log.info("rank %d is the last; writing %s from every rank's journal", rank, output)
        return Finished(
            writes_output=True, resumed=sum(int(str(m.get("resumed", 0))) for m in finished.values())
        )


def _crash_hook(progress: Progress | None, rank: int) -> Progress | None:
    """TEST ONLY (``COSMOS_WORKFLOW_TEST_CRASH_RANK_AFTER=RANK:N``): die like a killed process."""
    spec = os.environ.get(CRASH_HOOK_ENV, "")
    target, _, after = spec.partition(":")
    if not spec or int(target) != rank:
        return progress
    done = 0

    def hook(count: int, total: int | None = None) -> None:
        nonlocal done
        if progress:
            progress(count, total=total)
        done += count if total is None else 0
        if done >= int(after):
            os._exit(17)

    return hook
