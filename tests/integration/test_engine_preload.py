"""The engine loads in the background while the run plans its items (``Executor.preload``,
``EngineCache.preload``): planning and loading overlap, a load's failure reaches the run as
before, and an engine still loading when the run ends is closed once loaded."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cosmos_workflow import api
from cosmos_workflow.config import RunOptions
from cosmos_workflow.engines import ENGINES, EngineConfig
from cosmos_workflow.engines.cache import EngineCache
from cosmos_workflow.engines.fake import FakeEngine
from cosmos_workflow.errors import ModelLoadError
from cosmos_workflow.executors import LocalExecutor
from cosmos_workflow.specs.batch import BatchItem

#: set by the background engine's load as it starts; what the planner waited for, per item
STARTED = threading.Event()
SEEN: dict[str, object] = {}


class BackgroundEngine(FakeEngine):
    """The fake engine, loadable in the background; its load says where it ran, and fails when
    its model is named 'broken'."""

    name = "background"
    loads_in_background = True

    def __init__(self, config: EngineConfig | None = None) -> None:
        STARTED.set()
        SEEN["thread"] = threading.current_thread().name
        if config is not None and config.model == "broken":
            raise ModelLoadError("the broken model does not load; point --model at a checkpoint")
        super().__init__(config)


@pytest.fixture
def background(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """The engine registered; each item's planning first waits (up to 10 s) for its load to have
    started, and the waits' outcomes are kept (a load after planning would leave them False)."""
    monkeypatch.setitem(ENGINES, "background", f"{__name__}:BackgroundEngine")
    STARTED.clear()
    SEEN.clear()
    waits: list[bool] = []
    plan_job = api.plan_job

    def planned_after_the_load_started(*args: object, **kwargs: object) -> object:
        waits.append(STARTED.wait(10))
        return plan_job(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(api, "plan_job", planned_after_the_load_started)
    yield waits


def run(tmp_path: Path, model: str = "fake", **update: object) -> api.RunResult:
    items = [BatchItem(name=f"i{n}", prompt=f"prompt number {n}") for n in range(3)]
    options = RunOptions(engine=EngineConfig(engine="background", model=model), clips_dir=None).model_copy(
        update=update
    )
    return api.upsample(items, options, output=tmp_path / "out.json", executor=LocalExecutor())


def test_the_engine_loads_while_the_items_are_planned(tmp_path: Path, background: list[bool]) -> None:
    result = run(tmp_path)

    assert background == [True, True, True]
    assert SEEN["thread"] == "engine-load"
    assert [r.status for r in result.records] == ["text_only"] * 3  # answered (no video)


def test_nothing_to_do_loads_nothing(tmp_path: Path, background: list[bool]) -> None:
    run(tmp_path)
    STARTED.clear()
    again = run(tmp_path)  # every item done: resumed, no load
    assert again.resumed == 3 and not STARTED.is_set()


def test_a_load_that_fails_in_the_background_fails_the_run_as_before(
    tmp_path: Path, background: list[bool]
) -> None:
    with pytest.raises(ModelLoadError, match="the broken model does not load"):
        run(tmp_path, model="broken")
    fallback = run(tmp_path, model="broken", on_error="original")
    assert {r.status for r in fallback.records} == {"fallback"}


def test_an_engine_still_loading_when_the_cache_closes_is_closed_once_loaded() -> None:
    release = threading.Event()
    made: list[FakeEngine] = []

    def slow(config: EngineConfig) -> FakeEngine:
        release.wait(10)
        made.append(FakeEngine(config))
        return made[-1]

    cache = EngineCache(slow)
    cache.preload(EngineConfig(engine="fake", model="fake"))
    cache.close()
    release.set()
    for _ in range(100):
        if made and made[0].closed:
            break
        threading.Event().wait(0.05)
    assert made and made[0].closed


def test_a_preload_of_other_settings_is_closed_and_the_asked_ones_loaded() -> None:
    made: list[FakeEngine] = []

    def load(config: EngineConfig) -> FakeEngine:
        made.append(FakeEngine(config))
        return made[-1]

    cache = EngineCache(load)
    cache.preload(EngineConfig(engine="fake", model="one"))
    engine = cache.get(EngineConfig(engine="fake", model="two"))
    assert engine.config.model == "two"
    assert [e.config.model for e in made] == ["one", "two"] and made[0].closed and not engine.closed
    cache.close()
