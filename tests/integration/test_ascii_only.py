"""ASCII-only answers (the refiner preset's): the hf engines never produce a token whose text is
not ASCII, on Pixtral (transformers' generate and the engine's own decoding loop) and Qwen2.5-VL.
The tiny models' weights are random, so without the restriction they do produce such tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from cosmos_workflow.engines.base import EncodedRequest, EngineConfig, SamplingParams
from cosmos_workflow.families.qwen2_5_vl import Qwen25VLFamily

pytest.importorskip("transformers")

ASCII = SamplingParams(temperature=1.0, max_tokens=24, seed=3, ascii_only=True)
ANY = ASCII.model_copy(update={"ascii_only": False})


def _answers(engine: object, requests: list[EncodedRequest], sampling: SamplingParams) -> list[str]:
    results = engine.generate(requests, sampling)  # type: ignore[attr-defined]
    assert all(r.error is None for r in results)
    return [r.text for r in results]


@pytest.mark.parametrize(
    "options", [{}, {"static_cache": True, "decode_loop": True, "compile": False}], ids=["generate", "loop"]
)
def test_pixtral_answers_are_ascii_only_when_asked(
    tiny_model: Path, requests: list[EncodedRequest], options: dict[str, bool]
) -> None:
    from cosmos_workflow.engines.hf import load

    with load(EngineConfig(model=str(tiny_model), device="cpu", options=options)) as engine:
        free = _answers(engine, requests, ANY)
        ascii_only = _answers(engine, requests, ASCII)
    assert not all(text.isascii() for text in free), "the random model writes non-ASCII text unasked"
    assert all(text.isascii() for text in ascii_only)
    assert any(ascii_only)


def test_qwen_answers_are_ascii_only_when_asked(cache_dir: Path) -> None:
    from cosmos_workflow.engines.hf import load
    from cosmos_workflow.engines.tiny_qwen import tiny_qwen_dir

    folder = tiny_qwen_dir(cache_dir)
    family = Qwen25VLFamily(folder)
    requests = [
        EncodedRequest(key=str(i), prompt=p, token_ids=family.encode(p, []).token_ids)
        for i, p in enumerate(["A red cube on a table.", "Rain at night.", "A dog runs."])
    ]
    engine = load(EngineConfig(engine="hf", model=str(folder), device="cpu"))
    try:
        free = _answers(engine, requests, ANY)
        ascii_only = _answers(engine, requests, ASCII)
    finally:
        engine.close()
    assert not all(text.isascii() for text in free), "the random model writes non-ASCII text unasked"
    assert all(text.isascii() for text in ascii_only)
    assert any(ascii_only)
