"""The transformers engine on the tiny random Pixtral model: real batches, real images, on CPU."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cosmos_workflow.engines import load_engine
from cosmos_workflow.engines.base import EncodedRequest, EngineConfig, SamplingParams
from cosmos_workflow.engines.hf import HFEngine, load
from cosmos_workflow.engines.tiny import CACHE_ENV, EOS_ID
from cosmos_workflow.errors import ConfigError, EngineError, GPUOutOfMemoryError, ModelLoadError

GREEDY = SamplingParams(temperature=0.0, max_tokens=12)


@pytest.fixture(scope="module")
def tiny_root(cache_dir: Path) -> Path:
    """The session cache folder (tests/conftest.py), holding the tiny model."""
    return cache_dir


@pytest.fixture(scope="module")
def tiny_dir(tiny_model: Path) -> Path:
    return tiny_model


@pytest.fixture(scope="module")
def engine(tiny_dir: Path) -> Iterator[HFEngine]:
    with load(EngineConfig(model=str(tiny_dir))) as loaded:
        yield loaded


def test_a_mixed_batch_gives_one_result_per_request_in_order(
    engine: HFEngine, requests: list[EncodedRequest]
) -> None:
    sampling = SamplingParams(temperature=0.6, top_p=0.9, max_tokens=10, seed=1)

    results = engine.generate(requests, sampling)

    assert [r.prompt_tokens for r in results] == [r.num_tokens for r in requests]
    for result in results:
        assert result.error is None
        assert result.finish_reason in {"stop", "length"}
        assert 0 < result.completion_tokens <= sampling.max_tokens
        assert result.finish_reason == "stop" or result.completion_tokens == sampling.max_tokens
    assert all(result.text for result in results if result.finish_reason == "length")


def test_the_same_seed_gives_the_same_text(engine: HFEngine, requests: list[EncodedRequest]) -> None:
    def sample(seed: int) -> list[str]:
        sampling = SamplingParams(temperature=0.6, max_tokens=10, seed=seed)
        return [result.text for result in engine.generate(requests, sampling)]

    first = sample(7)

    assert sample(7) == first
    assert sample(8) != first  # random 131k-token vocabulary: a clash means the seed is ignored


def test_seeded_sampling_leaves_the_global_random_state_alone(
    engine: HFEngine, requests: list[EncodedRequest]
) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)

    engine.generate(requests[2:], SamplingParams(temperature=0.6, max_tokens=4, seed=5))

    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    "options",
    [{}, {"static_cache": True}, {"static_cache": True, "batch_bucket": 64}],
    ids=["dynamic-cache", "static-cache", "static-cache-bucket-64"],
)
def test_greedy_results_do_not_depend_on_the_batch(
    tiny_dir: Path, requests: list[EncodedRequest], options: dict[str, bool | int]
) -> None:
    """Left padding, masks and image packing must not leak between requests of a batch."""
    with load(EngineConfig(model=str(tiny_dir), options=options)) as engine:
        batched = engine.generate(requests, GREEDY)
        alone = [engine.generate([request], GREEDY)[0] for request in requests]

    assert batched == alone
    assert len({result.text for result in batched}) == 3


def test_a_too_long_request_fails_alone(
    tiny_dir: Path, engine: HFEngine, requests: list[EncodedRequest]
) -> None:
    longest = max(requests, key=lambda r: r.num_tokens)
    limit = longest.num_tokens + GREEDY.max_tokens - 1

    with load(EngineConfig(model=str(tiny_dir), max_model_len=limit)) as short:
        results = short.generate(requests, GREEDY)

    reference = engine.generate(requests, GREEDY)
    for request, result, expected in zip(requests, results, reference, strict=True):
        if request is longest:
            assert result.finish_reason == "error"
            assert result.error_kind == "context_length"
            assert result.prompt_tokens == request.num_tokens
            assert f"exceeds max_model_len {limit}" in (result.error or "")
        else:
            assert result == expected


def test_a_batch_of_only_too_long_requests_returns_only_failures(
    engine: HFEngine, requests: list[EncodedRequest]
) -> None:
    results = engine.generate(requests, SamplingParams(temperature=0.0, max_tokens=5000))

    assert [r.error_kind for r in results] == ["context_length"] * 3


def test_end_of_sequence_finishes_with_stop(tiny_dir: Path, requests: list[EncodedRequest]) -> None:
    """Steer the output layer so that EOS always wins: the engine must report a finished answer."""
    with load(EngineConfig(model=str(tiny_dir))) as engine:
        head = engine._model.lm_head
        steered = torch.nn.Linear(head.in_features, head.out_features, bias=True)
        with torch.no_grad():
            steered.weight.zero_()
            steered.bias.zero_()
            steered.bias[EOS_ID] = 10.0
        engine._model.lm_head = steered

        results = engine.generate(requests, GREEDY)

    assert [(r.finish_reason, r.completion_tokens, r.text) for r in results] == [("stop", 1, "")] * 3


def test_gpu_out_of_memory_becomes_a_retryable_error(
    engine: HFEngine, requests: list[EncodedRequest], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No GPU here: the out-of-memory edge is simulated where torch would raise it."""

    def out_of_memory(**_: object) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(engine._model, "generate", out_of_memory)

    with pytest.raises(GPUOutOfMemoryError, match=r"batch of 3 requests .* smaller --batch-size"):
        engine.generate(requests, GREEDY)


def test_the_engine_reports_its_tokenizer(engine: HFEngine, tiny_dir: Path) -> None:
    assert engine.tokenizer_path == tiny_dir / "tekken.json"
    assert engine.name == "hf"
    assert engine.device == torch.device("cpu")


def test_a_closed_engine_refuses_work(tiny_dir: Path, requests: list[EncodedRequest]) -> None:
    engine = load(EngineConfig(model=str(tiny_dir)))
    engine.close()
    engine.close()

    with pytest.raises(EngineError, match="closed; load it again"):
        engine.generate(requests, GREEDY)


def test_tiny_random_loads_through_the_registry(
    tiny_root: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tiny_root))
    mtime = (tiny_dir / "model.safetensors").stat().st_mtime_ns

    with load_engine(EngineConfig(engine="hf", model="tiny-random")) as engine:
        assert isinstance(engine, HFEngine)
        assert engine.checkpoint == tiny_dir

    assert (tiny_dir / "model.safetensors").stat().st_mtime_ns == mtime


def test_max_model_len_beyond_the_checkpoint_is_refused(tiny_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"supports \(8192 positions\); pass --max-model-len 8192"):
        load(EngineConfig(model=str(tiny_dir), max_model_len=16384))


def test_a_missing_checkpoint_says_what_to_pass(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"

    with pytest.raises(ModelLoadError, match=re.escape(f"{missing} does not exist; pass --model")):
        load(EngineConfig(model=str(missing)))


def test_a_mistral_format_checkpoint_says_how_to_convert(tmp_path: Path) -> None:
    folder = tmp_path / "Pixtral-12B-2409"
    folder.mkdir()
    (folder / "params.json").write_text('{"dim": 5120}')
    (folder / "consolidated.safetensors").write_bytes(b"")
    (folder / "tekken.json").write_text("{}")

    with pytest.raises(ModelLoadError, match=r"Mistral-format.*convert-checkpoint .* or use --engine vllm"):
        load(EngineConfig(model=str(folder)))


def test_a_folder_without_config_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"has no config\.json"):
        load(EngineConfig(model=str(tmp_path)))


def test_an_unloadable_checkpoint_is_a_load_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "llava"}')

    with pytest.raises(
        ModelLoadError, match=re.escape(f"cannot load {tmp_path} as a Llava/Pixtral checkpoint")
    ):
        load(EngineConfig(model=str(tmp_path)))


def test_loading_logs_the_device_and_options(tiny_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cosmos_workflow"), load(EngineConfig(model=str(tiny_dir))):
        pass

    assert "on cpu" in caplog.text
    assert "static_cache=False" in caplog.text
