"""Run ``upsample-prompts`` as one rank of ``torchrun --nproc_per_node=N``: data parallel, no collectives.

Each rank loads its own single-GPU engine (GPU ``LOCAL_RANK``) and upsamples its shard of the
items into its own journal (``<output>.rank<R>.journal.jsonl``). The shards are balanced by planned
token cost (greedy longest-processing-time), computed identically by every rank from the prompts
file alone, so no rank talks to another. When a rank finishes it writes a "done" marker file; the
rank that finds every marker present (the last to finish) merges all journals into the output, in
input order. A rank that dies leaves no marker, so nothing is merged; rerunning the same command
resumes every rank from its journal, and ``cosmos-workflow merge`` merges by hand.

torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR, ...) are hidden from the engine while it
runs: vLLM would otherwise try to join torchrun's process group (DOMAIN.md section 1).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cosmos_workflow import api
from cosmos_workflow.budget import plan_item, probe_item
from cosmos_workflow.errors import InputFileError
from cosmos_workflow.journal import journal_path_for, read_records, write_json_atomic
from cosmos_workflow.parallel.environment import hidden_torchrun_environment
from cosmos_workflow.parallel.merge import (
    by_key,
    journals_for,
    merge_output,
    rank_journal_suffix,
)
from cosmos_workflow.runner import Progress, RunOptions, RunResult, request_key
from cosmos_workflow.specs.batch import BatchItem, Problem, load_batch
from cosmos_workflow.specs.results import UpsampleRecord
from cosmos_workflow.tokenizer import Tokenizer

log = logging.getLogger("cosmos_workflow")

#: engines that never touch a local GPU (no torch import needed to pick a device)
_GPU_FREE_ENGINES = frozenset({"fake", "openai"})
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
    if engine in _GPU_FREE_ENGINES:
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


# --------------------------------------------------------------------------------------------
# Sharding
# --------------------------------------------------------------------------------------------


def item_cost(item: BatchItem, options: RunOptions, tokenizer: Tokenizer) -> int:
    """Planned tokens for one item: prompt (images + text) plus the answer reserved for it."""
    video, problem = probe_item(item)
    plan = plan_item(item.name, item.prompt, video, options.plan, tokenizer, video_problem=problem)
    return plan.total_tokens + plan.max_tokens


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


def write_done_marker(output: Path, rank: int, fingerprint: str, result: RunResult) -> None:
    marker = {"rank": rank, "fingerprint": fingerprint, "items": len(result.records)}
    write_json_atomic(done_marker_path(output, rank), marker | {"resumed": result.resumed})


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
# One rank
# --------------------------------------------------------------------------------------------


@dataclass
class RankResult(RunResult):
    """A rank's outcome. ``merged``: this rank wrote the output, so ``records`` cover every item.

    A rank that did not merge must exit 0 even if some of its items failed: torchrun stops every
    other rank as soon as one exits non-zero. The merging rank is the last one, so its exit code
    (e.g. "some items failed") can stop nothing unfinished.
    """

    rank: int = 0
    merged: bool = False


@dataclass(frozen=True)
class RankPlan:
    """What every rank knows about the job, computed identically on each."""

    items: list[BatchItem]
    keys: dict[str, str]
    shards: list[list[int]]
    fingerprints: list[str]


def plan_ranks(items: list[BatchItem], options: RunOptions, world_size: int) -> RankPlan:
    tokenizer = api.tokenizer_for(options.engine.model)
    keys = {item.name: request_key(item, options) for item in items}
    shards = shard_by_cost([item_cost(item, options, tokenizer) for item in items], world_size)
    fingerprints = [shard_fingerprint([keys[items[i].name] for i in shard]) for shard in shards]
    return RankPlan(items=items, keys=keys, shards=shards, fingerprints=fingerprints)


def run_distributed_if_needed(
    prompts_file: Path, output: Path, options: RunOptions, progress: Progress | None
) -> tuple[RunResult, list[Problem]] | None:
    """Under torchrun, upsample this rank's shard (and merge if last); else None.

    Returns a :class:`RankResult`: the rank that merges (``merged=True``) returns the result for
    all items; the others return their shard's and should exit 0 whatever it holds (see
    :class:`RankResult`).
    """
    info = rank_info()
    if info is None:
        return None
    started = time.monotonic()
    batch = load_batch(prompts_file)
    if not batch.items:
        raise InputFileError(f"{prompts_file} has no valid items; fix the problems it reports")
    if info.rank == 0:
        for problem in batch.problems:
            log.warning("skipped %s", problem)
    result = run_rank(batch.items, output, pin_device(options, info), info, progress, started=started)
    return result, batch.problems


def run_rank(
    items: list[BatchItem],
    output: Path,
    options: RunOptions,
    info: RankInfo,
    progress: Progress | None,
    *,
    started: float,
) -> RunResult:
    """This rank's shard into its journal, a done marker, and the merge if every rank is done."""
    plan = plan_ranks(items, options, info.world_size)
    if options.force:
        done_marker_path(output, info.rank).unlink(missing_ok=True)
    mine = [items[i] for i in plan.shards[info.rank]]
    log.info("rank %d of %d: %d of %d items", info.rank, info.world_size, len(mine), len(items))
    result = _upsample_shard(mine, output, options, info, progress, plan.keys)
    write_done_marker(output, info.rank, plan.fingerprints[info.rank], result)
    finished = finished_ranks(output, plan.fingerprints)
    if len(finished) < info.world_size:
        waiting = sorted(set(range(info.world_size)) - set(finished))
        log.info("rank %d done; ranks %s still running, the last one merges", info.rank, waiting)
        return RankResult(result.records, result.elapsed_s, result.resumed, result.counts, rank=info.rank)
    merged = _merge(items, output, plan, finished, started)
    log.info("rank %d merged %d journals into %s", info.rank, len(journals_for(output)), output)
    return RankResult(
        merged.records, merged.elapsed_s, merged.resumed, merged.counts, rank=info.rank, merged=True
    )


