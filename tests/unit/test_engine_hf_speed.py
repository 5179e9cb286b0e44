"""The transformers engine's speed pieces without a checkpoint: options, GQA decode attention,
image grouping, token chunking, out-of-memory handling, the full-size random architecture."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from cosmos_workflow.engines.base import EngineConfig
from cosmos_workflow.engines.hf import HFOptions, gqa_sdpa_attention, load
from cosmos_workflow.engines.hf.device import is_out_of_memory, release_failed_call
from cosmos_workflow.engines.hf.kernels import chunk_tokens, image_groups
from cosmos_workflow.engines.tiny import RANDOM_12B_MODEL, pixtral_12b_config
from cosmos_workflow.errors import ConfigError, ModelLoadError


class _Attention(torch.nn.Module):
    """What the attention functions read from the calling module."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.num_key_value_groups = groups


def _decode_inputs(batch: int = 3, kv_heads: int = 2, groups: int = 4, length: int = 20) -> tuple[Any, ...]:
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(batch, kv_heads * groups, 1, 16, generator=generator)
    key = torch.randn(batch, kv_heads, length, 16, generator=generator)
    value = torch.randn(batch, kv_heads, length, 16, generator=generator)
    mask = torch.ones(batch, 1, 1, length, dtype=torch.bool)
    mask[0, ..., :5] = False  # left padding
    mask[-1, ..., 15:] = False  # static-cache slots not written yet
    return query, key, value, mask


def test_options_have_speed_defaults_and_parse_strings() -> None:
    defaults = HFOptions.parse({}, cuda=True)
    parsed = HFOptions.parse(
        {
            "compile": "false",
            "gqa_decode": "off",
            "vision_chunk": "512",
            "prefill_chunk": "64",
            "ignore_eos": "1",
        },
        cuda=False,
    )

    assert (defaults.compile, defaults.gqa_decode, defaults.ignore_eos) == (True, True, False)
    assert (defaults.vision_chunk, defaults.prefill_chunk) == (4096, 16384)
    assert parsed == HFOptions(
        static_cache=False,
        batch_bucket=1,
        compile=False,
        gqa_decode=False,
        vision_chunk=512,
        prefill_chunk=64,
        ignore_eos=True,
    )


def test_the_own_loop_and_the_fused_prefill_are_gpu_defaults_and_the_loop_needs_a_static_cache() -> None:
    gpu, cpu = HFOptions.parse({}, cuda=True), HFOptions.parse({}, cuda=False)
    through_generate = HFOptions.parse({"decode_loop": "false"}, cuda=True)

    assert (gpu.decode_loop, gpu.fuse_prefill, gpu.batch_bucket) == (True, "inductor", 16)
    assert (cpu.decode_loop, cpu.fuse_prefill, cpu.batch_bucket) == (False, "off", 1)
    assert (through_generate.decode_loop, through_generate.batch_bucket) == (False, 64)
    assert HFOptions.parse({"static_cache": "true"}, cuda=False).decode_loop is True
    assert HFOptions.parse({"static_cache": "false", "decode_loop": "true"}, cuda=True).decode_loop is False
    assert HFOptions.parse({"fuse_prefill": "true"}, cuda=False).fuse_prefill == "inductor"
    assert HFOptions.parse({"fuse_prefill": False}, cuda=True).fuse_prefill == "off"


def test_batches_are_padded_to_the_kept_cache_where_the_step_is_compiled() -> None:
    assert HFOptions.parse({}, cuda=True).pad_rows is True
    assert HFOptions.parse({}, cuda=False).pad_rows is False  # every row costs its compute there
    assert HFOptions.parse({"compile": "false"}, cuda=True).pad_rows is False
    assert HFOptions.parse({"decode_loop": "false"}, cuda=True).pad_rows is False  # no kept cache
    assert HFOptions.parse({"static_cache": "true", "pad_rows": "yes"}, cuda=False).pad_rows is True


def test_the_decoding_step_runs_layer_by_layer_where_it_is_compiled() -> None:
    assert HFOptions.parse({}, cuda=True).decode_step == "layers"
    assert HFOptions.parse({}, cuda=False).decode_step == "model"
    assert HFOptions.parse({"compile": "false"}, cuda=True).decode_step == "model"  # nothing traced
    assert HFOptions.parse({"decode_step": "Model"}, cuda=True).decode_step == "model"
    assert HFOptions.parse({"decode_step": "Layers"}, cuda=False).decode_step == "layers"
    with pytest.raises(ConfigError, match="decode_step='graph' is not one of model, layers"):
        HFOptions.parse({"decode_step": "graph"}, cuda=True)


