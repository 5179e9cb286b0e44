"""OpenAI-compatible chat-completions engine (``vllm serve``, or any compatible server).

Each request is one user message: the frames as data-URL images, then the prompt text, the same
order the tokenizer counted. Requests run concurrently (bounded threads over one httpx client);
429, 5xx and connection errors are retried with exponential backoff and jitter, honouring
``Retry-After``. A reply that is not ``finish_reason`` "stop"/"length", or that is malformed,
becomes a failed item; it never fails the batch.

The API key comes from the environment (``COSMOS_OPENAI_API_KEY`` or ``OPENAI_API_KEY``) and is
never logged.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cosmos_workflow.engines.base import (
    EncodedRequest,
    Engine,
    EngineConfig,
    ErrorKind,
    Generation,
    SamplingParams,
)
from cosmos_workflow.errors import ConfigError, ModelLoadError

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
KEY_VARIABLES = ("COSMOS_OPENAI_API_KEY", "OPENAI_API_KEY")
CONTEXT_MARKERS = ("context length", "maximum model length", "max_model_len", "too long", "context_length")
MAX_RETRY_AFTER_S = 60.0


@dataclass(frozen=True, kw_only=True)
class OpenAIOptions:
    """Connection settings, from ``EngineConfig.options`` and the environment."""

    base_url: str = DEFAULT_BASE_URL
    concurrency: int = 16
    timeout_s: float = 300.0
    max_retries: int = 5
    backoff_s: float = 1.0
    image_format: str = "png"

    @classmethod
    def parse(cls, options: dict[str, str | int | float | bool | None]) -> OpenAIOptions:
        base = options.get("base_url") or os.environ.get("COSMOS_OPENAI_BASE_URL") or DEFAULT_BASE_URL
        parsed = cls(
            base_url=str(base).rstrip("/"),
            concurrency=int(options.get("concurrency") or 16),
            timeout_s=float(options.get("timeout") or 300.0),
            max_retries=int(options.get("max_retries", 5) or 0),
            backoff_s=float(options.get("backoff") or 1.0),
            image_format=str(options.get("image_format") or "png").lower(),
        )
        if parsed.image_format not in ("png", "jpeg") or parsed.concurrency < 1:
            raise ConfigError("openai engine: image_format must be 'png' or 'jpeg' and concurrency >= 1")
        return parsed


def api_key() -> str | None:
    """The key from the environment, or None for servers that need none (plain ``vllm serve``)."""
    return next((os.environ[v] for v in KEY_VARIABLES if os.environ.get(v)), None)


def image_data_url(frame: np.ndarray, fmt: str = "png") -> str:
    """A frame (RGB uint8 HxWx3) as a base64 data URL; PNG keeps the pixels exact."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format=fmt.upper(), **({"quality": 95} if fmt == "jpeg" else {}))
    return f"data:image/{fmt};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def chat_body(
    model: str, request: EncodedRequest, sampling: SamplingParams, fmt: str = "png"
) -> dict[str, Any]:
    """The chat-completions body: the system message if any, then one user message, images
    first, then the text. (ASCII-only answers cannot be asked of a server: postprocess checks them.)"""
    content: list[dict[str, Any]] = [
        {"type": "image_url", "image_url": {"url": image_data_url(f, fmt)}} for f in request.frames
    ]
    content.append({"type": "text", "text": request.prompt})
    body: dict[str, Any] = {
        "model": model,
        "messages": [*system_message(request.system), {"role": "user", "content": content}],
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
    }
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    return body


def system_message(system: str | None) -> list[dict[str, Any]]:
    """The chat's system message, as a list of none or one."""
    return [{"role": "system", "content": system}] if system else []


class _Retry(Exception):
    """A transient failure: wait ``delay`` (or back off) and try again."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class OpenAIEngine(Engine):
    """Talks to a chat-completions server; ``transport`` and ``sleep`` are injectable for tests."""

    name = "openai"
    needs_gpu = False
    ray_refusal = "the server already batches requests"

    def __init__(
        self,
        config: EngineConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import httpx

        super().__init__(config)
        self.options = OpenAIOptions.parse(dict(config.options))
        key = api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            base_url=self.options.base_url,
            headers=headers,
            timeout=self.options.timeout_s,
            transport=transport,
            limits=httpx.Limits(max_connections=self.options.concurrency),
        )
        self._sleep = sleep

    def generate(self, requests: Sequence[EncodedRequest], sampling: SamplingParams) -> list[Generation]:
        if not requests:
            return []
        workers = min(self.options.concurrency, len(requests))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai") as pool:
            return list(pool.map(lambda r: self._one(r, sampling), requests))

    def _one(self, request: EncodedRequest, sampling: SamplingParams) -> Generation:
        body = chat_body(self.config.model, request, sampling, self.options.image_format)
        last = "no attempt made"
        for attempt in range(self.options.max_retries + 1):
            try:
                return self._attempt(body, request)
            except _Retry as exc:
                last = str(exc)
                if attempt < self.options.max_retries:
                    self._sleep(self._delay(attempt, exc.delay))
        return Generation.failed(
            f"server at {self.options.base_url} kept failing after {self.options.max_retries + 1} attempts "
            f"({last}); check the server or raise max_retries",
            prompt_tokens=request.num_tokens,
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Retry-After when the server gives one, else exponential backoff, half of it random jitter."""
        if retry_after is not None:
            return float(min(retry_after, MAX_RETRY_AFTER_S))
        ceiling = self.options.backoff_s * 2.0**attempt
        return min(ceiling / 2 + random.uniform(0, ceiling / 2), MAX_RETRY_AFTER_S)  # noqa: S311

    def _attempt(self, body: dict[str, Any], request: EncodedRequest) -> Generation:
        import httpx

        try:
            response = self._client.post("/chat/completions", json=body)
        except httpx.TransportError as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retry(f"HTTP {response.status_code}", _retry_after(response))
        if response.status_code != 200:
            return _client_error(response, request)
        return parse_completion(response.content, request)

    def close(self) -> None:
        self._client.close()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _client_error(response: httpx.Response, request: EncodedRequest) -> Generation:
    text = response.text[:500]
    kind: ErrorKind = "context_length" if any(m in text.lower() for m in CONTEXT_MARKERS) else "engine"
    hint = (
        "pass a smaller --max-resolution" if kind == "context_length" else "check the model name and server"
    )
    return Generation.failed(
        f"server refused the request: HTTP {response.status_code}: {text}; {hint}",
        prompt_tokens=request.num_tokens,
        kind=kind,
    )


def parse_completion(content: bytes, request: EncodedRequest) -> Generation:
    """A chat.completion body to a Generation; anything malformed becomes a failed item."""
    import json

    try:
        data = json.loads(content)
        choice = data["choices"][0]
        text = choice["message"]["content"]
        reason = choice["finish_reason"]
        if not isinstance(text, str):
            raise TypeError("message.content is not a string")
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return Generation.failed(
            f"malformed reply from the server ({type(exc).__name__}: {exc}): {content[:200]!r}; "
            "is base_url an OpenAI-compatible /v1 endpoint?",
            prompt_tokens=request.num_tokens,
        )
    if reason not in ("stop", "length"):
        return Generation.failed(f"server finished with {reason!r}", prompt_tokens=request.num_tokens)
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return Generation(
        text=text,
        finish_reason=reason,
        prompt_tokens=request.num_tokens,
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )


def load(config: EngineConfig) -> OpenAIEngine:
    """Create the client; no request is made until ``generate``."""
    try:
        import httpx  # noqa: F401
    except ImportError as exc:
        raise ModelLoadError(
            f"httpx is not installed ({exc}); pip install 'cosmos-workflow[openai]'"
        ) from exc
    return OpenAIEngine(config)