def _upsample_shard(
    mine: list[BatchItem],
    output: Path,
    options: RunOptions,
    info: RankInfo,
    progress: Progress | None,
    keys: Mapping[str, str],
) -> RunResult:
    """Items done in another journal (an earlier run with other ranks) are taken, not redone."""
    elsewhere = {} if options.force else _done_elsewhere(output, info.rank, {keys[i.name] for i in mine})
    todo = [item for item in mine if keys[item.name] not in elsewhere]
    with hidden_torchrun_environment():
        result = api.upsample(
            todo,
            options,
            output=output,
            journal_suffix=rank_journal_suffix(info.rank),
            progress=_crash_hook(progress, info.rank),
            write_output=False,
        )
    if not elsewhere:
        return result
    fresh = {r.key: r for r in result.records} | elsewhere
    records = [fresh[keys[item.name]] for item in mine]
    counts = Counter(r.status for r in records)
    return RunResult(records, result.elapsed_s, resumed=result.resumed + len(elsewhere), counts=counts)


def _done_elsewhere(output: Path, rank: int, wanted: set[str]) -> dict[str, UpsampleRecord]:
    own = journal_path_for(output, rank_journal_suffix(rank))
    found: dict[str, UpsampleRecord] = {}
    for path in journals_for(output):
        if path == own:
            continue
        # another rank may be appending right now: a torn last line is normal, not worth a warning
        for record in read_records(path, warn=False):
            if record.key in wanted and record.done:
                found[record.key] = record
    return found


def _merge(
    items: list[BatchItem],
    output: Path,
    plan: RankPlan,
    finished: Mapping[int, Mapping[str, object]],
    started: float,
) -> RunResult:
    merged = merge_output(items, output, by_key(plan.keys))
    if merged.missing:
        log.error(
            "%d item(s) have no result in any journal (%s); rerun the same command to do them",
            len(merged.missing),
            ", ".join(merged.missing[:10]),
        )
    resumed = sum(int(str(marker.get("resumed", 0))) for marker in finished.values())
    counts = Counter(r.status for r in merged.records)
    return RunResult(merged.records, time.monotonic() - started, resumed=resumed, counts=counts)


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
