"""``share_prefix`` through the whole pipeline with the real transformers engine on the tiny model
(CPU): prompt variants on the same videos, planned, decoded and batched by the runner, get the
answers of ``share_prefix=off``, and the engine did share each video's frames."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from cosmos_workflow import api
from cosmos_workflow.config import UpsampleSettings, run_options
from cosmos_workflow.engines import EncodedRequest, EngineConfig, Generation, SamplingParams
from cosmos_workflow.engines.hf import HFEngine, load
from cosmos_workflow.executors import LocalExecutor
from cosmos_workflow.specs.batch import BatchItem
from tests.videos import make_video

#: the engine's own decoding loop with flex decoding (share_prefix=decode needs it); answers of
#: exactly 16 tokens (random weights: the loop has no generation config to end them sooner)
FLEX = {"static_cache": True, "decode_attention": "flex", "ignore_eos": True}


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> Iterator[HFEngine]:
    with load(EngineConfig(model=str(tiny_model), device="cpu", options=FLEX)) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory) -> list[BatchItem]:
    """Three prompt variants on each of two videos (pictures of their own), and two text prompts,
    interleaved: 8 requests, 8 fit on the CPU."""
    folder = tmp_path_factory.mktemp("videos")
    videos = [make_video(folder / f"v{n}.mp4", 320, 180, frames=3, texture=n) for n in range(2)]
    prompts = ["A harbour at dawn", "Boats leave the harbour one by one in the fog", "Gulls"]
    shots = [
        BatchItem(name=f"v{v}-p{p}", prompt=prompt, video_path=video)
        for p, prompt in enumerate(prompts)
        for v, video in enumerate(videos)
    ]
    texts = [BatchItem(name=f"t{n}", prompt="A quiet street at dusk. " * (n + 1)) for n in range(2)]
    return shots[:3] + texts + shots[3:]


def answers(engine: HFEngine, items: list[BatchItem], out: Path) -> dict[str, tuple[str, int, int]]:
    """Each request's answer as the engine gave it to the pipeline (with ``ignore_eos`` the
    pipeline files every answer as cut off, by design, and keeps no text)."""
    settings = UpsampleSettings(
        engine="hf",
        model="tiny-random",
        device="cpu",
        temperature=0.0,
        max_tokens=16,
        max_resolution=160,
        clips=False,
        engine_options=FLEX,
    )
    given: dict[str, tuple[str, int, int]] = {}
    generate = engine.generate

    def recorded(requests: Sequence[EncodedRequest], sampling: SamplingParams) -> list[Generation]:
        generations = generate(requests, sampling)
        for request, g in zip(requests, generations, strict=True):
            given[request.key] = (g.text, g.prompt_tokens, g.completion_tokens)
        return generations

    engine.generate = recorded  # type: ignore[method-assign]
    api.upsample(items, run_options(settings, output=out), output=out, executor=LocalExecutor(engine))
    return given


@pytest.mark.slow
@pytest.mark.parametrize("share", ["prefill", "decode"])
def test_prompt_variants_share_their_videos_frames_and_get_the_same_answers(
    engine: HFEngine, items: list[BatchItem], tmp_path: Path, share: str, caplog: pytest.LogCaptureFixture
) -> None:
    plain = answers(engine.with_options({"share_prefix": "off"}), items, tmp_path / "off.json")
    shared_engine = engine.with_options({"share_prefix": share})
    with caplog.at_level(logging.INFO, logger="cosmos_workflow"):
        shared = answers(shared_engine, items, tmp_path / f"{share}.json")

    assert shared == plain
    assert len(plain) == len(items) and {completion for *_, completion in plain.values()} == {16}
    assert len({text for text, *_ in plain.values()}) >= 5  # the variants' answers differ
    # one batch of 8: the two videos' frames and the text prompts' BOS, each once
    assert "8 requests share 3 prefixes" in caplog.text
