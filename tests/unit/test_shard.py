"""Sharding by planned token cost, rank detection, and what the engine sees of torchrun."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cosmos_workflow.api import tokenizer_for
from cosmos_workflow.config import RunOptions
from cosmos_workflow.engines import EngineConfig
from cosmos_workflow.engines.environment import hidden_torchrun_environment
from cosmos_workflow.executors import KeyedItem, torchrun
from cosmos_workflow.executors.torchrun import (
    RankInfo,
    TorchrunExecutor,
    item_cost,
    pin_device,
    rank_info,
    shard_by_cost,
)
from cosmos_workflow.specs.batch import BatchItem


def loads(costs: list[int], shards: list[list[int]]) -> list[int]:
    return [sum(costs[i] for i in shard) for shard in shards]


def test_every_item_lands_on_exactly_one_rank_in_input_order() -> None:
    costs = [5, 3, 8, 1, 9, 2, 7]
    shards = shard_by_cost(costs, 3)
    assert sorted(i for shard in shards for i in shard) == list(range(7))
    assert all(shard == sorted(shard) for shard in shards)


def test_balanced_by_cost_not_by_count() -> None:
    costs = [100] + [10] * 10
    shards = shard_by_cost(costs, 2)
    assert shards == [[0], list(range(1, 11))]
    assert loads(costs, shards) == [100, 100]


def test_longest_first_greedy_is_within_four_thirds_of_the_best() -> None:
    costs = [4700, 4700, 1900, 1900, 1900, 500, 500, 3300, 3300, 3300, 800]
    shards = shard_by_cost(costs, 2)
    best = sum(costs) / 2
    assert max(loads(costs, shards)) <= best * 4 / 3


def test_uneven_count_and_more_ranks_than_items() -> None:
    assert [len(s) for s in shard_by_cost([1] * 5, 2)] == [3, 2]
    assert shard_by_cost([7, 7], 4) == [[0], [1], [], []]


def test_same_shards_every_time_even_with_ties() -> None:
    costs = [3, 3, 3, 3, 2, 2, 1]
    assert shard_by_cost(costs, 3) == shard_by_cost(list(costs), 3)
    assert shard_by_cost(costs, 3) == [[0, 3], [1, 4, 6], [2, 5]]


def test_a_video_item_costs_its_requested_image_tokens(small_video: Path) -> None:
    options = RunOptions()
    tokenizer = tokenizer_for(None)
    text_only = item_cost(BatchItem(name="t", prompt="a cat sits"), options, tokenizer)
    with_video = item_cost(BatchItem(name="v", prompt="a cat sits"), options, tokenizer)
    assert text_only == len("a cat sits") // 4 + options.plan.max_tokens == with_video
    with_video = item_cost(
        BatchItem(name="v", prompt="a cat sits", video_path=small_video), options, tokenizer
    )
    assert with_video > text_only


def test_every_rank_computes_the_same_shards(small_video: Path) -> None:
    items = [
        KeyedItem(
            BatchItem(name=f"i{n}", prompt="x " * (n + 1), video_path=small_video if n % 2 else None), f"k{n}"
        )
        for n in range(5)
    ]
    tokenizer = tokenizer_for(None)
    ranks = [TorchrunExecutor(RankInfo(rank=r, world_size=2, local_rank=r)) for r in range(2)]
    shards = [rank.select(items, RunOptions(), tokenizer) for rank in ranks]
    assert ranks[0].fingerprints == ranks[1].fingerprints and len(set(ranks[0].fingerprints)) == 2
    assert sorted(k.key for shard in shards for k in shard) == [f"k{n}" for n in range(5)]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}, None),
        ({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}, RankInfo(rank=3, world_size=4, local_rank=1)),
    ],
)
def test_rank_info(env: dict[str, str], expected: RankInfo | None) -> None:
    assert rank_info(env) == expected


def test_torchrun_variables_are_hidden_then_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    torchrun_env = {
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
        "TORCHELASTIC_RUN_ID": "abc",
    }
    for name, value in torchrun_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")

    with hidden_torchrun_environment():
        assert not set(torchrun_env) & set(os.environ)
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"

    assert {name: os.environ[name] for name in torchrun_env} == torchrun_env


def test_variables_come_back_even_when_the_engine_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(RuntimeError), hidden_torchrun_environment():
        raise RuntimeError("engine start failed")
    assert os.environ["RANK"] == "1"


def _options(engine: str, device: str | None = None) -> RunOptions:
    return RunOptions(engine=EngineConfig(engine=engine, device=device))


def test_pin_device_picks_local_rank_gpu_when_cuda_is_there(monkeypatch: pytest.MonkeyPatch) -> None:
    # GPU edge: this machine has none, so CUDA's presence is simulated
    monkeypatch.setattr(torchrun, "_cuda_available", lambda engine: True)
    info = RankInfo(rank=3, world_size=4, local_rank=1)
    assert pin_device(_options("hf"), info).engine.device == "cuda:1"
    assert pin_device(_options("hf", "cuda:0"), info).engine.device == "cuda:0"


def test_pin_device_leaves_cpu_runs_alone() -> None:
    info = RankInfo(rank=1, world_size=2, local_rank=1)
    assert pin_device(_options("fake"), info).engine.device is None
    assert pin_device(_options("hf"), info).engine.device is None  # no CUDA on this machine
