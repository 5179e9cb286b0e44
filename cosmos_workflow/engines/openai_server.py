"""A small OpenAI-compatible chat-completions server backed by any Engine, for tests and demos.

It binds to 127.0.0.1 only. Requests are re-encoded with the engine's own tokenizer (images
decoded from data URLs, then the text, as the client sent them) and answered by
``engine.generate``, one call at a time (engines are not thread-safe). ``Faults`` injects the
troubles a real server has: slowness, 500s, 429 with Retry-After, malformed bodies.

    python -m cosmos_workflow.engines.openai_server --engine hf --model tiny-random --port 8000
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from cosmos_workflow.engines.base import EncodedRequest, Engine, EngineConfig, SamplingParams
from cosmos_workflow.lifetime import Closes
from cosmos_workflow.tokenizer import Tokenizer, load_tokenizer


@dataclass
class Faults:
    """Trouble to inject, counted over all chat requests in arrival order."""

    delay_s: float = 0.0
    fail_first: int = 0
    rate_limit_first: int = 0
    retry_after_s: float = 0.0
    malformed_first: int = 0
    seen: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def next_fault(self) -> str | None:
        """Which fault the next request gets: 429s first, then 500s, then malformed bodies."""
        with self.lock:
            self.seen += 1
            n = self.seen
        for name, count in (
            ("429", self.rate_limit_first),
            ("500", self.fail_first),
            ("bad", self.malformed_first),
        ):
            if n <= count:
                return name
            n -= count
        return None


class BadRequest(Exception):
    """The client sent something this server cannot serve (answered as HTTP 400)."""


def decode_data_url(url: str) -> np.ndarray:
    """A ``data:image/...;base64,`` URL to an RGB uint8 array."""
    from PIL import Image

    header, _, payload = url.partition(",")
    if not header.startswith("data:image/") or ";base64" not in header:
        raise BadRequest("only base64 data:image URLs are supported")
    try:
        with Image.open(io.BytesIO(base64.b64decode(payload, validate=True))) as image:
            return np.asarray(image.convert("RGB"))
    except (ValueError, OSError) as exc:
        raise BadRequest(f"undecodable image: {exc}") from exc


def parse_user_message(body: dict[str, Any]) -> tuple[str, list[np.ndarray]]:
    """(prompt text, frames) of the single user message the engines send."""
    try:
        content = body["messages"][-1]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise BadRequest("body needs messages[-1].content") from exc
    if isinstance(content, str):
        return content, []
    frames = [decode_data_url(p["image_url"]["url"]) for p in content if p.get("type") == "image_url"]
    text = "".join(p.get("text", "") for p in content if p.get("type") == "text")
    return text, frames


class ChatService:
    """Turns chat-completions bodies into engine calls and replies."""

    def __init__(self, engine: Engine, tokenizer: Tokenizer, model_name: str) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.model_name = model_name
        self._lock = threading.Lock()

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt, frames = parse_user_message(body)
        sampling = _sampling(body)
        encoding = self.tokenizer.encode(prompt, frames)
        limit = self.engine.config.max_model_len
        if len(encoding.token_ids) + sampling.max_tokens > limit:
            raise BadRequest(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{len(encoding.token_ids) + sampling.max_tokens} tokens "
                f"({len(encoding.token_ids)} in the messages, {sampling.max_tokens} in the completion)."
            )
        request = EncodedRequest(
            key=uuid.uuid4().hex,
            prompt=prompt,
            token_ids=encoding.token_ids,
            frames=frames,
            pixel_values=encoding.pixel_values,
        )
        with self._lock:
            (generation,) = self.engine.generate([request], sampling)
        if generation.finish_reason == "error":
            raise RuntimeError(generation.error or "engine error")
        return {
            "id": f"chatcmpl-{request.key}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": generation.text},
                    "finish_reason": generation.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": generation.prompt_tokens,
                "completion_tokens": generation.completion_tokens,
                "total_tokens": generation.prompt_tokens + generation.completion_tokens,
            },
        }


def _sampling(body: dict[str, Any]) -> SamplingParams:
    fields = {k: body[k] for k in ("temperature", "top_p", "max_tokens", "seed") if body.get(k) is not None}
    try:
        return SamplingParams(**fields)
    except ValueError as exc:
        raise BadRequest(f"bad sampling parameters: {exc}") from exc


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests and demos do not want one line per request on stderr."""

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            model = {"id": self.server.service.model_name, "object": "model", "owned_by": "cosmos-workflow"}
            self._send(200, {"object": "list", "data": [model]})
        else:
            self._send(404, _error("not found", "not_found"))

    def do_POST(self) -> None:
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, _error("not found", "not_found"))
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        faults = self.server.faults
        fault = faults.next_fault()
        if faults.delay_s:
            time.sleep(faults.delay_s)
        if fault is not None:
            self._fault(fault)
            return
        self._answer(raw)

    def _fault(self, fault: str) -> None:
        if fault == "429":
            headers = {"Retry-After": f"{self.server.faults.retry_after_s:g}"}
            self._send(429, _error("rate limited", "rate_limit_exceeded"), headers)
        elif fault == "500":
            self._send(500, _error("injected failure", "server_error"))
        else:
            self._send_raw(200, b'{"choices": [ {"message": ', "application/json")

    def _answer(self, raw: bytes) -> None:
        try:
            body = json.loads(raw)
            self._send(200, self.server.service.complete(body))
        except (BadRequest, ValueError) as exc:
            self._send(400, _error(str(exc), "invalid_request_error"))
        except Exception as exc:
            self._send(500, _error(f"engine failed: {exc}", "server_error"))

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_raw(self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": None}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, service: ChatService, faults: Faults) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.service = service
        self.faults = faults


class ChatServer(Closes):
    """A running server; use as a context manager. ``base_url`` ends in ``/v1``."""

    def __init__(self, engine: Engine, *, port: int = 0, faults: Faults | None = None) -> None:
        tokenizer = load_tokenizer(engine.tokenizer_path)
        service = ChatService(engine, tokenizer, engine.model_name)
        self.faults = faults or Faults()
        self._server = _Server(port, service, self.faults)
        self._thread = threading.Thread(target=self._server.serve_forever, name="openai-server", daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def main(argv: list[str] | None = None) -> None:
    """Serve an engine on 127.0.0.1 until interrupted."""
    from cosmos_workflow.engines import load_engine

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", default="hf")
    parser.add_argument("--model", default="tiny-random")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-model-len", type=int, default=4096)
    args = parser.parse_args(argv)
    config = EngineConfig(engine=args.engine, model=args.model, max_model_len=args.max_model_len)
    with load_engine(config) as engine, ChatServer(engine, port=args.port) as server:
        print(f"serving {config.model} at {server.base_url}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
