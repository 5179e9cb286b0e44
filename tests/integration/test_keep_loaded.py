"""``offload_prompt_upsampler``: freed after each batch (default) or kept loaded across
``upsample_prompts_batch`` calls. Engines are counted where they are loaded: the engine registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cosmos_workflow import api
from cosmos_workflow.config import CONFIG_FILE, options_from_keywords
from cosmos_workflow.engines import ENGINES, EngineConfig
from cosmos_workflow.engines.fake import FakeEngine
from cosmos_workflow.executors import LocalExecutor
from cosmos_workflow.specs.batch import BatchItem
from cosmos_workflow.specs.prompt_spec import PromptSpec, new_spec
from cosmos_workflow.workflow import WorkflowOrchestrator
from tests import probe_engines
from tests.videos import make_video


@pytest.fixture(autouse=True)
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    monkeypatch.setitem(ENGINES, "counted", "tests.probe_engines:counted")
    monkeypatch.setitem(ENGINES, "counted-hf", "tests.probe_engines:counted_hf")
    probe_engines.LOADED.clear()
    yield probe_engines.LOADED
    probe_engines.LOADED.clear()


def specs(tmp_path: Path, *names: str) -> list[PromptSpec]:
    video = make_video(tmp_path / "v.mp4", 320, 180, frames=3)
    return [new_spec(name, f"A scene called {name}", input_video_path=str(video)) for name in names]


def closed(engine: object) -> bool:
    assert isinstance(engine, FakeEngine)
    return engine.closed


def test_keep_loaded_loads_once_over_two_batches_until_close(tmp_path: Path) -> None:
    with WorkflowOrchestrator(work_dir=tmp_path / "work") as orchestrator:
        first = orchestrator.upsample_prompts_batch(
            specs(tmp_path, "a", "b"), engine="counted", model="m", offload_prompt_upsampler=False
        )
        second = orchestrator.upsample_prompts_batch(
            specs(tmp_path, "c"), engine="counted", model="m", offload_prompt_upsampler=False
        )
        assert all(s.upsampled_prompt for s in first + second)
        [engine] = probe_engines.LOADED
        assert not closed(engine)
        assert isinstance(engine, FakeEngine) and len(engine.received) == 3  # both batches, one engine
    assert closed(engine)  # the with block closed the orchestrator


def test_offload_loads_and_frees_the_engine_for_each_batch(tmp_path: Path) -> None:
    orchestrator = WorkflowOrchestrator(work_dir=tmp_path / "work")
    orchestrator.upsample_prompts_batch(specs(tmp_path, "a"), engine="counted", model="m")
    assert [closed(e) for e in probe_engines.LOADED] == [True]  # freed right after its batch
    orchestrator.upsample_prompts_batch(
        specs(tmp_path, "b"), engine="counted", model="m", offload_prompt_upsampler=True
    )
    assert [closed(e) for e in probe_engines.LOADED] == [True, True]


def test_other_engine_settings_replace_the_kept_engine(tmp_path: Path) -> None:
    orchestrator = WorkflowOrchestrator(work_dir=tmp_path / "work")
    kept = {"engine": "counted", "model": "m", "offload_prompt_upsampler": False}
    orchestrator.upsample_prompts_batch(specs(tmp_path, "a"), **kept)
    orchestrator.upsample_prompts_batch(specs(tmp_path, "b"), max_model_len=2048, **kept)
    old, new = probe_engines.LOADED
    assert closed(old) and not closed(new)  # one model in memory at a time
    assert isinstance(new, FakeEngine) and new.config.max_model_len == 2048
    orchestrator.upsample_prompts_batch(specs(tmp_path, "c"), engine="counted", model="m", max_model_len=2048)
    assert len(probe_engines.LOADED) == 2 and closed(new)  # offload again: used once more, then freed


def test_the_config_file_keeps_the_engine_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(
        '[upsample]\nengine = "counted"\nmodel = "m"\noffload_prompt_upsampler = false\n'
    )
    orchestrator = WorkflowOrchestrator(work_dir=tmp_path / "work")
    orchestrator.upsample_prompts_batch(specs(tmp_path, "a"))
    orchestrator.upsample_prompts_batch(specs(tmp_path, "b"))
    assert len(probe_engines.LOADED) == 1 and not closed(probe_engines.LOADED[0])
    orchestrator.upsample_prompts_batch(specs(tmp_path, "c"), offload_prompt_upsampler=True)  # keyword wins
    assert len(probe_engines.LOADED) == 1 and closed(probe_engines.LOADED[0])


def test_an_executor_the_api_makes_is_closed_after_its_run(tmp_path: Path) -> None:
    """One command is one batch: without an owner to keep it, the engine is freed at the end."""
    options = options_from_keywords(engine="counted", model="m", offload_prompt_upsampler=False, clips=False)
    items = [BatchItem(name="a", prompt="A red kite")]
    api.upsample(items, options, output=tmp_path / "o.json")
    assert [closed(e) for e in probe_engines.LOADED] == [True]
    executor = LocalExecutor()  # the caller's executor: kept until the caller closes it
    api.upsample(
        items, options.model_copy(update={"force": True}), output=tmp_path / "o.json", executor=executor
    )
    assert not closed(probe_engines.LOADED[1])
    executor.close()
    assert closed(probe_engines.LOADED[1])


def test_a_given_engine_is_never_closed(tmp_path: Path) -> None:
    engine = FakeEngine(EngineConfig(engine="fake", model="fake"))
    with WorkflowOrchestrator(work_dir=tmp_path / "work", engine=engine) as orchestrator:
        orchestrator.upsample_prompts_batch(specs(tmp_path, "a"), engine="fake")
    assert not engine.closed and probe_engines.LOADED == []


@pytest.mark.slow
def test_tiny_model_kept_loaded_across_batches(tmp_path: Path, tiny_model: Path) -> None:
    """The real transformers engine: one load for two batches; close() frees the model."""
    settings = {"engine": "counted-hf", "model": "tiny-random", "device": "cpu", "max_tokens": 8}
    settings |= {"max_resolution": 160, "on_error": "original", "temperature": 0.0}
    with WorkflowOrchestrator(work_dir=tmp_path / "work") as orchestrator:
        orchestrator.upsample_prompts_batch(specs(tmp_path, "a"), offload_prompt_upsampler=False, **settings)
        orchestrator.upsample_prompts_batch(specs(tmp_path, "b"), offload_prompt_upsampler=False, **settings)
        [engine] = probe_engines.LOADED
        assert engine.name == "hf" and getattr(engine, "_model", None) is not None
    assert getattr(engine, "_model", "gone") is None
    WorkflowOrchestrator(work_dir=tmp_path / "offload").upsample_prompts_batch(
        specs(tmp_path, "c"), **settings
    )
    assert len(probe_engines.LOADED) == 2 and getattr(probe_engines.LOADED[1], "_model", "gone") is None
