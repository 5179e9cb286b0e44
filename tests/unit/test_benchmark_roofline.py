"""The GPU benchmark's roofline (issue 26): each phase costs the larger of its compute time and its
memory time, so a decoding step at batch 256 is not credited with bandwidth alone."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.scripts import load_script


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("benchmarks/gpu_upsample.py", "gpu_upsample")


def pixtral_12b(bench: ModuleType) -> object:
    """Mistral-NeMo-12B's decoder (Pixtral-12B's): 40 layers, width 5120, 32 query and 8 KV heads
    of 128, MLP 14336, vocabulary 131072; a 24-layer, 1024-wide vision tower of 16-px patches."""
    per_layer = 5120 * 4096 + 2 * 5120 * 1024 + 4096 * 5120 + 3 * 5120 * 14336
    layers = 40 * per_layer
    return bench.Shape(
        decode_weight_bytes=2 * (layers + 131072 * 5120),
        layer_linear_params=layers,
        kv_bytes_per_token=2 * 40 * 8 * 128 * 2,
        layers=40,
        q_width=32 * 128,
        vision_linear_params=24 * 12 * 1024 * 1024,
        vision_layers=24,
        vision_width=1024,
        patch=16,
    )


def test_batch_256_decoding_is_memory_bound_at_the_issue_figures(bench: ModuleType) -> None:
    """The issue's arithmetic: 23 GB of weights and ~52 GB of cache a step (15.7 ms at 4.8 TB/s),
    about 6 TFLOP of products (6-7 ms at 989 TFLOP/s): the step costs the larger."""
    line = bench.roofline(pixtral_12b(bench), [1090] * 256, 1020, 300, bench.DATASHEETS["H200"])
    assert line["decode_bound"] == "memory"
    assert 0.015 < line["decode_step_s"] < 0.0165
    assert 0.0055 < line["decode_compute_s"] / 300 < 0.007
    assert line["decode_s"] == max(line["decode_compute_s"], line["decode_memory_s"])
    assert line["prefill_s"] == max(line["prefill_compute_s"], line["prefill_memory_s"])
    assert line["batch_s"] == line["prefill_s"] + line["decode_s"]


def test_a_card_with_more_bandwidth_is_held_by_its_compute(bench: ModuleType) -> None:
    fast_memory = bench.Ceilings(bytes_per_s=100e12, flops=989e12)
    line = bench.roofline(pixtral_12b(bench), [1090] * 256, 1020, 300, fast_memory)
    assert line["decode_bound"] == "compute"
    assert line["decode_s"] == line["decode_compute_s"] > line["decode_memory_s"]
    bytes_only = line["decode_memory_s"] / 300
    assert line["decode_step_s"] > 5 * bytes_only  # counting bytes alone would promise 5x too much


def test_one_request_decoding_is_bound_by_reading_the_weights(bench: ModuleType) -> None:
    line = bench.roofline(pixtral_12b(bench), [1090], 1020, 300, bench.DATASHEETS["H200"])
    weights_s = pixtral_12b(bench).decode_weight_bytes / 4.8e12  # type: ignore[attr-defined]
    assert line["decode_bound"] == "memory"
    assert weights_s < line["decode_step_s"] < 1.05 * weights_s


def test_every_request_its_own_prefix_is_the_unshared_roofline(bench: ModuleType) -> None:
    shape, sheet = pixtral_12b(bench), bench.DATASHEETS["H200"]
    prompts = [1068 + i % 40 for i in range(64)]
    plain = bench.roofline(shape, prompts, 1020, 300, sheet)
    own = bench.roofline(shape, prompts, 1020, 300, sheet, prefix=1000, groups=64)
    assert own == pytest.approx(plain)


def test_shared_frames_cut_the_prefill_and_the_cache_reads_not_the_products(bench: ModuleType) -> None:
    """256 requests over 4 clips (the issue-26 workload): each clip's ~1,000 frame tokens are
    prefilled, stored and read once per group; every query still attends to them."""
    shape, sheet = pixtral_12b(bench), bench.DATASHEETS["H200"]
    prompts = [1090] * 256
    plain = bench.roofline(shape, prompts, 1020, 300, sheet)
    shared = bench.roofline(shape, prompts, 1020, 300, sheet, prefix=1000, groups=4)
    assert shared["decode_flops"] == plain["decode_flops"]
    assert shared["prefill_flops"] < plain["prefill_flops"] / 8
    weights = 300 * shape.decode_weight_bytes  # type: ignore[attr-defined]
    cache_plain, cache_shared = plain["decode_bytes"] - weights, shared["decode_bytes"] - weights
    assert cache_shared < cache_plain / 4  # 256 x 240 + 4 x 1,000 slots a step instead of 256 x 1,240
    assert shared["decode_step_s"] < plain["decode_step_s"]
