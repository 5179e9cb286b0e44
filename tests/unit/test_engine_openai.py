"""The openai engine's protocol handling, with httpx's MockTransport at the network edge.

The same engine is exercised against a real server on 127.0.0.1 in
tests/integration/test_engine_openai_server.py.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from cosmos_workflow.engines import EncodedRequest, EngineConfig, SamplingParams, load_engine
from cosmos_workflow.engines.openai import OpenAIEngine
from cosmos_workflow.engines.openai_server import decode_data_url

Handler = Callable[[httpx.Request], httpx.Response]


def _reply(text: str = "a long description", reason: str = "stop", tokens: int = 3) -> httpx.Response:
    body = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": reason}],
        "usage": {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1},
    }
    return httpx.Response(200, json=body)


def _engine(handler: Handler, sleeps: list[float] | None = None, **options: Any) -> OpenAIEngine:
    config = EngineConfig(engine="openai", model="cosmos", options={"backoff": 0.5, **options})
    record = sleeps.append if sleeps is not None else (lambda _s: None)
    return OpenAIEngine(config, transport=httpx.MockTransport(handler), sleep=record)


def _request(key: str = "k", frames: int = 2) -> EncodedRequest:
    images = [np.random.default_rng(i).integers(0, 255, (32, 48, 3), dtype=np.uint8) for i in range(frames)]
    return EncodedRequest(key=key, prompt=f"prompt {key}", token_ids=[1, 2, 3], frames=images)


def test_one_user_message_images_then_text() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return _reply()

    req = _request()
    (result,) = _engine(handler).generate([req], SamplingParams(temperature=0.2, max_tokens=50, seed=7))
    assert (result.text, result.finish_reason, result.completion_tokens) == ("a long description", "stop", 3)
    body = bodies[0]
    assert (body["model"], body["temperature"], body["max_tokens"], body["seed"]) == ("cosmos", 0.2, 50, 7)
    (message,) = body["messages"]
    assert [p["type"] for p in message["content"]] == ["image_url", "image_url", "text"]
    assert message["content"][2]["text"] == "prompt k"
    for part, frame in zip(message["content"][:2], req.frames, strict=True):
        assert np.array_equal(decode_data_url(part["image_url"]["url"]), frame)  # PNG: exact pixels


def test_key_from_environment_is_sent_but_never_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(503)

    with caplog.at_level(logging.DEBUG):
        (result,) = _engine(handler, max_retries=1).generate([_request()], SamplingParams())
    assert seen == ["Bearer sk-secret-123"] * 2
    assert "sk-secret" not in caplog.text and "sk-secret" not in (result.error or "")


def test_no_key_no_header(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "COSMOS_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    seen: list[str | None] = []
    _engine(lambda r: seen.append(r.headers.get("authorization")) or _reply()).generate(
        [_request()], SamplingParams()
    )
    assert seen == [None]


def test_retry_after_is_honoured_then_backoff_grows() -> None:
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "2"}),
            httpx.Response(502),
            httpx.Response(500),
            _reply(),
        ]
    )
    sleeps: list[float] = []
    (result,) = _engine(lambda _r: next(answers), sleeps).generate([_request()], SamplingParams())
    assert result.finish_reason == "stop"
    assert sleeps[0] == 2.0
    assert 0.5 <= sleeps[1] <= 1.0 and 1.0 <= sleeps[2] <= 2.0  # backoff 0.5 * 2**attempt, jittered


def test_connection_errors_are_retried_then_reported() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    sleeps: list[float] = []
    (result,) = _engine(handler, sleeps, max_retries=2).generate([_request()], SamplingParams())
    assert result.finish_reason == "error" and len(sleeps) == 2
    assert "after 3 attempts" in (result.error or "") and "ConnectError" in (result.error or "")


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(200, content=b"<html>proxy</html>"), "malformed reply"),
        (httpx.Response(200, json={"choices": []}), "malformed reply"),
        (
            httpx.Response(200, json={"choices": [{"message": {"content": None}, "finish_reason": "stop"}]}),
            "malformed",
        ),
        (_reply(reason="content_filter"), "finished with 'content_filter'"),
        (httpx.Response(404, json={"error": {"message": "model not found"}}), "HTTP 404"),
    ],
)
def test_bad_replies_fail_the_item(response: httpx.Response, expected: str) -> None:
    (result,) = _engine(lambda _r: response).generate([_request()], SamplingParams())
    assert result.finish_reason == "error" and result.error_kind == "engine"
    assert expected in (result.error or "")


def test_context_length_400_is_classified() -> None:
    message = {
        "error": {
            "message": "This model's maximum context length is 4096 tokens. However, you requested 5000"
        }
    }
    (result,) = _engine(lambda _r: httpx.Response(400, json=message)).generate([_request()], SamplingParams())
    assert result.error_kind == "context_length" and "--max-resolution" in (result.error or "")


def test_length_finish_is_kept() -> None:
    (result,) = _engine(lambda _r: _reply(reason="length")).generate([_request()], SamplingParams())
    assert result.finish_reason == "length"


def test_concurrency_is_bounded_and_order_kept() -> None:
    lock, active, peak = threading.Lock(), [0], [0]
    release = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            if active[0] == 3:
                release.set()
        release.wait(timeout=5)
        with lock:
            active[0] -= 1
        return _reply(text=json.loads(request.content)["messages"][0]["content"][-1]["text"])

    requests = [_request(str(i), frames=0) for i in range(12)]
    results = _engine(handler, concurrency=3).generate(requests, SamplingParams())
    assert [r.text for r in results] == [f"prompt {i}" for i in range(12)]
    assert peak[0] == 3


def test_base_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSMOS_OPENAI_BASE_URL", "http://gpu-box:9000/v1/")
    engine = load_engine(EngineConfig(engine="openai", model="m"))
    assert engine.options.base_url == "http://gpu-box:9000/v1"  # type: ignore[attr-defined]
    engine.close()


def test_a_system_prompt_is_sent_as_the_first_message() -> None:
    from cosmos_workflow.engines.openai import chat_body

    request = EncodedRequest(key="k", prompt="a cat", token_ids=[1, 2], system="Rewrite it.")
    messages = chat_body("m", request, SamplingParams())["messages"]
    assert messages[0] == {"role": "system", "content": "Rewrite it."}
    assert messages[1]["role"] == "user" and messages[1]["content"][-1]["text"] == "a cat"
    plain = chat_body("m", EncodedRequest(key="k", prompt="a cat", token_ids=[1]), SamplingParams())
    assert [m["role"] for m in plain["messages"]] == ["user"]
