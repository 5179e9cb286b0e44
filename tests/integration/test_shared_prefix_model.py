"""A shared prefill (``share_prefix``) on the tiny Pixtral model: the answers of the plain
prefill, with each distinct prefix computed once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cosmos_workflow.engines.base import EncodedRequest, EngineConfig, SamplingParams
from cosmos_workflow.engines.hf import load

GREEDY = SamplingParams(temperature=0.0, max_tokens=12)
SAMPLED = SamplingParams(temperature=0.8, top_p=0.9, max_tokens=12, seed=7)


@pytest.fixture(scope="module")
def variants(tiny_encode: Callable[[str, str, Sequence[Any]], EncodedRequest]) -> list[EncodedRequest]:
    """Prompt variants on two videos, mixed with text-only requests, in no particular order."""
    rng = np.random.default_rng(0)
    wide = [rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(2)]
    tall = [rng.integers(0, 256, (128, 48, 3), dtype=np.uint8)]
    encode = tiny_encode

    return [
        encode("wide-1", "a red car turns left", wide),
        encode("tall-1", "a dog walks along the river at dawn", tall),
        encode("wide-2", "the car stops at the light and waits for a long while", wide),
        encode("text-1", "a quiet street", []),
        encode("wide-3", "rain", wide),
        encode("tall-2", "the dog runs", tall),
        encode("text-2", "a busy street at noon with people", []),
    ]


def answers(
    tiny_model: Path,
    requests: list[EncodedRequest],
    sampling: SamplingParams,
    share: str,
    **more: str | bool,
) -> list[str]:
    options = {"static_cache": True, "decode_attention": "flex", "share_prefix": share, **more}
    with load(EngineConfig(model=str(tiny_model), options=options)) as engine:
        assert engine.options.share_prefix == share
        return [g.text for g in engine.generate(requests, sampling)]


@pytest.mark.parametrize("share", ["prefill", "decode"])
@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled-with-seed"])
def test_a_shared_prefill_and_decoding_give_the_plain_answers(
    tiny_model: Path, variants: list[EncodedRequest], sampling: SamplingParams, share: str
) -> None:
    plain = answers(tiny_model, variants, sampling, share="off")
    assert answers(tiny_model, variants, sampling, share=share) == plain
    assert len(set(plain)) >= 5  # the variants' answers differ: each request got its own text


@pytest.mark.parametrize("step", ["model", "layers"])
def test_folded_query_heads_give_the_plain_answers(
    tiny_model: Path, variants: list[EncodedRequest], step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fold_heads: each decoding step's prefix attention runs with the tiny model's 2 query heads
    per KV head folded into its query rows (3 prefixes of at most 3 requests, rounded up to 4
    groups of 64 query slots: 128 rows a KV head), and the greedy answers are those of the
    unshared decoding."""
    from cosmos_workflow.engines.hf import prefix_attention

    plain = answers(tiny_model, variants, GREEDY, share="off")
    cascade = prefix_attention.cascade_attention
    seen: set[tuple[int, tuple[int, ...], int]] = set()

    def spy(*args: Any, **kwargs: Any) -> Any:
        prefix = args[4]
        seen.add((prefix.fold, tuple(prefix.members.shape), prefix.mask.shape[2]))
        return cascade(*args, **kwargs)

    monkeypatch.setattr(prefix_attention, "cascade_attention", spy)
    folded = answers(tiny_model, variants, GREEDY, share="decode", fold_heads=True, decode_step=step)

    assert folded == plain
    assert seen == {(2, (4, 64), 128)}


