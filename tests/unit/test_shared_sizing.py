"""Batch sizes where requests share their frames (``share_prefix=decode``): a request's rows hold
its text and answer only, each distinct prefix is held once, and the runner bounds how many
distinct prefixes a batch can hold wherever its batches are cut."""

from __future__ import annotations

import pytest

from cosmos_workflow.engines.hf.decode_loop import cache_length
from cosmos_workflow.engines.hf.engine import TokenBytes, prefixes_bytes, request_bytes
from cosmos_workflow.runner import most_prefixes, shared_fits
from tests.jobs import video_job

#: Pixtral-12B's text decoder: 40 layers, 8 KV heads of 128, hidden 5120, 32 query heads
PIXTRAL = TokenBytes(kv=2 * 40 * 8 * 128 * 2, activations=(6 * 5120 + 4 * 32 * 128) * 2)
GIB = 1 << 30


def test_most_prefixes_is_the_most_distinct_keys_of_any_window() -> None:
    keys = list("aaaabbcdddd")
    assert most_prefixes(keys, 1) == 1
    assert most_prefixes(keys, 3) == 3  # "bcd"
    assert most_prefixes(keys, 4) == 3
    assert most_prefixes(keys, 6) == 4  # "abbcdd"
    assert most_prefixes(keys, 20) == 4
    assert most_prefixes([], 3) == 0


def test_a_compact_request_costs_its_text_and_answer_not_its_frames() -> None:
    # the benchmark's requests: 1,090 prompt tokens of which 1,000 are the two frames, 300-token answers
    whole = request_bytes(PIXTRAL, (1090, cache_length(1090, 300)))
    compact = request_bytes(PIXTRAL, (90, cache_length(90, 300)))
    assert 3.0 < whole / compact < 4.0  # 1,536 cache slots against 512
    # 4 clips of 64 in a batch of 256: the prefixes are a small part of the batch
    assert prefixes_bytes(PIXTRAL, 1000, 4) < 0.1 * 256 * compact


def memory_estimate(budget: int) -> tuple[list[tuple[int, int, int, int]], object]:
    """An engine's max_batch_size over ``budget`` bytes, with the hf engine's arithmetic."""
    asked: list[tuple[int, int, int, int]] = []

    def estimate(prompt: int, max_tokens: int, *, prefix_tokens: int = 0, prefixes: int = 0) -> int:
        asked.append((prompt, max_tokens, prefix_tokens, prefixes))
        if not prefixes:
            return budget // request_bytes(PIXTRAL, (prompt, cache_length(prompt, max_tokens)))
        rest = budget - prefixes_bytes(PIXTRAL, prefix_tokens, prefixes)
        text = prompt - prefix_tokens
        return max(1, rest // request_bytes(PIXTRAL, (text, cache_length(text, max_tokens))))

    return asked, estimate


@pytest.mark.parametrize(("videos", "each"), [(16, 64), (4, 256)])
def test_requests_that_share_frames_fit_about_three_times_as_many(videos: int, each: int) -> None:
    jobs = [video_job(f"{v}-{n}", f"clip{v}", 1060 + n % 40) for v in range(videos) for n in range(each)]
    asked, estimate = memory_estimate(100 * GIB)
    plain = estimate(1099, 300)
    size = shared_fits(jobs, estimate, 300)  # type: ignore[arg-type]
    assert 2.5 * plain < size <= len(jobs)
    # what was asked: the text after the frames and the frames apart, with a batch's most prefixes
    prompt, max_tokens, prefix, prefixes = asked[-1]
    assert (prompt, max_tokens, prefix) == (1099, 300, 1000) and 1 <= prefixes <= videos
    assert size <= estimate(1099, 300, prefix_tokens=1000, prefixes=min(videos, -(-size // each) + 1))


def test_requests_on_distinct_videos_fit_no_more_than_without_sharing() -> None:
    jobs = [video_job(f"n{n}", f"clip{n}", 1090) for n in range(1024)]
    _, estimate = memory_estimate(100 * GIB)
    assert shared_fits(jobs, estimate, 300) <= estimate(1090, 300)  # type: ignore[arg-type]


def test_text_only_requests_share_nothing_but_count_as_one_prefix() -> None:
    jobs = [video_job(f"t{n}", "", 40) for n in range(50)]
    _, estimate = memory_estimate(100 * GIB)
    assert shared_fits(jobs, estimate, 300) == 50  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prefixes", "shares"),
    [(6, True), (16, True), (171, True), (250, False), (342, False)],
    ids=["6-clips", "16-clips", "half", "most-distinct", "all-distinct"],
)
def test_shared_decoding_is_kept_where_it_holds_no_more_memory_than_the_plain_batch(
    prefixes: int, shares: bool
) -> None:
    """342 requests of 1,090 prompt tokens (1,000 of them frames): over a few clips the prefixes'
    own cache is small beside the rows' copies it replaces; where most requests have a clip of
    their own it is larger (each prefix counted twice while padded), and a batch the runner sized
    for the plain decoding would not fit shared."""
    from cosmos_workflow.engines.hf.engine import cascade_holds_less

    text, whole = (96, cache_length(96, 300)), (1104, cache_length(1104, 300))
    assert cascade_holds_less(PIXTRAL, 1000, prefixes, 342, text, whole) is shares