def test_the_kv_cache_length_is_rounded_to_cache_blocks() -> None:
    from cosmos_workflow.engines.hf.decode_loop import CACHE_BLOCK, cache_length

    assert CACHE_BLOCK == 256
    assert [cache_length(prompt, 300) for prompt in (1068, 1108, 1236, 1237)] == [1536, 1536, 1536, 1792]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"vision_chunk": 0}, r"vision_chunk=0 must be at least 1 \(1 means one image per call\)"),
        ({"prefill_chunk": "-3"}, r"prefill_chunk=-3 must be at least 1"),
        ({"ignore_eos": "sometimes"}, "ignore_eos='sometimes' is not a boolean"),
        ({"fuse_prefill": "triton"}, "fuse_prefill='triton' is not one of off, inductor, eager"),
        ({"decode_loop": "maybe", "static_cache": True}, "decode_loop='maybe' is not a boolean"),
    ],
)
def test_bad_speed_options_say_what_to_pass(options: dict[str, str | int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HFOptions.parse(options, cuda=False)


@pytest.mark.parametrize("float_mask", [False, True], ids=["bool-mask", "additive-mask"])
def test_gqa_decode_attention_matches_sdpa_with_repeated_heads(float_mask: bool) -> None:
    query, key, value, mask = _decode_inputs()
    if float_mask:
        mask = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    module = _Attention(groups=4)

    ours, _ = gqa_sdpa_attention(module, query, key, value, mask, scaling=0.3)
    reference, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.3)

    assert ours.shape == reference.shape == (3, 1, 8, 16)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_gqa_decode_attention_leaves_prefill_and_plain_heads_to_sdpa() -> None:
    generator = torch.Generator().manual_seed(1)
    query = torch.randn(2, 8, 5, 16, generator=generator)  # 5 query tokens: prefill
    key = torch.randn(2, 2, 5, 16, generator=generator)
    value = torch.randn(2, 2, 5, 16, generator=generator)
    module = _Attention(groups=4)

    ours, _ = gqa_sdpa_attention(module, query, key, value, None, scaling=0.25, is_causal=True)
    reference, _ = sdpa_attention_forward(module, query, key, value, None, scaling=0.25, is_causal=True)

    torch.testing.assert_close(ours, reference)


def test_image_groups_hold_at_most_the_patch_budget_and_at_least_one_image() -> None:
    sizes = torch.tensor(
        [[272, 480], [272, 480], [272, 480], [64, 64], [1024, 1024]]
    )  # 510, 510, 510, 16, 4096

    assert image_groups(sizes, 16, 1100) == [(0, 2), (2, 4), (4, 5)]
    assert image_groups(sizes, 16, 1) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    assert image_groups(sizes, 16, 10**6) == [(0, 5)]
    assert image_groups(None, 16, 100) == []


class _RecordingMLP(torch.nn.Module):
    """A per-token MLP that records how many tokens each call of its forward received."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.layers = torch.nn.Sequential(torch.nn.Linear(12, 40), torch.nn.SiLU(), torch.nn.Linear(40, 12))
        self.calls: list[int] = []

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        self.calls.append(hidden.numel() // hidden.shape[-1])
        result: torch.Tensor = self.layers(hidden)
        return result


def test_token_chunks_give_the_same_result_as_one_pass() -> None:
    mlp = _RecordingMLP()
    hidden = torch.randn(3, 50, 12)
    expected = mlp(hidden)
    mlp.calls.clear()

    chunk_tokens(mlp, 64)
    chunked = mlp(hidden)
    mlp(torch.randn(2, 7, 12))

    torch.testing.assert_close(chunked, expected)
    assert chunked.shape == (3, 50, 12)
    assert mlp.calls == [64, 64, 22, 14]  # 150 tokens in three pieces; 14 tokens in one call


def test_token_chunking_twice_wraps_the_original_forward_once() -> None:
    mlp = _RecordingMLP()
    chunk_tokens(mlp, 8)
    chunk_tokens(mlp, 3)

    mlp(torch.randn(1, 7, 12))

    assert mlp.calls == [3, 3, 1]


def test_out_of_memory_is_recognised_through_compile_wrappers() -> None:
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.25 GiB")

    class BackendCompilerFailed(RuntimeError):  # torch._dynamo's wrapper keeps the error here
        def __init__(self, inner: BaseException) -> None:
            super().__init__(f"backend='inductor' raised: {inner}")
            self.inner_exception = inner

    wrapped = BackendCompilerFailed(oom)
    chained = RuntimeError("generate failed")
    chained.__cause__ = oom

    assert is_out_of_memory(oom, torch)
    assert is_out_of_memory(wrapped, torch)
    assert is_out_of_memory(chained, torch)
    assert not is_out_of_memory(RuntimeError("shape mismatch"), torch)


def test_releasing_a_failed_call_drops_what_its_frames_held() -> None:
    class Block:
        """Stands in for a KV cache tensor held by a frame of the failed call."""

    def failing_call() -> None:
        cache = Block()
        holder.append(weakref.ref(cache))
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    holder: list[weakref.ref[Block]] = []
    try:
        failing_call()
    except RuntimeError as exc:
        kept = exc  # the runner keeps the error (as a cause) while it retries smaller batches
        release_failed_call(kept, torch)
    gc.collect()

    assert holder[0]() is None


def test_the_full_size_random_model_is_refused_on_a_cpu() -> None:
    with pytest.raises(
        ModelLoadError, match=r"pixtral-12b-random .* only on a CUDA GPU.*--model tiny-random"
    ):
        load(EngineConfig(model=RANDOM_12B_MODEL, device="cpu"))


def test_the_full_size_architecture_is_pixtral_12b() -> None:
    from transformers import LlavaForConditionalGeneration

    config = pixtral_12b_config()
    with torch.device("meta"):  # no memory, no initialisation: shapes only
        model = LlavaForConditionalGeneration._from_config(config, dtype=torch.bfloat16)  # type: ignore[no-untyped-call]

    text: Any = config.text_config
    vision: Any = config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (5120, 40, 32)
    assert (text.num_key_value_heads, text.head_dim, text.intermediate_size) == (8, 128, 14336)
    assert text.vocab_size == 131072 and text.rope_parameters["rope_theta"] == 1e9
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (1024, 24, 16)
    assert (vision.intermediate_size, vision.patch_size, vision.image_size) == (4096, 16, 1024)
    assert sum(p.numel() for p in model.parameters()) == 12_682_739_712


def test_share_prefix_takes_a_word_or_a_boolean_and_decode_needs_flex() -> None:
    def parse(**options: str | bool) -> str:
        return HFOptions.parse(options, cuda=True).share_prefix

    assert parse() == "off"
    assert parse(share_prefix=True) == parse(share_prefix="on") == "prefill"
    assert parse(share_prefix="decode") == "decode"  # flex is the GPU default
    assert HFOptions.parse({"share_prefix": "decode", "decode_loop": False}, cuda=True).share_prefix == "off"
    with pytest.raises(ConfigError, match="share_prefix=decode reads the shared prefixes through flex"):
        HFOptions.parse({"share_prefix": "decode", "static_cache": True}, cuda=False)  # sdpa: the CPU default
    with pytest.raises(ConfigError, match="share_prefix='everything' is not one of off, prefill, decode"):
        parse(share_prefix="everything")


def test_folding_query_heads_is_off_by_default_and_parses_a_boolean() -> None:
    assert not HFOptions.parse({}, cuda=True).fold_heads
    assert not HFOptions.parse({}, cuda=False).fold_heads
    assert HFOptions.parse({"share_prefix": "decode", "fold_heads": "true"}, cuda=True).fold_heads
    assert HFOptions.parse({"fold_heads": True}, cuda=False).fold_heads
    assert not HFOptions.parse({"fold_heads": "off"}, cuda=True).fold_heads
    with pytest.raises(ConfigError, match="fold_heads='sometimes' is not a boolean"):
        HFOptions.parse({"fold_heads": "sometimes"}, cuda=True)


def test_the_compile_phases_are_read_from_torch_once_something_compiled() -> None:
    """The first step's log line says how much of it was compiling (Dynamo's tracing, the backend)."""
    import torch

    from cosmos_workflow.engines.hf.decode_loop import COMPILE_PHASES, compile_seconds

    compiled = torch.compile(lambda x: torch.sin(x) * 2 + 1, backend="eager")
    compiled(torch.randn(3))
    spent = compile_seconds()
    assert set(spent) == set(COMPILE_PHASES.values())
    assert spent["total"] >= spent["backend"] >= 0 and spent["total"] > 0