def test_shared_decoding_reads_the_prefixes_through_the_cascade_and_keeps_only_texts_in_the_batch(
    tiny_model: Path, variants: list[EncodedRequest]
) -> None:
    from cosmos_workflow.engines.hf.decode_loop import cache_length, decoder_for
    from cosmos_workflow.engines.hf.prefix_attention import decoder_attentions, prefix_of

    seen: list[tuple[int, int] | None] = []
    masks: list[tuple[int, ...]] = []
    options = {"static_cache": True, "decode_attention": "flex", "share_prefix": "decode"}
    with load(EngineConfig(model=str(tiny_model), options=options)) as engine:
        model: Any = engine._model
        first = decoder_attentions(model)[0]

        def look(module: Any, args: Any, kwargs: Any) -> None:
            prefix = prefix_of(module)
            seen.append(None if prefix is None else tuple(prefix.members.shape))

        def mask_of(_module: Any, args: Any, kwargs: Any) -> None:
            mask = kwargs["attention_mask"]
            masks.append(tuple(mask.shape) if hasattr(mask, "shape") else ())

        handles = [
            first.register_forward_pre_hook(look, with_kwargs=True),
            model.model.language_model.register_forward_pre_hook(mask_of, with_kwargs=True),
        ]
        try:
            engine.generate(variants, GREEDY)
        finally:
            for handle in handles:
                handle.remove()
        assert all(prefix_of(m) is None for m in decoder_attentions(model))  # detached after
        shared = engine._inputs(variants, GREEDY.max_tokens)
        rows, slots = decoder_for(model)._cache_shape or (0, 0)
    prefill, text, *steps = seen
    assert prefill is None  # the prefixes prefill as a batch of their own
    # the texts' prefill and every step see the prefixes: 3 prefixes of at most 3 requests, in a
    # grid rounded up to 4 groups of 128 query rows (one compiled shape; whole flex query blocks)
    assert [text, *steps] == [(4, 128)] * GREEDY.max_tokens
    # the batch's rows hold each request's text and answer only (no copy of its prefix)
    assert masks[1] == tuple(shared.text.shape)
    assert (rows, slots) == (len(variants), cache_length(shared.text.shape[1], GREEDY.max_tokens))


def test_each_distinct_prefix_is_prefilled_once(tiny_model: Path, variants: list[EncodedRequest]) -> None:
    calls: list[tuple[int, int]] = []
    options = {"static_cache": True, "share_prefix": True}
    with load(EngineConfig(model=str(tiny_model), options=options)) as engine:
        assert engine.options.share_prefix == "prefill"
        assert engine.shares_prefixes  # the runner keeps each video's requests in one batch
        model: Any = engine._model
        decoder = model.model.language_model

        def seen(_module: Any, args: Any, kwargs: Any) -> None:
            embeds = kwargs.get("inputs_embeds")
            calls.append(tuple(embeds.shape[:2]) if embeds is not None else tuple(kwargs["input_ids"].shape))

        handle = decoder.register_forward_pre_hook(seen, with_kwargs=True)
        try:
            engine.generate(variants, GREEDY)
        finally:
            handle.remove()
    prefixes, texts, *steps = calls
    assert prefixes[0] == 3  # wide, tall and the text-only requests' BOS
    assert texts[0] == len(variants)
    assert texts[1] < prefixes[1]  # the text after the images only
    assert all(step == (len(variants), 1) for step in steps)


def test_share_prefix_needs_the_own_decoding_loop(tiny_model: Path) -> None:
    options = {"static_cache": True, "decode_loop": False, "share_prefix": True}
    with load(EngineConfig(model=str(tiny_model), options=options)) as engine:
        assert engine.options.share_prefix == "off"
        assert not engine.shares_prefixes


@pytest.mark.parametrize("fold", [False, True], ids=["unfolded", "fold-heads"])
def test_the_cascade_compiles_into_one_graph_with_the_decoding_step(
    tiny_model: Path, variants: list[EncodedRequest], fold: bool
) -> None:
    """On a GPU the decoding step is compiled (CUDA graphs): the cascade must trace into it without
    a graph break (with its query heads folded into their KV heads' rows too: fold_heads). Here the
    same step is compiled whole (``fullgraph``) by the aot_eager backend (Inductor on a CPU cannot
    lower flex_attention's log-sum-exp), and answers as the eager one."""
    import torch
    from transformers import CompileConfig

    from cosmos_workflow.engines.hf.batch import PAD_ID
    from cosmos_workflow.engines.hf.decode_loop import Stops, decoder_for

    options = {"static_cache": True, "decode_attention": "flex", "share_prefix": "decode", "fold_heads": fold}
    with load(EngineConfig(model=str(tiny_model), options=options)) as engine:
        eager = [g.text for g in engine.generate(variants, GREEDY)]
        model: Any = engine._model
        model.generation_config.compile_config = CompileConfig(backend="aot_eager", mode=None, fullgraph=True)
        stops = Stops(eos_id=engine._tokenizer.eos_id, pad_id=PAD_ID)
        with torch.inference_mode():
            inputs = engine._inputs(variants, GREEDY.max_tokens)
            tokens = decoder_for(model).decode(
                inputs, GREEDY, stops, compiled=True, flex=True, cascade=True, fold_heads=fold
            )
        compiled = [
            engine._to_generation(r, t, GREEDY).text for r, t in zip(variants, tokens.tolist(), strict=True)
        ]
        # the next batch's eager prefill still gets the vision tower's hidden states (tracing leaves
        # transformers 5.2x's output collector in its compile mode: decode_loop resets it)
        again = [g.text for g in engine.generate(variants, GREEDY)]
    assert compiled == eager
    assert again == eager


