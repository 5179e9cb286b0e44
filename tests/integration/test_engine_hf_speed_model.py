"""The transformers engine's speed options on the tiny random Pixtral model, on CPU: they change
how the work is done, never the answer."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from cosmos_workflow.engines.base import EncodedRequest, EngineConfig, SamplingParams
from cosmos_workflow.engines.hf import FLEX_ATTENTION, GQA_ATTENTION, HFEngine, load
from cosmos_workflow.engines.hf.loading import finish_load
from cosmos_workflow.engines.tiny import EOS_ID, build_random_model, tiny_config
from cosmos_workflow.errors import GPUOutOfMemoryError

GREEDY = SamplingParams(temperature=0.0, max_tokens=10)
STOCK = {"gqa_decode": False, "vision_chunk": 10**6, "prefill_chunk": 10**6}


@pytest.fixture(scope="module")
def stock_texts(tiny_model: Path, requests: list[EncodedRequest]) -> list[str]:
    with load(EngineConfig(model=str(tiny_model), options=STOCK)) as engine:
        return [g.text for g in engine.generate(requests, GREEDY)]


@pytest.fixture
def engine(tiny_model: Path) -> Iterator[HFEngine]:
    with load(EngineConfig(model=str(tiny_model))) as loaded:
        yield loaded


@pytest.mark.parametrize(
    "options",
    [
        {"gqa_decode": True},
        {"vision_chunk": 1, "prefill_chunk": 7},
        {
            "gqa_decode": True,
            "vision_chunk": 40,
            "prefill_chunk": 5,
            "static_cache": True,
            "batch_bucket": 64,
        },
        {"gqa_decode": True, "decode_attention": "flex"},
        {"gqa_decode": True, "decode_attention": "flex", "static_cache": True, "batch_bucket": 64},
        {"static_cache": True, "decode_loop": False},
        {"static_cache": True, "gqa_decode": False, "batch_bucket": 16},
        {"static_cache": True, "decode_attention": "flex", "batch_bucket": 64},
        {"static_cache": True, "fuse_prefill": "eager", "prefill_chunk": 7},
    ],
    ids=[
        "gqa-decode",
        "chunked",
        "all-with-static-cache",
        "flex-decode",
        "flex-decode-static-cache",
        "static-cache-through-generate",
        "own-loop-stock-sdpa",
        "own-loop-flex",
        "fused-prefill-traced",
    ],
)
def test_speed_options_do_not_change_greedy_answers(
    tiny_model: Path, requests: list[EncodedRequest], stock_texts: list[str], options: dict[str, bool | int]
) -> None:
    with load(EngineConfig(model=str(tiny_model), options=options)) as engine:
        texts = [g.text for g in engine.generate(requests, GREEDY)]

    assert texts == stock_texts
    assert len(set(texts)) == 3


def test_the_decoder_uses_gqa_decode_attention_and_the_vision_tower_does_not(engine: HFEngine) -> None:
    config = engine._model.config

    assert config.text_config._attn_implementation == GQA_ATTENTION
    assert config.vision_config._attn_implementation == "sdpa"
    engine.with_options({"decode_attention": "flex"})
    assert config.text_config._attn_implementation == FLEX_ATTENTION
    assert config.vision_config._attn_implementation == "sdpa"


def test_flex_decode_attention_reads_block_masks_in_every_decoding_step(
    tiny_model: Path, requests: list[EncodedRequest]
) -> None:
    """The mask function hands the attention a block mask for each one-token step."""
    with load(EngineConfig(model=str(tiny_model), options={"decode_attention": "flex"})) as engine:
        masks: list[str] = []
        attention = engine._model.model.language_model.layers[0].self_attn
        attention.register_forward_hook(
            lambda _m, _args, kwargs, _out: masks.append(type(kwargs["attention_mask"]).__name__),
            with_kwargs=True,
        )

        engine.generate(requests, SamplingParams(temperature=0.0, max_tokens=4))

    assert engine.config.options == {"decode_attention": "flex"}
    assert masks == ["Tensor", "BlockMask", "BlockMask", "BlockMask"]  # prefill, then 3 steps


def test_the_vision_tower_runs_one_group_of_images_at_a_time(
    tiny_model: Path, requests: list[EncodedRequest]
) -> None:
    with load(EngineConfig(model=str(tiny_model), options={"vision_chunk": 1})) as engine:
        images_per_call: list[int] = []
        conv = engine._model.model.vision_tower.patch_conv
        conv.register_forward_hook(lambda _m, inputs, _o: images_per_call.append(inputs[0].shape[0]))

        engine.generate(requests, SamplingParams(temperature=0.0, max_tokens=2))

    assert images_per_call == [1, 1, 1]  # three images in the batch, one per vision-tower call


def test_ignore_eos_runs_every_answer_to_max_tokens(tiny_model: Path, requests: list[EncodedRequest]) -> None:
    """EOS is made the certain choice: only the benchmark switch keeps the answers going."""
    results = {}
    for ignore in (False, True):
        with load(EngineConfig(model=str(tiny_model), options={"ignore_eos": ignore})) as engine:
            head = engine._model.lm_head
            steered = torch.nn.Linear(head.in_features, head.out_features, bias=True)
            with torch.no_grad():
                steered.weight.zero_()
                steered.bias.zero_()
                steered.bias[EOS_ID] = 10.0
            engine._model.lm_head = steered
            results[ignore] = engine.generate(requests, GREEDY)

    assert [(r.finish_reason, r.completion_tokens) for r in results[False]] == [("stop", 1)] * 3
    assert [(r.finish_reason, r.completion_tokens) for r in results[True]] == [("length", 10)] * 3


def test_with_options_shares_the_loaded_model(engine: HFEngine, requests: list[EncodedRequest]) -> None:
    other = engine.with_options({"static_cache": True, "batch_bucket": 32, "ignore_eos": True})

    assert other._model is engine._model
    assert (other.options.static_cache, other.options.batch_bucket, other.options.ignore_eos) == (
        True,
        32,
        True,
    )
    assert other.config.options["batch_bucket"] == 32
    other.close()
    assert engine.generate(requests[2:], GREEDY)[0].error is None


def test_turning_gqa_decode_off_restores_sdpa(engine: HFEngine) -> None:
    stock = engine.with_options({"gqa_decode": False})

    assert engine._model.config.text_config._attn_implementation == "sdpa"
    assert stock.options.gqa_decode is False


def test_batch_size_from_memory_is_only_a_gpu_matter(engine: HFEngine) -> None:
    assert engine.max_batch_size(prompt_tokens=1100, max_tokens=300) == 8
    assert engine.max_batch_size(1100, 300, prefix_tokens=1000, prefixes=4) == 8


def test_each_batch_is_logged_with_its_time(
    engine: HFEngine, requests: list[EncodedRequest], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="cosmos_workflow"):
        engine.generate(requests, SamplingParams(temperature=0.0, max_tokens=2))

    tokens = sum(r.num_tokens for r in requests)
    assert f"hf engine on cpu: 3 requests, {tokens} prompt tokens, " in caplog.text


def test_an_out_of_memory_error_wrapped_by_torch_compile_is_still_retryable(
    engine: HFEngine, requests: list[EncodedRequest], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No GPU here: the error is raised where torch.compile would raise it, wrapped as it wraps it."""

    class BackendCompilerFailed(RuntimeError):
        def __init__(self, inner: BaseException) -> None:
            super().__init__(f"backend='inductor' raised: {inner}")
            self.inner_exception = inner

    def compile_fails(**_: object) -> None:
        raise BackendCompilerFailed(
            torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.25 GiB")
        )

    monkeypatch.setattr(engine._model, "generate", compile_fails)

    with pytest.raises(GPUOutOfMemoryError, match=r"batch of 3 requests .* smaller --batch-size"):
        engine.generate(requests, GREEDY)


