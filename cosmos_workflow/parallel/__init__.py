"""Scale-out without collectives: torchrun ranks with their own journals, merged as a file step."""

from __future__ import annotations

from cosmos_workflow.parallel.merge import BY_NAME, MergeResult, by_key, journals_for, merge_output
from cosmos_workflow.parallel.torchrun import RankResult, rank_info, run_distributed_if_needed, shard_by_cost

__all__ = [
    "BY_NAME",
    "MergeResult",
    "RankResult",
    "by_key",
    "journals_for",
    "merge_output",
    "rank_info",
    "run_distributed_if_needed",
    "shard_by_cost",
]
