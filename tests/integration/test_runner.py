"""The runner with the scripted engine: what reached the model, back-off, errors, resume."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from cosmos_workflow import api
from cosmos_workflow.config import RunOptions
from cosmos_workflow.engines import EncodedRequest, EngineConfig, Generation, SamplingParams
from cosmos_workflow.engines.fake import FakeEngine
from cosmos_workflow.errors import EngineError, ModelLoadError
from cosmos_workflow.executors import LocalExecutor
from cosmos_workflow.journal import journal_path_for
from cosmos_workflow.media import clip_path
from cosmos_workflow.planner import PlanSettings
from cosmos_workflow.runner import request_key
from cosmos_workflow.specs.batch import BatchItem, load_batch
from cosmos_workflow.tokenizer import load_tokenizer
from tests.videos import frame_colour, make_video


def options(tmp_path: Path, **changes: object) -> RunOptions:
    base = RunOptions(engine=EngineConfig(engine="fake", model="fake"), clips_dir=tmp_path / "clips")
    return base.model_copy(update=changes)


@pytest.fixture
def items(tmp_path: Path) -> list[BatchItem]:
    make_video(tmp_path / "hd.mp4", 1280, 720, frames=6)
    make_video(tmp_path / "fullhd.mp4", 1920, 1080, frames=6)
    make_video(tmp_path / "small.mp4", 320, 180, frames=6)
    return [
        BatchItem(name="hd", prompt="A city at night", video_path=tmp_path / "hd.mp4"),
        BatchItem(name="fullhd", prompt="A forest", video_path=tmp_path / "fullhd.mp4"),
        BatchItem(name="small", prompt="A tiny clip", video_path=tmp_path / "small.mp4"),
        BatchItem(name="missing", prompt="No video here", video_path=tmp_path / "nope.mp4"),
        BatchItem(name="text", prompt="Only words"),
    ]


def test_what_reached_the_model(tmp_path: Path, items: list[BatchItem]) -> None:
    engine = FakeEngine()
    result = api.upsample(
        items, options(tmp_path), output=tmp_path / "out.json", executor=LocalExecutor(engine)
    )
    by_key = {r.key: r for r in engine.received}
    tok = load_tokenizer()
    records = {r.name: r for r in result.records}
    for name in ("hd", "fullhd"):
        request = by_key[records[name].key]
        assert [f.shape for f in request.frames] == [(272, 480, 3)] * 2
        assert [p.shape for p in request.pixel_values] == [(3, 272, 480)] * 2
        assert (
            len(request.token_ids) == records[name].prompt_tokens == 2 * 527 + tok.text_tokens(request.prompt)
        )
        # the first two frames, in order (solid colours per frame index)
        for index, frame in enumerate(request.frames):
            assert np.abs(frame[200, 400].astype(int) - frame_colour(index)).max() < 40
    assert by_key[records["small"].key].frames[0].shape == (176, 320, 3)
    assert len(by_key[records["text"].key].frames) == 0
    assert engine.closed is False  # an injected engine belongs to the caller


def test_output_format_and_statuses(tmp_path: Path, items: list[BatchItem]) -> None:
    api.upsample(items, options(tmp_path), output=tmp_path / "out.json", executor=LocalExecutor(FakeEngine()))
    data = json.loads((tmp_path / "out.json").read_text())
    assert [d["name"] for d in data] == [i.name for i in items]
    seed_keys = {"name", "original_prompt", "upsampled_prompt", "video_path", "preprocessed_video"}
    assert all(seed_keys <= d.keys() for d in data)
    status = {d["name"]: d["status"] for d in data}
    assert status == {"hd": "ok", "fullhd": "ok", "small": "ok", "missing": "text_only", "text": "text_only"}
    missing = next(d for d in data if d["name"] == "missing")
    assert "not found" in missing["warning"].lower() and missing["upsampled_prompt"]
    for d in data:
        if d["preprocessed_video"]:
            assert Path(d["preprocessed_video"]).is_file()
            assert Path(d["preprocessed_video"]).parent == tmp_path / "clips"
    assert len({d["preprocessed_video"] for d in data if d["preprocessed_video"]}) == 3


def test_batches_are_grouped_by_length(tmp_path: Path, items: list[BatchItem]) -> None:
    engine = FakeEngine()
    result = api.upsample(
        items, options(tmp_path, batch_size=2), output=tmp_path / "o.json", executor=LocalExecutor(engine)
    )
    tokens = {r.key: r.prompt_tokens for r in result.records}
    sizes = [[tokens[k] for k in batch] for batch in engine.batches]
    flat = [t for batch in sizes for t in batch]
    assert flat == sorted(flat) and [len(b) for b in sizes] == [2, 2, 1]


def test_out_of_memory_halves_the_batch(tmp_path: Path, items: list[BatchItem]) -> None:
    engine = FakeEngine(oom_above=1)
    result = api.upsample(
        items, options(tmp_path, batch_size=4), output=tmp_path / "o.json", executor=LocalExecutor(engine)
    )
    assert all(len(b) == 1 for b in engine.batches)
    assert result.counts["ok"] + result.counts["text_only"] == len(items)


def test_cut_off_empty_and_failed_answers_never_count_as_upsampled(tmp_path: Path) -> None:
    items = [BatchItem(name=n, prompt=f"prompt {n}") for n in ("cut", "empty", "failed", "good")]
    script = [
        Generation(text="A half", finish_reason="length", prompt_tokens=5, completion_tokens=300),
        Generation(text="  ", finish_reason="stop", prompt_tokens=5, completion_tokens=1),
        Generation.failed("boom", prompt_tokens=5),
        "Here is the prompt: **A good answer.**",
        Generation(text="Cut again", finish_reason="length", prompt_tokens=5, completion_tokens=300),
    ]
    result = api.upsample(
        items,
        options(tmp_path, batch_size=4),
        output=tmp_path / "o.json",
        executor=LocalExecutor(FakeEngine(answers=script)),
    )
    records = {r.name: r for r in result.records}
    assert records["good"].upsampled_prompt == "A good answer." and records["good"].status == "text_only"
    for name, reason in (("cut", "cut off"), ("empty", "empty"), ("failed", "boom")):
        assert records[name].status == "error" and records[name].upsampled_prompt is None
        assert reason in (records[name].error or "")
    assert records["cut"].attempts == 2 and "cut off at 300 tokens" in (records["cut"].retry or "")
    assert records["empty"].attempts == records["failed"].attempts == 1


def test_a_cut_off_answer_is_retried_once_with_a_new_seed(tmp_path: Path) -> None:
    items = [BatchItem(name=n, prompt=f"prompt {n}") for n in ("long", "short")]
    cut = Generation(text="A half", finish_reason="length", prompt_tokens=5, completion_tokens=300)
    engine = FakeEngine(answers=[cut, "A short answer.", "A whole answer this time."])
    opts = options(tmp_path, sampling=SamplingParams(seed=41))
    result = api.upsample(items, opts, output=tmp_path / "o.json", executor=LocalExecutor(engine))
    records = {r.name: r for r in result.records}
    assert (
        records["long"].status == "text_only"
        and records["long"].upsampled_prompt == "A whole answer this time."
    )
    assert records["long"].attempts == 2 and "seed 42" in (records["long"].retry or "")
    assert records["short"].attempts == 1 and records["short"].retry is None
    assert [s.seed for s in engine.sampling] == [41, 42] and len(engine.batches[1]) == 1


def test_on_error_original_falls_back(tmp_path: Path) -> None:
    items = [BatchItem(name="a", prompt="keep me")]
    cut = Generation(text="", finish_reason="length", prompt_tokens=5, completion_tokens=300)
    script = [cut, cut]
    result = api.upsample(
        items,
        options(tmp_path, on_error="original"),
        output=tmp_path / "o.json",
        executor=LocalExecutor(FakeEngine(answers=script)),
    )
    assert result.records[0].status == "fallback"
    assert result.records[0].upsampled_prompt == "keep me"


def test_context_length_error_is_replanned_smaller_once(tmp_path: Path, items: list[BatchItem]) -> None:
    script = [Generation.failed("too long", prompt_tokens=1, kind="context_length")]
    engine = FakeEngine(answers=script)
    single = [items[0]]
    result = api.upsample(
        single, options(tmp_path), output=tmp_path / "o.json", executor=LocalExecutor(engine)
    )
    record = result.records[0]
    assert record.status == "ok"
    assert (record.width, record.height) == (352, 192)  # 480 * 3/4 = 360 -> 352 on the grid
    assert record.plan_changes == [
        "resolution 480->352 px long side: the engine reported the request too long"
    ]
    assert len(engine.batches) == 2


def test_prompt_too_long_is_an_item_error_and_the_rest_go_on(tmp_path: Path, items: list[BatchItem]) -> None:
    batch = [*items, BatchItem(name="huge", prompt="word " * 5000)]
    engine = FakeEngine()
    result = api.upsample(
        batch, options(tmp_path), output=tmp_path / "o.json", executor=LocalExecutor(engine)
    )
    records = {r.name: r for r in result.records}
    assert records["huge"].status == "error" and "shorten the prompt" in (records["huge"].error or "")
    assert records["huge"].key not in {r.key for r in engine.received}
    assert sum(r.status in ("ok", "text_only") for r in result.records) == len(items)


def test_no_preprocess_overflow_is_never_sent(tmp_path: Path, items: list[BatchItem]) -> None:
    engine = FakeEngine()
    opts = options(tmp_path, plan=PlanSettings(preprocess=False))
    result = api.upsample(items, opts, output=tmp_path / "o.json", executor=LocalExecutor(engine))
    records = {r.name: r for r in result.records}
    assert records["hd"].status == "error" and "4096" in (records["hd"].error or "")
    assert records["small"].status == "ok" and records["small"].width == 320
    assert records["hd"].key not in {r.key for r in engine.received}


def test_model_load_failure(tmp_path: Path, items: list[BatchItem]) -> None:
    broken = EngineConfig(engine="hf", model=str(tmp_path / "no-such-checkpoint"))
    with pytest.raises(ModelLoadError, match="no-such-checkpoint"):
        api.upsample(items, options(tmp_path, engine=broken), output=tmp_path / "o.json")
    assert not (tmp_path / "o.json").exists()
    result = api.upsample(
        items, options(tmp_path, engine=broken, on_error="original"), output=tmp_path / "o.json"
    )
    assert {r.status for r in result.records} == {"fallback"}
    assert [r.upsampled_prompt for r in result.records] == [i.prompt for i in items]
    assert "no-such-checkpoint" in (result.records[0].error or "")


def test_rerun_resumes_and_force_redoes(tmp_path: Path, items: list[BatchItem]) -> None:
    out = tmp_path / "o.json"
    first = FakeEngine()
    api.upsample(items, options(tmp_path), output=out, executor=LocalExecutor(first))
    again = FakeEngine()
    result = api.upsample(items, options(tmp_path), output=out, executor=LocalExecutor(again))
    assert again.received == [] and result.resumed == len(items)
    forced = FakeEngine()
    api.upsample(items, options(tmp_path, force=True), output=out, executor=LocalExecutor(forced))
    assert len(forced.received) == len(items)
    # a change that alters the answer (sampling) is a new request, not a resumed one
    changed = FakeEngine()
    api.upsample(
        items,
        options(tmp_path, sampling=SamplingParams(temperature=0.1)),
        output=out,
        executor=LocalExecutor(changed),
    )
    assert len(changed.received) == len(items)


def test_failed_items_are_retried_on_rerun(tmp_path: Path) -> None:
    items = [BatchItem(name="a", prompt="x"), BatchItem(name="b", prompt="y")]
    out = tmp_path / "o.json"
    api.upsample(
        items,
        options(tmp_path),
        output=out,
        executor=LocalExecutor(FakeEngine(answers=[Generation.failed("x", prompt_tokens=1)])),
    )
    second = FakeEngine()
    result = api.upsample(items, options(tmp_path), output=out, executor=LocalExecutor(second))
    assert [r.prompt for r in second.received] == ["x"]
    assert {r.status for r in result.records} == {"text_only"}


def test_torn_journal_line_is_ignored(tmp_path: Path, items: list[BatchItem]) -> None:
    out = tmp_path / "o.json"
    api.upsample(items[:2], options(tmp_path), output=out, executor=LocalExecutor(FakeEngine()))
    journal = journal_path_for(out)
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text(lines[0] + lines[1][: len(lines[1]) // 2])  # a crash mid-write
    engine = FakeEngine()
    result = api.upsample(items[:2], options(tmp_path), output=out, executor=LocalExecutor(engine))
    assert len(engine.received) == 1 and result.resumed == 1
    assert [json.loads(line)["name"] for line in journal.read_text().splitlines()[-1:]]


def test_prompts_file_with_bad_items(tmp_path: Path) -> None:
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps([{"name": "a", "prompt": "x"}, {"name": "b", "prompt": ""}]))
    result, problems = api.upsample_file(
        prompts, tmp_path / "o.json", options(tmp_path), executor=LocalExecutor(FakeEngine())
    )
    assert [r.name for r in result.records] == ["a"] and len(problems) == 1
    assert load_batch(prompts).problems[0].name == "b"


class PoisonEngine(FakeEngine):
    """Fails any call whose batch holds the prompt 'poison' (an engine error, not out-of-memory)."""

    def generate(self, requests, sampling):
        if any(r.prompt == "poison" for r in requests):
            raise EngineError("the engine choked on this batch")
        return super().generate(requests, sampling)


def test_engine_error_is_isolated_to_its_request(tmp_path: Path) -> None:
    items = [BatchItem(name=n, prompt=p) for n, p in (("a", "fine"), ("b", "poison"), ("c", "also fine"))]
    result = api.upsample(
        items,
        options(tmp_path, batch_size=3),
        output=tmp_path / "o.json",
        executor=LocalExecutor(PoisonEngine()),
    )
    status = {r.name: r.status for r in result.records}
    assert status == {"a": "text_only", "b": "error", "c": "text_only"}
    assert "choked" in (result.records[1].error or "")


def test_later_batches_keep_the_smaller_size_after_out_of_memory(tmp_path: Path) -> None:
    items = [BatchItem(name=f"i{n}", prompt=f"prompt {n}") for n in range(8)]
    engine = FakeEngine(oom_above=2)
    api.upsample(
        items, options(tmp_path, batch_size=4), output=tmp_path / "o.json", executor=LocalExecutor(engine)
    )
    assert [len(b) for b in engine.batches] == [2, 2, 2, 2]


def test_unexpected_preprocessing_failure_is_an_item_error(tmp_path: Path, items: list[BatchItem]) -> None:
    # a folder where hd's clip must go: its write fails mid-run (a clips *folder* that is a file
    # is refused before any work, by paths.check_paths)
    run = options(tmp_path)
    clip_path(tmp_path / "clips", "hd", request_key(items[0], run)).mkdir(parents=True)
    result = api.upsample(items, run, output=tmp_path / "o.json", executor=LocalExecutor(FakeEngine()))
    records = {r.name: r for r in result.records}
    assert records["hd"].status == "error" and records["hd"].error
    assert records["text"].status == "text_only"


class SizedEngine(FakeEngine):
    """Says how many requests fit, as the hf engine does from free GPU memory."""

    def __init__(self, fits: int) -> None:
        super().__init__()
        self.fits = fits

    def max_batch_size(self, prompt_tokens: int, max_tokens: int) -> int:
        self.asked = (prompt_tokens, max_tokens)
        return self.fits


@pytest.mark.parametrize(
    ("requests", "fits", "batches"),
    [(7, 3, [3, 3, 1]), (10, 9, [5, 5]), (12, 5, [4, 4, 4]), (4, 9, [4])],
)
def test_auto_batch_size_asks_the_engine_and_evens_the_batches_out(
    tmp_path: Path, requests: int, fits: int, batches: list[int]
) -> None:
    items = [BatchItem(name=f"i{n}", prompt=f"prompt number {n}") for n in range(requests)]
    engine = SizedEngine(fits)
    api.upsample(
        items,
        options(tmp_path, batch_size="auto"),
        output=tmp_path / "o.json",
        executor=LocalExecutor(engine),
    )
    assert [len(b) for b in engine.batches] == batches
    assert engine.asked[1] == 300 and engine.asked[0] >= 7


def test_by_default_batches_are_what_fits_and_eight_where_the_engine_cannot_say(tmp_path: Path) -> None:
    """The default batch size is 'auto': 200 shots where 256 fit go in one batch, not 25 of 8 (on
    an H200 the fixed 8 took the hf CLI 177 s from process start, one batch 45 s: BENCHMARKS.md)."""
    items = [BatchItem(name=f"i{n}", prompt=f"prompt number {n}") for n in range(200)]
    sized, unsized = SizedEngine(256), FakeEngine()
    for name, engine in (("sized", sized), ("unsized", unsized)):
        output = tmp_path / f"{name}.json"
        api.upsample(items, options(tmp_path), output=output, executor=LocalExecutor(engine))
    assert [len(b) for b in sized.batches] == [200]
    assert [len(b) for b in unsized.batches] == [8] * 25


class FrameKeeper(FakeEngine):
    """Keeps the frames of each request it answers."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: dict[str, list[np.ndarray]] = {}

    def generate(self, requests: Sequence[EncodedRequest], sampling: SamplingParams) -> list[Generation]:
        self.frames.update((r.prompt, list(r.frames)) for r in requests)
        return super().generate(requests, sampling)


def test_prompt_variants_on_one_video_are_decoded_once_and_each_gets_its_own_clip(tmp_path: Path) -> None:
    make_video(tmp_path / "one.mp4", 320, 180, frames=6, texture=1)
    make_video(tmp_path / "two.mp4", 320, 180, frames=6, texture=2)
    items = [
        BatchItem(
            name=f"v{n}", prompt=f"variant {n}", video_path=tmp_path / ("two.mp4" if n == 5 else "one.mp4")
        )
        for n in range(6)
    ]
    engine = FrameKeeper()
    result = api.upsample(
        items, options(tmp_path), output=tmp_path / "o.json", executor=LocalExecutor(engine)
    )
    assert {r.status for r in result.records} == {"ok"}
    one = [engine.frames[f"variant {n}"] for n in range(5)]
    assert all(frames[0] is one[0][0] for frames in one)  # decoded once, the same arrays
    assert not np.array_equal(engine.frames["variant 5"][0], one[0][0])  # the other video's own
    clips = [Path(str(r.preprocessed_video)) for r in result.records]
    assert len(set(clips)) == 6 and all(c.parent == tmp_path / "clips" for c in clips)
    assert len({c.read_bytes() for c in clips[:5]}) == 1  # the first's clip, copied


class SharingEngine(FakeEngine):
    """Shares frames within a batch (as the hf engine with share_prefix=decode): more requests fit
    the fewer distinct prefixes a batch holds."""

    shares_prefixes = True

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[int, int, int, int]] = []

    def max_batch_size(
        self, prompt_tokens: int, max_tokens: int, *, prefix_tokens: int = 0, prefixes: int = 0
    ) -> int:
        self.asked.append((prompt_tokens, max_tokens, prefix_tokens, prefixes))
        return 10 - prefixes if prefixes else 3


