"""Token ids and counts recorded once, compared in every environment.

The planner must count what the model's tokenizer produces in the image that serves it. This file
runs in .venv (the newest mistral-common) and, in CI, in the Cosmos image's environment
(mistral-common 1.5.4, scripts/ci/version_matrix.sh): both must reproduce the same recorded ids
(by hash) and counts, and the planner's arithmetic must equal the encoded length in each.
Regenerate the record only on purpose: ``python -m tests.unit.test_token_counts --write``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from cosmos_workflow.tokenizer import load_tokenizer

RECORD = Path(__file__).resolve().parents[1] / "data" / "token_counts.json"
PROMPTS = (
    "Test",
    "A futuristic city at night, neon signs reflecting on wet asphalt.",
    "Ünïcödé, 日本語 and 🚗!",
)
#: (height, width) of the frames, as the planner feeds them or as stock Cosmos sends them
SIZES = ((272, 480), (480, 272), (576, 1024), (720, 1280), (1080, 1920), (16, 16), (17, 33), (300, 2000))
CASES = [(prompt, size, frames) for prompt in PROMPTS for size in SIZES for frames in (0, 1, 2)]


def _key(prompt: str, size: tuple[int, int], frames: int) -> str:
    return f"{prompt!r} {size[0]}x{size[1]} x{frames}"


def _measure(prompt: str, size: tuple[int, int], frames: int) -> dict[str, object]:
    images = [np.full((*size, 3), 90 + 40 * i, dtype=np.uint8) for i in range(frames)]
    ids = load_tokenizer().encode(prompt, images).token_ids
    return {"count": len(ids), "sha256": hashlib.sha256(json.dumps(ids).encode()).hexdigest()}


@pytest.fixture(scope="module")
def record() -> dict[str, dict[str, object]]:
    data: dict[str, dict[str, object]] = json.loads(RECORD.read_text())
    return data


@pytest.mark.parametrize(("prompt", "size", "frames"), CASES)
def test_ids_and_counts_equal_the_record(
    record: dict[str, dict[str, object]], prompt: str, size: tuple[int, int], frames: int
) -> None:
    assert _measure(prompt, size, frames) == record[_key(prompt, size, frames)]


@pytest.mark.parametrize(("prompt", "size", "frames"), CASES)
def test_the_planners_arithmetic_equals_the_encoded_length(
    prompt: str, size: tuple[int, int], frames: int
) -> None:
    tokenizer = load_tokenizer()
    height, width = size
    planned = tokenizer.text_tokens(prompt) + frames * tokenizer.image_tokens(width, height)
    assert planned == _measure(prompt, size, frames)["count"]


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    RECORD.write_text(
        json.dumps({_key(*case): _measure(*case) for case in CASES}, indent=1, ensure_ascii=False) + "\n"
    )