def test_a_shared_batch_that_fails_is_answered_unshared_and_sharing_stops(
    tiny_model: Path, variants: list[EncodedRequest], monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """The cascade failed on an H100 (torch 2.11: the compiled prefix attention found no kernel)
    and the runner then answered 1,024 requests one at a time. The engine now answers the batch
    without shared prefixes, as it would with share_prefix=off, and keeps to that, with one warning."""
    from cosmos_workflow.engines.hf import prefix_attention

    plain = answers(tiny_model, variants, GREEDY, share="off")
    calls = []

    def no_kernel(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise RuntimeError("LoweringException: NoValidChoicesError: No choices to select")

    monkeypatch.setattr(prefix_attention, "cascade_attention", no_kernel)
    options = {"static_cache": True, "decode_attention": "flex", "share_prefix": "decode"}
    with (
        caplog.at_level("WARNING", logger="cosmos_workflow"),
        load(EngineConfig(model=str(tiny_model), options=options)) as engine,
    ):
        first = [g.text for g in engine.generate(variants, GREEDY)]
        assert not engine.shares_prefixes
        second = [g.text for g in engine.generate(variants, GREEDY)]
    assert first == second == plain
    assert calls == [1]  # tried once, then never again
    warnings = [r.getMessage() for r in caplog.records if "share_prefix=decode failed" in r.getMessage()]
    assert len(warnings) == 1 and "NoValidChoicesError" in warnings[0]


def test_the_benchmark_reads_each_batch_s_timing_line_with_its_first_step_apart(
    tiny_model: Path, variants: list[EncodedRequest]
) -> None:
    """gpu_vllm.py's per-batch roofline parses the engine's INFO lines: the sharing, the prefill,
    the first decoding step (compile and CUDA graphs on a GPU) apart from the steps after it."""
    import logging

    from tests.scripts import load_script

    bench = load_script("benchmarks/gpu_vllm.py", "gpu_vllm_lines")

    options = {"static_cache": True, "decode_attention": "flex", "share_prefix": "decode"}
    logger = logging.getLogger("cosmos_workflow")
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        config = EngineConfig(model=str(tiny_model), options=options)
        with bench.BatchLines() as lines, load(config) as engine:
            engine.generate(variants, GREEDY)
    finally:
        logger.setLevel(level)
    [batch] = lines.batches()
    assert batch["requests"] == len(variants)
    assert batch["prefixes"] == 3  # the two videos', and the text-only requests' (their BOS)
    assert batch["steps"] == GREEDY.max_tokens - 2  # the first answer token comes from the prefill
    assert batch["first_step_s"] > 0 and batch["step_ms"] > 0 and batch["prefill_s"] > 0
    parts = batch["prefill_s"] + batch["first_step_s"] + batch["steps"] * batch["step_ms"] / 1000
    assert parts <= batch["engine_s"] + 0.01  # the lines round: engine seconds to 0.01 s
    # the batch as it would run with its first step at the later steps' pace
    compiled = batch["engine_s"] - batch["first_step_s"] + batch["step_ms"] / 1000
    assert bench.compiled_batch_s(batch) == pytest.approx(compiled)


def test_a_padded_shared_batch_gets_the_answers_it_gets_alone(
    tiny_model: Path, variants: list[EncodedRequest]
) -> None:
    """pad_rows with share_prefix=decode: the copies of the shortest request join its group, and
    the batch's own answers are those of the batch decoded alone."""
    from cosmos_workflow.engines.hf.decode_loop import decoder_for

    alone = answers(tiny_model, variants[:5], GREEDY, share="decode")
    options = {"static_cache": True, "decode_attention": "flex", "share_prefix": "decode", "pad_rows": True}
    with load(EngineConfig(model=str(tiny_model), options=options)) as engine:
        engine.generate(variants, GREEDY)
        padded = [g.text for g in engine.generate(variants[:5], GREEDY)]
        assert decoder_for(engine._model).cached_rows() == len(variants)

    assert padded == alone