def test_auto_batch_size_asks_an_engine_that_shares_frames_with_the_runs_sharing(tmp_path: Path) -> None:
    items = [BatchItem(name=f"i{n}", prompt=f"prompt number {n}") for n in range(12)]
    engine = SharingEngine()
    api.upsample(
        items,
        options(tmp_path, batch_size="auto"),
        output=tmp_path / "o.json",
        executor=LocalExecutor(engine),
    )
    # text prompts share one prefix (BOS): 9 fit, so two batches of 6 (3 without the sharing)
    assert [len(b) for b in engine.batches] == [6, 6]
    assert {prefixes for *_, prefixes in engine.asked} == {0, 1}


def batch_sizes(tmp_path: Path, engine: FakeEngine, requests: int, **settings: object) -> list[int]:
    """The engine calls' sizes for ``requests`` text prompts of growing length."""
    items = [BatchItem(name=f"i{n}", prompt="word " * (n + 1)) for n in range(requests)]
    run = options(tmp_path, **settings)
    api.upsample(items, run, output=tmp_path / "o.json", executor=LocalExecutor(engine))
    return [len(b) for b in engine.batches]


@pytest.mark.parametrize(
    ("requests", "fits", "first", "batches"),
    [
        (10, 9, 3, [3, 7]),
        (20, 8, 2, [2, 6, 6, 6]),
        (12, 9, 8, [8, 4]),  # the first batch larger than the others goes in one engine call
        (12, 5, 8, [5, 4, 3]),  # at most what fits
        (4, 9, 6, [4]),
        (10, 9, 0, [5, 5]),  # off: as before
    ],
)
def test_auto_with_a_first_batch_sends_it_first_then_the_rest_evened_out(
    tmp_path: Path, requests: int, fits: int, first: int, batches: list[int]
) -> None:
    engine = SizedEngine(fits)
    assert batch_sizes(tmp_path, engine, requests, batch_size="auto", first_batch=first) == batches
    lengths = [r.num_tokens for r in engine.received]
    assert lengths == sorted(lengths)  # the first batch holds the shortest requests


