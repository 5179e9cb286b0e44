"""The runner with a streaming engine (as vLLM's): requests fed as prepared, answers saved as they come.

The scripted engine streams when given the engine option ``streams``: it answers each group of
``stream_group`` requests in reverse order, so answers overtake the requests sent before them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from cosmos_workflow import api
from cosmos_workflow.config import RunOptions
from cosmos_workflow.engines import EncodedRequest, EngineConfig, Generation, SamplingParams
from cosmos_workflow.engines.fake import FakeEngine
from cosmos_workflow.executors import LocalExecutor
from cosmos_workflow.journal import journal_path_for
from cosmos_workflow.media import clip_path
from cosmos_workflow.runner import PROMPT_COUNT_MISMATCH, request_key
from cosmos_workflow.specs.batch import BatchItem
from tests.videos import make_video


def streaming(**options: str | int | float | bool | None) -> EngineConfig:
    return EngineConfig(engine="fake", model="fake", options={"streams": True, "stream_group": 3, **options})


def run_options(tmp_path: Path, config: EngineConfig, **changes: object) -> RunOptions:
    base = RunOptions(engine=config, clips_dir=tmp_path / "clips")
    return base.model_copy(update=changes)


@pytest.fixture
def items(tmp_path: Path) -> list[BatchItem]:
    make_video(tmp_path / "hd.mp4", 1280, 720, frames=4)
    named = [
        BatchItem(name=f"shot{i}", prompt=f"Shot number {i}", video_path=tmp_path / "hd.mp4")
        for i in range(7)
    ]
    return [
        *named,
        BatchItem(name="words", prompt="Only words"),
        BatchItem(name="gone", prompt="x", video_path=tmp_path / "no.mp4"),
    ]


class JournalWatch(FakeEngine):
    """A streaming fake that notes, before each group, how many records the journal holds."""

    def __init__(self, config: EngineConfig, journal: Path) -> None:
        super().__init__(config)
        self.journal = journal
        self.saved_before_group: list[int] = []

    def generate_stream(
        self, requests: Iterable[EncodedRequest], sampling: SamplingParams
    ) -> Iterator[list[tuple[str, Generation]]]:
        for answers in super().generate_stream(requests, sampling):
            self.saved_before_group.append(_journal_lines(self.journal))
            yield answers


def _journal_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_streamed_answers_are_saved_as_they_come_and_output_keeps_input_order(
    tmp_path: Path, items: list[BatchItem]
) -> None:
    output = tmp_path / "out.json"
    # each group takes 0.6 s: longer than the runner holds answers back before saving them (0.5 s)
    engine = JournalWatch(streaming(seconds_per_batch=0.6), journal_path_for(output))
    result = api.upsample(
        items, run_options(tmp_path, engine.config), output=output, executor=LocalExecutor(engine)
    )
    assert [r.name for r in result.records] == [i.name for i in items]
    assert [d["name"] for d in json.loads(output.read_text())] == [i.name for i in items]
    assert {r.status for r in result.records} == {"ok", "text_only"}
    # groups of 3 in input order (no length sorting), each group's answers reversed
    assert [len(b) for b in engine.batches] == [3, 3, 3]
    # every group found the previous groups' answers already in the journal
    assert engine.saved_before_group == sorted(engine.saved_before_group)
    assert engine.saved_before_group[-1] > engine.saved_before_group[0]
    assert all(r.warning is None or PROMPT_COUNT_MISMATCH not in r.warning for r in result.records)


def test_streamed_cut_off_and_too_long_answers_are_redone_at_the_end(tmp_path: Path) -> None:
    make_video(tmp_path / "hd.mp4", 1280, 720, frames=4)
    items = [
        BatchItem(name="cut", prompt="a"),
        BatchItem(name="big", prompt="b", video_path=tmp_path / "hd.mp4"),
        BatchItem(name="fine", prompt="c"),
    ]
    cut = Generation(text="half", finish_reason="length", prompt_tokens=0, completion_tokens=300)
    too_long = Generation.failed("too long", prompt_tokens=0, kind="context_length")
    # answers are scripted in request order (the fake then yields the group reversed); the redos
    # come last: the cut-off answer again, then the request at a smaller size
    engine = FakeEngine(
        streaming(), answers=[cut, too_long, "Fine answer.", "Whole answer.", "Smaller answer."]
    )
    opts = run_options(tmp_path, engine.config, sampling=SamplingParams(seed=7))
    result = api.upsample(items, opts, output=tmp_path / "o.json", executor=LocalExecutor(engine))
    records = {r.name: r for r in result.records}
    assert records["fine"].upsampled_prompt == "Fine answer." and records["fine"].attempts == 1
    assert records["cut"].upsampled_prompt == "Whole answer." and records["cut"].attempts == 2
    assert "seed 8" in (records["cut"].retry or "")
    assert records["big"].status == "ok" and records["big"].upsampled_prompt == "Smaller answer."
    assert records["big"].plan_changes and "too long" in records["big"].plan_changes[0]


def test_a_preprocessing_failure_is_saved_without_reaching_the_engine(
    tmp_path: Path, items: list[BatchItem]
) -> None:
    engine = FakeEngine(streaming())
    run = run_options(tmp_path, engine.config)
    # a folder where shot0's clip must go: its write fails mid-run, after planning
    clip_path(tmp_path / "clips", "shot0", request_key(items[0], run)).mkdir(parents=True)
    result = api.upsample(items, run, output=tmp_path / "o.json", executor=LocalExecutor(engine))
    records = {r.name: r for r in result.records}
    assert records["shot0"].status == "error" and records["shot0"].error
    assert records["shot0"].key not in {r.key for r in engine.received}
    assert all(records[f"shot{i}"].status == "ok" for i in range(1, 7))


def test_an_engine_count_other_than_the_plan_is_a_warning_on_the_record(tmp_path: Path) -> None:
    miscounted = Generation(text="An answer.", finish_reason="stop", prompt_tokens=3, completion_tokens=2)
    engine = FakeEngine(streaming(), answers=[miscounted])
    result = api.upsample(
        [BatchItem(name="a", prompt="words")],
        run_options(tmp_path, engine.config),
        output=tmp_path / "o.json",
        executor=LocalExecutor(engine),
    )
    record = result.records[0]
    assert record.status == "text_only" and PROMPT_COUNT_MISMATCH in (record.warning or "")
    assert f"the plan {record.prompt_tokens}" in (record.warning or "")


class SelfEncodingEngine(FakeEngine):
    """Encodes the frames itself, as vLLM does: it needs no normalised pixel arrays."""

    needs_pixel_values = False


def test_an_engine_that_encodes_images_itself_gets_the_same_ids_and_no_pixel_arrays(
    tmp_path: Path, items: list[BatchItem]
) -> None:
    engines = [SelfEncodingEngine(streaming()), FakeEngine(streaming())]
    for n, engine in enumerate(engines):
        opts = run_options(tmp_path, engine.config)
        api.upsample(items, opts, output=tmp_path / f"o{n}.json", executor=LocalExecutor(engine))
    fast, full = ({r.key: r for r in e.received} for e in engines)
    assert fast.keys() == full.keys() and len(fast) == 9
    assert all(fast[k].token_ids == full[k].token_ids for k in fast)
    assert all(not r.pixel_values for r in fast.values())
    assert sum(len(r.pixel_values) for r in full.values()) == 14
