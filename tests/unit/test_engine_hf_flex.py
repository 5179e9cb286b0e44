"""Decode attention over the filled blocks of the KV cache (flex_attention), the decode_attention
and compile_cache options, and where compiled kernels are cached. CPU only: flex_attention runs
uncompiled here, which computes the same function the GPU kernel does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn.attention.flex_attention import BlockMask
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

from cosmos_workflow.engines.hf import HFOptions, filled_block_mask, flex_decode_mask, gqa_flex_attention
from cosmos_workflow.engines.hf.compile_cache import compile_cache_folder, use_compile_cache
from cosmos_workflow.errors import ConfigError


class _Attention(torch.nn.Module):
    """What the attention functions read from the calling module."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.num_key_value_groups = groups


def _decode_inputs(length: int = 300, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Float64 query/key/value of one decoding step, 3 requests, 2 KV heads of 4 query heads each."""
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(3, 8, 1, 16, generator=generator, dtype=torch.float64)
    key = torch.randn(3, 2, length, 16, generator=generator, dtype=torch.float64)
    value = torch.randn(3, 2, length, 16, generator=generator, dtype=torch.float64)
    allowed = torch.ones(3, length, dtype=torch.bool)
    allowed[0, :140] = False  # left padding past the first block
    allowed[2, 200:] = False  # static-cache slots not written yet
    return query, key, value, allowed


def test_the_block_mask_lists_only_blocks_with_a_slot_to_attend_to() -> None:
    *_, allowed = _decode_inputs()

    mask = filled_block_mask(allowed, block=128)

    assert mask.kv_num_blocks.flatten().tolist() == [2, 3, 2]  # blocks 0-127, 128-255, 256-383
    assert mask.kv_indices[:, 0, 0, :2].tolist() == [[1, 2], [0, 1], [0, 1]]
    assert mask.seq_lengths == (1, 300)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flex_decode_attention_matches_sdpa_over_the_whole_cache(seed: int) -> None:
    query, key, value, allowed = _decode_inputs(seed=seed)
    module = _Attention(groups=4)

    ours, _ = gqa_flex_attention(module, query, key, value, filled_block_mask(allowed), scaling=0.3)
    reference, _ = sdpa_attention_forward(module, query, key, value, allowed[:, None, None, :], scaling=0.3)

    assert ours.shape == reference.shape == (3, 1, 8, 16)
    torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)


def test_a_dense_mask_or_several_query_tokens_stay_on_sdpa() -> None:
    generator = torch.Generator().manual_seed(3)
    query = torch.randn(2, 8, 5, 16, generator=generator)  # prefill: 5 query tokens
    key = torch.randn(2, 2, 5, 16, generator=generator)
    value = torch.randn(2, 2, 5, 16, generator=generator)
    module = _Attention(groups=4)

    ours, _ = gqa_flex_attention(module, query, key, value, None, scaling=0.25, is_causal=True)
    reference, _ = sdpa_attention_forward(module, query, key, value, None, scaling=0.25, is_causal=True)

    torch.testing.assert_close(ours, reference)


def _mask_arguments(q_length: int, q_offset: int) -> dict[str, Any]:
    """transformers' mask-function arguments for 2 requests, a cache of 12 slots."""
    padding = torch.ones(2, 12, dtype=torch.bool)
    padding[0, :3] = False  # request 0 is left-padded by 3
    return {
        "batch_size": 2,
        "q_length": q_length,
        "kv_length": 12,
        "q_offset": q_offset,
        "kv_offset": 0,
        "attention_mask": padding,
        "allow_is_causal_skip": False,
    }


def test_the_mask_function_gives_a_block_mask_for_a_decoding_step_only() -> None:
    step, prefill = _mask_arguments(q_length=1, q_offset=8), _mask_arguments(q_length=8, q_offset=0)

    decoding = flex_decode_mask(**step)
    dense = flex_decode_mask(**prefill)

    assert isinstance(decoding, BlockMask)
    expected = sdpa_mask(**step)[:, 0, -1, :]  # what SDPA attends to in this step
    assert expected[0].tolist() == [False] * 3 + [True] * 6 + [False] * 3
    within = decoding.mask_mod(torch.arange(2)[:, None], 0, 0, torch.arange(12)[None, :])
    assert torch.equal(within, expected)
    assert isinstance(dense, torch.Tensor) and torch.equal(dense, sdpa_mask(**prefill))


def test_decode_attention_defaults_to_flex_on_a_gpu_and_sdpa_on_a_cpu() -> None:
    assert HFOptions.parse({}, cuda=True).decode_attention == "flex"
    assert HFOptions.parse({}, cuda=False).decode_attention == "sdpa"
    assert HFOptions.parse({"decode_attention": "FLEX"}, cuda=False).decode_attention == "flex"


def test_an_unknown_decode_attention_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"decode_attention='flash' is not one of sdpa, flex"):
        HFOptions.parse({"decode_attention": "flash"}, cuda=True)


def test_compiled_kernels_go_to_the_documented_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)

    folder = use_compile_cache("default")

    assert folder == tmp_path / "xdg" / "cosmos-workflow" / "torch-compile"
    assert (folder / "inductor").is_dir() and (folder / "triton").is_dir()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(folder / "inductor")
    assert os.environ["TRITON_CACHE_DIR"] == str(folder / "triton")


def test_the_users_own_cache_variables_win_over_the_default_folder_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)

    use_compile_cache("default")
    kept = os.environ["TORCHINDUCTOR_CACHE_DIR"]
    use_compile_cache(str(tmp_path / "chosen"))

    assert kept == str(tmp_path / "mine")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "chosen" / "inductor")
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "chosen" / "triton")


def test_compile_cache_off_leaves_torch_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)

    assert use_compile_cache("off") is None
    assert compile_cache_folder("off") is None
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ
