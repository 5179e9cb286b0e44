"""A scripted engine for tests: returns queued answers and records what reached it."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence

from cosmos_workflow.engines.base import EncodedRequest, Engine, EngineConfig, Generation, SamplingParams
from cosmos_workflow.errors import GPUOutOfMemoryError


class FakeEngine(Engine):
    """Answers from a script; by default echoes the prompt as a long description.

    ``answers`` items are either a string (finished answer) or a :class:`Generation` (any
    outcome). ``oom_above`` makes batches larger than that size raise an out-of-memory error, to
    exercise the runner's back-off. The engine option ``seconds_per_batch`` makes each call take
    that long (``--engine-option seconds_per_batch=0.5``), for tests of a run in progress. The
    option ``streams`` makes it a streaming engine like vLLM's: the runner feeds it requests as
    they are prepared, and it answers each group of ``stream_group`` in reverse order (a request
    that finishes early overtakes the ones sent before it). The option ``answer_words`` makes
    each unscripted answer that many words long, cut at ``max_tokens`` words (a word a token), for
    tests of answers too long for the generator's encoder.
    """

    name = "fake"
    needs_gpu = False
    default_model = "fake"

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        answers: Iterable[str | Generation] = (),
        oom_above: int | None = None,
    ) -> None:
        super().__init__(config or EngineConfig(engine="fake", model="fake"))
        self.answers: deque[str | Generation] = deque(answers)
        self.oom_above = oom_above
        self.received: list[EncodedRequest] = []
        self.batches: list[list[str]] = []
        self.sampling: list[SamplingParams] = []
        self.closed = False
        self.seconds_per_batch = float(self.config.options.get("seconds_per_batch") or 0.0)
        self.streams = bool(self.config.options.get("streams", False))
        self.stream_group = int(self.config.options.get("stream_group") or 8)
        self.answer_words = int(self.config.options.get("answer_words") or 0)

    def generate_stream(
        self, requests: Iterable[EncodedRequest], sampling: SamplingParams
    ) -> Iterator[list[tuple[str, Generation]]]:
        for answers in super().generate_stream(requests, sampling):
            yield answers[::-1]

    def generate(self, requests: Sequence[EncodedRequest], sampling: SamplingParams) -> list[Generation]:
        if self.oom_above is not None and len(requests) > self.oom_above:
            raise GPUOutOfMemoryError(f"fake engine: batch of {len(requests)} exceeds {self.oom_above}")
        if self.seconds_per_batch:
            time.sleep(self.seconds_per_batch)
        self.batches.append([r.key for r in requests])
        self.received.extend(requests)
        self.sampling.append(sampling)
        return [self._answer(r, sampling) for r in requests]

    def _answer(self, request: EncodedRequest, sampling: SamplingParams) -> Generation:
        scripted = self.answers.popleft() if self.answers else None
        if isinstance(scripted, Generation):
            return scripted
        text = (
            scripted if scripted is not None else _describe(request, self.answer_words, sampling.max_tokens)
        )
        return Generation(
            text=text,
            finish_reason="stop",
            prompt_tokens=request.num_tokens,
            completion_tokens=min(len(text.split()), sampling.max_tokens),
        )

    def close(self) -> None:
        self.closed = True


def _describe(request: EncodedRequest, words: int = 0, max_tokens: int = 0) -> str:
    sizes = ", ".join(f"{f.shape[1]}x{f.shape[0]}" for f in request.frames) or "no frames"
    text = f"A detailed scene: {request.prompt} (seen in {len(request.frames)} frames: {sizes})."
    if not words:
        return text
    filler = text.split() + ["and"] * words
    return " ".join(filler[: min(words, max_tokens)])
