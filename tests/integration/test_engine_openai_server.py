"""The openai engine against a real OpenAI-compatible HTTP server on 127.0.0.1.

The server (cosmos_workflow.engines.openai_server) re-encodes what it receives with the
tokenizer and answers with a real engine: the scripted fake for fault injection, the tiny
random Pixtral (hf engine) for the end-to-end path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from cosmos_workflow.engines import EncodedRequest, Engine, EngineConfig, SamplingParams, load_engine
from cosmos_workflow.engines.fake import FakeEngine
from cosmos_workflow.engines.openai_server import ChatServer, Faults
from cosmos_workflow.tokenizer import load_tokenizer


def _request(key: str, size: tuple[int, int] = (48, 32)) -> EncodedRequest:
    width, height = size
    frames = [np.full((height, width, 3), 40 * i, dtype=np.uint8) for i in range(2)]
    encoding = load_tokenizer().encode(f"a car, take {key}", frames)
    return EncodedRequest(key=key, prompt=f"a car, take {key}", token_ids=encoding.token_ids, frames=frames)


def _client(server: ChatServer, **options: Any) -> Engine:
    opts = {"base_url": server.base_url, "timeout": 5.0, "max_retries": 3, "backoff": 0.01, **options}
    return load_engine(EngineConfig(engine="openai", model="served", options=opts))


@pytest.fixture
def fake() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def server(fake: FakeEngine, request: pytest.FixtureRequest) -> Iterator[ChatServer]:
    faults = getattr(request, "param", None) or Faults()
    with ChatServer(fake, faults=faults) as running:
        yield running


def test_request_reaches_the_model_as_counted(server: ChatServer, fake: FakeEngine) -> None:
    requests = [_request("1"), _request("2", (64, 16))]
    with _client(server) as engine:
        results = engine.generate(requests, SamplingParams(max_tokens=40))
    assert [r.finish_reason for r in results] == ["stop", "stop"]
    assert {r.prompt for r in fake.received} == {"a car, take 1", "a car, take 2"}
    by_prompt = {r.prompt: r for r in fake.received}
    for sent in requests:  # the server's re-encoding equals the planner's count, pixel for pixel
        got = by_prompt[sent.prompt]
        assert list(got.token_ids) == list(sent.token_ids)
        assert all(np.array_equal(a, b) for a, b in zip(got.frames, sent.frames, strict=True))
    assert fake.sampling[0].max_tokens == 40


@pytest.mark.parametrize("server", [Faults(fail_first=2)], indirect=True)
def test_failing_server_is_retried(server: ChatServer) -> None:
    with _client(server) as engine:
        (result,) = engine.generate([_request("1")], SamplingParams())
    assert result.finish_reason == "stop" and server.faults.seen == 3


@pytest.mark.parametrize("server", [Faults(fail_first=10)], indirect=True)
def test_server_that_keeps_failing_fails_the_item(server: ChatServer) -> None:
    with _client(server, max_retries=2) as engine:
        (result,) = engine.generate([_request("1")], SamplingParams())
    assert result.finish_reason == "error" and "after 3 attempts (HTTP 500)" in (result.error or "")


@pytest.mark.parametrize("server", [Faults(rate_limit_first=2, retry_after_s=0.05)], indirect=True)
def test_rate_limited_server_is_waited_for(server: ChatServer) -> None:
    with _client(server) as engine:
        results = engine.generate([_request("1")], SamplingParams())
    assert results[0].finish_reason == "stop" and server.faults.seen == 3


@pytest.mark.parametrize("server", [Faults(malformed_first=1)], indirect=True)
def test_malformed_reply_fails_only_its_item(server: ChatServer) -> None:
    with _client(server, concurrency=1) as engine:
        results = engine.generate([_request("1"), _request("2")], SamplingParams())
    assert results[0].finish_reason == "error" and "malformed reply" in (results[0].error or "")
    assert results[1].finish_reason == "stop"


@pytest.mark.parametrize("server", [Faults(delay_s=0.3)], indirect=True)
def test_slow_server_within_timeout_answers(server: ChatServer) -> None:
    with _client(server, timeout=10.0) as engine:
        (result,) = engine.generate([_request("1")], SamplingParams())
    assert result.finish_reason == "stop"


@pytest.mark.parametrize("server", [Faults(delay_s=0.5)], indirect=True)
def test_slow_server_past_timeout_is_reported(server: ChatServer) -> None:
    with _client(server, timeout=0.1, max_retries=1) as engine:
        (result,) = engine.generate([_request("1")], SamplingParams())
    assert result.finish_reason == "error" and "ReadTimeout" in (result.error or "")


def test_too_long_request_is_a_context_length_failure() -> None:
    small = FakeEngine(EngineConfig(engine="fake", model="fake", max_model_len=300))
    with ChatServer(small) as server, _client(server) as engine:
        (result,) = engine.generate([_request("1", (640, 368))], SamplingParams(max_tokens=100))
    assert result.error_kind == "context_length" and "maximum context length is 300" in (result.error or "")
    assert small.received == []


def test_models_endpoint(server: ChatServer) -> None:
    listing = httpx.get(f"{server.base_url}/models", timeout=5).json()
    assert listing["data"][0]["id"] == "fake"


@pytest.mark.slow
def test_tiny_model_behind_the_server() -> None:
    """End to end: openai engine -> HTTP -> server -> hf engine on the tiny random Pixtral."""
    config = EngineConfig(engine="hf", model="tiny-random", device="cpu")
    with (
        load_engine(config) as model,
        ChatServer(model) as server,
        _client(server, timeout=120.0, concurrency=2) as engine,
    ):
        results = engine.generate(
            [_request("1"), _request("2", (32, 32))], SamplingParams(max_tokens=8, seed=1)
        )
    for result in results:
        assert result.finish_reason in ("stop", "length"), result.error
        assert isinstance(result.text, str) and 1 <= result.completion_tokens <= 8