def test_a_model_built_in_place_matches_a_normally_built_one(requests: list[EncodedRequest]) -> None:
    """The meta-device build (used for pixtral-12b-random on a GPU), here at tiny size on the CPU."""
    from transformers import LlavaForConditionalGeneration

    built = build_random_model(tiny_config(), torch.device("cpu"), torch.float32)
    reference = LlavaForConditionalGeneration(tiny_config())

    buffers = dict(reference.named_buffers())
    for name, buffer in built.named_buffers():
        torch.testing.assert_close(buffer, buffers[name])  # rotary tables recomputed, not garbage
    weights = dict(built.named_parameters())
    assert all(bool(torch.isfinite(p).all()) for p in weights.values())
    assert 0.015 < float(weights["lm_head.weight"].detach().std()) < 0.025
    assert bool((weights["model.language_model.norm.weight"] == 1).all())
    with finish_load(EngineConfig(model="built-in-place"), built, None) as engine:
        results = engine.generate(requests, SamplingParams(temperature=0.0, max_tokens=4))
    assert [r.completion_tokens for r in results] == [4, 4, 4]
    assert engine.tokenizer_path is None


def test_the_own_decoding_loop_samples_as_generate_does(
    tiny_model: Path, requests: list[EncodedRequest]
) -> None:
    """Seeded temperature and top-p sampling: the same random draws, so the same answers."""
    sampling = SamplingParams(temperature=0.8, top_p=0.9, max_tokens=12, seed=5)
    texts = {}
    for own in (True, False):
        options = {"static_cache": True, "decode_loop": own}
        with load(EngineConfig(model=str(tiny_model), options=options)) as engine:
            texts[own] = [g.text for g in engine.generate(requests, sampling)]

    assert texts[True] == texts[False]
    assert len(set(texts[True])) == 3


