"""``first_batch`` with the real transformers engine on the tiny model (CPU): the first answers are
saved after a batch of ``first_batch``, the rest after theirs, and the greedy answers are the
same tokens as without it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cosmos_workflow import api
from cosmos_workflow.config import UpsampleSettings, run_options
from cosmos_workflow.engines import EngineConfig
from cosmos_workflow.engines.hf import HFEngine, load
from cosmos_workflow.executors import LocalExecutor
from cosmos_workflow.specs.batch import BatchItem
from cosmos_workflow.specs.results import UpsampleRecord
from tests.videos import make_video


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> Iterator[HFEngine]:
    with load(EngineConfig(model=str(tiny_model), device="cpu")) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory) -> list[BatchItem]:
    """Text prompts of several lengths and two short videos: 6 requests, 8 fit on the CPU."""
    folder = tmp_path_factory.mktemp("videos")
    videos = [make_video(folder / f"v{n}.mp4", 320, 180, frames=2) for n in range(2)]
    texts = [BatchItem(name=f"t{n}", prompt="A quiet street at dusk. " * (n + 1)) for n in range(4)]
    shots = [
        BatchItem(name=f"v{n}", prompt=f"Shot {n} of a harbour", video_path=v) for n, v in enumerate(videos)
    ]
    return texts + shots


def run(engine: HFEngine, items: list[BatchItem], out: Path, first_batch: int) -> list[list[UpsampleRecord]]:
    """The records of each journal save, in the order saved (one save per batch)."""
    settings = UpsampleSettings(
        engine="hf",
        model="tiny-random",
        device="cpu",
        temperature=0.0,
        max_resolution=160,
        batch_size="auto",
        first_batch=first_batch,
        clips=False,
    )
    saves: list[list[UpsampleRecord]] = []
    api.upsample(
        items,
        run_options(settings, output=out),
        output=out,
        executor=LocalExecutor(engine),
        on_saved=lambda records: saves.append(list(records)),
    )
    return saves


@pytest.mark.slow
def test_the_first_answers_come_in_a_small_batch_and_are_the_same_tokens(
    engine: HFEngine, items: list[BatchItem], tmp_path: Path
) -> None:
    before = run(engine, items, tmp_path / "off.json", first_batch=0)
    ramped = run(engine, items, tmp_path / "on.json", first_batch=2)

    assert [len(save) for save in before] == [6]  # off: one batch, as before
    assert [len(save) for save in ramped] == [2, 4]
    first = {r.name for r in ramped[0]}
    assert all(r.prompt_tokens <= min(s.prompt_tokens for s in ramped[1]) for r in ramped[0]), first

    def answers(saves: list[list[UpsampleRecord]]) -> dict[str, tuple[object, ...]]:
        return {
            r.name: (r.status, r.upsampled_prompt, r.completion_tokens, r.finish_reason, r.key)
            for save in saves
            for r in save
        }

    assert answers(ramped) == answers(before)
    assert {r.status for save in ramped for r in save} <= {"ok", "text_only"}
