"""Frames several requests share (read-only, from ``media.SharedFrames``) are normalised once, to
exactly what mistral-common's encoder gives; ``memo.OnceEach`` underneath."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from cosmos_workflow.memo import OnceEach
from cosmos_workflow.tokenizer import load_tokenizer


def frames_of(sizes: list[tuple[int, int]], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for w, h in sizes]


def read_only(frames: list[np.ndarray]) -> list[np.ndarray]:
    shared = [f.copy() for f in frames]
    for frame in shared:
        frame.flags.writeable = False
    return shared


@pytest.mark.parametrize(
    ("sizes", "system"),
    [
        ([(480, 272), (480, 272)], None),
        ([(272, 480)], "Describe the video."),
        ([(1920, 1080), (33, 17)], None),
    ],
)
def test_shared_frames_encode_to_the_ids_and_images_of_mistral_commons_encoder(
    sizes: list[tuple[int, int]], system: str | None
) -> None:
    tok = load_tokenizer()
    frames = frames_of(sizes)
    theirs = tok.encode("A red car turns left.", frames, system=system)  # writable: mistral-common's path
    ours = tok.encode("A red car turns left.", read_only(frames), system=system)
    assert ours.token_ids == theirs.token_ids
    assert len(ours.pixel_values) == len(theirs.pixel_values) == len(sizes)
    for mine, reference in zip(ours.pixel_values, theirs.pixel_values, strict=True):
        assert mine.dtype == reference.dtype and np.array_equal(mine, reference)


def test_each_shared_frame_is_normalised_once_and_writable_frames_every_time() -> None:
    tok = load_tokenizer()
    shared = read_only(frames_of([(480, 272), (480, 272)], seed=1))
    first = tok.encode("one prompt", shared).pixel_values
    second = tok.encode("another prompt, longer than the first", shared).pixel_values
    assert all(a is b for a, b in zip(first, second, strict=True))
    writable = frames_of([(480, 272)], seed=2)
    assert tok.encode("x", writable).pixel_values[0] is not tok.encode("x", writable).pixel_values[0]


def test_once_each_computes_a_key_once_for_callers_at_once_and_keeps_no_error() -> None:
    memo: OnceEach[str, int] = OnceEach(max_bytes=100, size=lambda value: 10)
    calls: list[str] = []
    start = threading.Barrier(6)

    def slow(key: str) -> int:
        calls.append(key)
        return len(key)

    def ask() -> None:
        start.wait()
        assert memo.get("abc", lambda: slow("abc")) == 3

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["abc"] and memo.reused == 5

    def fail() -> int:
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        memo.get("bad", fail)
    assert memo.get("bad", lambda: 7) == 7  # the error was not kept


def test_once_each_keeps_what_fits_its_budget_least_recently_used_first() -> None:
    memo: OnceEach[int, int] = OnceEach(max_bytes=20, size=lambda value: 10)
    for key in (1, 2, 1, 3):  # 1 used again after 2: 2 goes when 3 comes
        memo.get(key, lambda: 0)
    assert memo.reused == 1
    memo.get(1, lambda: 0)
    memo.get(2, lambda: 0)
    assert memo.reused == 2  # 1 kept, 2 computed again
    nothing: OnceEach[int, int] = OnceEach(max_bytes=0, size=lambda value: 10)
    nothing.get(1, lambda: 0)
    nothing.get(1, lambda: 0)
    assert nothing.reused == 0