def test_the_own_decoding_loop_does_not_call_generate_and_stops_when_every_answer_has_ended(
    tiny_model: Path, requests: list[EncodedRequest], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cosmos_workflow.engines.hf.decode_loop import CHECK_EVERY, SWITCH_INTERVAL

    with load(EngineConfig(model=str(tiny_model), options={"static_cache": True})) as engine:
        model = engine._model
        monkeypatch.setattr(model, "generate", lambda **_: pytest.fail("generate was called"))
        head = model.lm_head
        steered = torch.nn.Linear(head.in_features, head.out_features, bias=True)
        with torch.no_grad():
            steered.weight.zero_()
            steered.bias.zero_()
            steered.bias[EOS_ID] = 10.0
        model.lm_head = steered
        intervals: list[float] = []
        model.register_forward_hook(
            lambda _m, args, kwargs, _o: intervals.append(sys.getswitchinterval()), with_kwargs=True
        )
        before = sys.getswitchinterval()

        results = engine.generate(requests, SamplingParams(temperature=0.0, max_tokens=100))

    assert [(r.finish_reason, r.completion_tokens) for r in results] == [("stop", 1)] * 3
    assert len(intervals) == CHECK_EVERY  # the prefill, then steps until the first check
    # the decoding steps hand the GIL over often (preprocessing threads run beside them); restored after
    assert intervals[0] == before > SWITCH_INTERVAL
    assert intervals[1:] == pytest.approx([SWITCH_INTERVAL] * (CHECK_EVERY - 1))
    assert sys.getswitchinterval() == before


def test_a_fused_prefill_sends_each_norm_and_mlp_once_through_its_compiled_function(
    tiny_model: Path, requests: list[EncodedRequest], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prefill (several tokens) takes the compiled functions; the decoding steps never do."""
    from collections import Counter

    from cosmos_workflow.engines.hf import prefill

    calls: Counter[str] = Counter()

    def spy(function: Any, backend: str) -> Any:
        def run(hidden: torch.Tensor, *weights: Any) -> Any:
            calls[function.__name__] += 1
            assert hidden.shape[-2] > 1 and backend == "eager"
            return function(hidden, *weights)

        return run

    monkeypatch.setattr(prefill, "_compiled", spy)
    options = {"static_cache": True, "fuse_prefill": "eager"}
    with load(EngineConfig(model=str(tiny_model), options=options)) as engine:
        layers = engine._model.config.text_config.num_hidden_layers
        engine.generate(requests, SamplingParams(temperature=0.0, max_tokens=4))

    assert calls == {"rms_norm": 2 * layers + 1, "silu_mlp": layers}


def test_the_own_loop_keeps_its_kv_cache_for_the_next_batch_that_fits_in_it(
    tiny_model: Path, requests: list[EncodedRequest]
) -> None:
    """A cache kept is a CUDA graph kept: a batch of as many requests that needs no more slots
    reuses it; one that needs more gets a new one."""
    from cosmos_workflow.engines.hf.decode_loop import decoder_for

    with load(EngineConfig(model=str(tiny_model), options={"static_cache": True})) as engine:
        decoder = decoder_for(engine._model)
        engine.generate(requests, SamplingParams(temperature=0.0, max_tokens=200))
        first = decoder._cache
        engine.generate(requests, SamplingParams(temperature=0.0, max_tokens=3))
        assert decoder._cache is first
        engine.generate(requests[:2], SamplingParams(temperature=0.0, max_tokens=3))
        assert decoder._cache is not first
        assert decoder.cache_bytes() > 0

    assert decoder.cache_bytes() == 0  # closing the engine lets the cache go


def test_a_smaller_batch_is_padded_to_the_kept_cache_and_gets_the_same_answers(
    tiny_model: Path, requests: list[EncodedRequest], caplog: pytest.LogCaptureFixture
) -> None:
    """pad_rows: the last, smaller batch of a run decodes on the kept cache (and so on its compiled
    step and CUDA graphs on a GPU) with copies of its shortest request; its own answers are those
    it gets alone, and the copies' answers never come back."""
    from cosmos_workflow.engines.hf.decode_loop import decoder_for

    sampling = SamplingParams(temperature=0.0, max_tokens=6)
    with load(EngineConfig(model=str(tiny_model), options={"static_cache": True})) as alone:
        assert not alone.options.pad_rows  # off on the CPU by default
        expected = [g.text for g in alone.generate(requests[:2], sampling)]
    options = {"static_cache": True, "pad_rows": True}
    with load(EngineConfig(model=str(tiny_model), options=options)) as engine:
        decoder = decoder_for(engine._model)
        engine.generate(requests, sampling)
        kept = decoder._cache
        with caplog.at_level(logging.INFO, logger="cosmos_workflow"):
            produced = engine.generate(requests[:2], sampling)
        assert decoder._cache is kept and decoder.cached_rows() == len(requests)

    assert [g.text for g in produced] == expected
    assert [g.prompt_tokens for g in produced] == [r.num_tokens for r in requests[:2]]
    assert "2 requests padded to the 3 rows" in caplog.text


@pytest.mark.parametrize(
    "options",
    [
        {"decode_attention": "flex"},
        {"decode_attention": "sdpa"},
        {"decode_attention": "flex", "share_prefix": "decode"},
        {"gqa_decode": False},
    ],
    ids=["flex", "sdpa", "flex-shared-decode", "transformers-sdpa"],
)
def test_a_step_layer_by_layer_gives_the_model_s_answers(
    tiny_model: Path, requests: list[EncodedRequest], options: dict[str, Any]
) -> None:
    """decode_step=layers writes the step out around the decoder's layers: the same greedy answers
    as transformers' forward, whatever the attention."""
    texts = {}
    for step in ("model", "layers"):
        speed = {"static_cache": True, **options, "decode_step": step}
        with load(EngineConfig(model=str(tiny_model), options=speed)) as engine:
            assert engine.options.decode_step == step
            texts[step] = [g.text for g in engine.generate(requests, GREEDY)]

    assert texts["layers"] == texts["model"]
    assert len(set(texts["model"])) == len(requests)


def test_one_compiled_layer_function_serves_every_layer() -> None:
    """The point of decode_step=layers: Dynamo traces one graph for all the decoder's layers (the
    layer's weights and KV cache are its inputs), where the whole forward is traced layer by layer;
    compiled, a layer's result is the uncompiled one's."""
    from torch._dynamo.utils import counters

    from cosmos_workflow.engines.hf.kernels import gqa_flex_attention
    from cosmos_workflow.engines.hf.layer_step import compiled_layer, decoder_layer
    from tests.layer_inputs import layer_inputs

    step = layer_inputs(4)
    hidden, cos, sin, mask, slot = step.hidden, step.cos, step.sin, step.mask, step.slot
    torch._dynamo.reset()
    before = counters["frames"]["total"]
    layer_fn = compiled_layer(backend="eager")

    with torch.no_grad():
        for layer in step.text.layers:
            cache = step.cache(torch.randn)
            plain = [c.clone() for c in cache]
            expected = decoder_layer(layer, hidden, cos, sin, *plain, slot, mask, gqa_flex_attention)
            got = layer_fn(layer, hidden, cos, sin, *cache, slot, mask, gqa_flex_attention)
            torch.testing.assert_close(got, expected)
            torch.testing.assert_close(cache, plain)  # the key and value written in place alike

    assert counters["frames"]["total"] - before == 1  # traced once, for the first layer only
