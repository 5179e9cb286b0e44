"""``first_batch``: a small first batch (the shortest requests), so the first answers come early,
then the rest as before; off (0) the batches are exactly those of before."""

from __future__ import annotations

import pytest

from cosmos_workflow.planner import Plan
from cosmos_workflow.runner import Job, evened_batch_size, length_sorted_batches, ramped_batch_sizes
from cosmos_workflow.specs.batch import BatchItem
from tests.jobs import video_job


def job(name: str, tokens: int) -> Job:
    plan = Plan(name=name, max_tokens=300, total_tokens=tokens, max_model_len=4096, fits=True, status="ok")
    return Job(item=BatchItem(name=name, prompt=f"prompt {name}"), key=f"key-{name}", plan=plan)


@pytest.mark.parametrize(
    ("count", "fits", "first", "sizes"),
    [
        (200, 256, 16, (16, 184)),  # the 200 shots: 16 first, then one batch of the rest
        (1024, 335, 16, (16, 252)),  # the rest evened out: 4 batches of 252
        (10, 8, 20, (8, 2)),  # never more than fit
        (12, 9, 8, (8, 4)),  # the first may be larger than the others
        (3, 8, 5, (3, 3)),  # fewer than the first batch: one batch of them all
        (200, 256, 0, (0, 200)),  # off: as few equal batches as fit, as before
        (7, 3, 0, (0, 3)),
    ],
)
def test_the_first_batch_then_the_rest_evened_out(
    count: int, fits: int, first: int, sizes: tuple[int, int]
) -> None:
    assert ramped_batch_sizes(count, fits, first) == sizes


@pytest.mark.parametrize("count", [1, 2, 7, 100, 200, 255, 256, 257, 1024])
@pytest.mark.parametrize("fits", [1, 3, 8, 256, 335])
def test_off_the_size_is_that_of_before(count: int, fits: int) -> None:
    assert ramped_batch_sizes(count, fits, 0) == (0, evened_batch_size(count, fits))


def names(batches: list[list[Job]]) -> list[list[str]]:
    return [[j.item.name for j in batch] for batch in batches]


JOBS = [job("a", 50), job("b", 10), job("c", 30), job("d", 20), job("e", 40), job("f", 60), job("g", 15)]


def test_the_first_batch_holds_the_shortest_requests() -> None:
    assert names(length_sorted_batches(JOBS, 3, first=2)) == [
        ["b", "g"],
        ["d", "c", "e"],
        ["a", "f"],
    ]


def test_without_a_first_batch_the_batches_are_those_of_before() -> None:
    before = [["b", "g", "d"], ["c", "e", "a"], ["f"]]
    assert names(length_sorted_batches(JOBS, 3)) == before
    assert names(length_sorted_batches(JOBS, 3, first=0)) == before


def test_a_first_batch_larger_than_the_jobs_holds_them_all() -> None:
    assert names(length_sorted_batches(JOBS[:3], 2, first=5)) == [["b", "c", "a"]]
    assert length_sorted_batches([], 2, first=5) == []


def test_an_engine_that_shares_frames_gets_each_videos_requests_together() -> None:
    jobs = [
        video_job("x1", "x", 1030),
        video_job("y1", "y", 1020),
        video_job("x2", "x", 1050),
        video_job("y2", "y", 1060),
        video_job("x3", "x", 1010),
    ]

    assert names(length_sorted_batches(jobs, 3)) == [["x3", "y1", "x1"], ["x2", "y2"]]  # by length alone
    assert names(length_sorted_batches(jobs, 3, by_video=True)) == [["x3", "x1", "x2"], ["y1", "y2"]]