@pytest.mark.parametrize(("first", "batches"), [(1, [1, 4, 3]), (6, [4, 4]), (0, [4, 4])])
def test_a_fixed_batch_size_with_a_first_batch(tmp_path: Path, first: int, batches: list[int]) -> None:
    assert batch_sizes(tmp_path, FakeEngine(), 8, batch_size=4, first_batch=first) == batches


def test_out_of_memory_in_the_first_batch_halves_the_later_ones_too(tmp_path: Path) -> None:
    sizes = batch_sizes(tmp_path, FakeEngine(oom_above=2), 9, batch_size=4, first_batch=3)
    assert sizes == [1, 2] + [1] * 6  # 3 -> 1 + 2; then batches of 4 and 2, one at a time


def test_the_frame_interval_is_the_mean_time_between_the_frames_sent() -> None:
    from cosmos_workflow.runner import frame_interval

    assert frame_interval([0, 1], 24.0) == pytest.approx(1 / 24)
    assert frame_interval([0, 10, 20], 20.0) == pytest.approx(0.5)
    assert frame_interval([5], 24.0) is None
    assert frame_interval([0, 1], None) is None


def test_keys_without_a_vision_budget_are_those_of_earlier_runs(tmp_path: Path) -> None:
    """Runs from before --max-vision-tokens, system prompts and ASCII-only answers existed still
    resume: the key leaves each out at its default."""
    import hashlib

    item = BatchItem(name="a", prompt="p")
    opts = options(tmp_path)
    plan = opts.plan.model_dump(mode="json")
    del plan["max_vision_tokens"], plan["system_prompt"]
    sampling = opts.sampling.model_dump(mode="json")
    del sampling["ascii_only"]
    earlier = {
        "name": "a",
        "prompt": "p",
        "video": None,
        "plan": plan,
        "sampling": sampling,
        "engine": opts.engine.engine,
        "model": opts.engine.model,
        "max_model_len": opts.engine.max_model_len,
    }
    digest = hashlib.sha256(json.dumps(earlier, sort_keys=True).encode()).hexdigest()[:32]

    assert request_key(item, opts) == digest
    budgeted = opts.model_copy(update={"plan": opts.plan.model_copy(update={"max_vision_tokens": 500})})
    assert request_key(item, budgeted) != digest
    keys = {digest}
    for system in ("Rewrite it.", "Rewrite it in detail."):
        told = opts.model_copy(update={"plan": opts.plan.model_copy(update={"system_prompt": system})})
        keys.add(request_key(item, told))
    ascii_only = opts.model_copy(update={"sampling": opts.sampling.model_copy(update={"ascii_only": True})})
    keys.add(request_key(item, ascii_only))
    assert len(keys) == 4  # another system prompt, or ASCII-only answers: the work is redone
