"""One loaded engine kept between batches, for ``offload_prompt_upsampler = False``.

A long-lived process (a notebook, a DCC session) that upsamples batch after batch with the same
settings should pay the model load once. The cache holds at most one engine, for the
:class:`EngineConfig` it was loaded with: asking for another configuration closes the kept engine
first, so two models never share the GPU. ``close()`` frees it; the owner (the local executor, and
above it the orchestrator) calls it.

:meth:`EngineCache.preload` starts a load in the background, so that the run's other work before
the first batch (probing and planning every item) goes on beside it; :meth:`EngineCache.get` then
waits for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future

from cosmos_workflow.engines import Engine, EngineConfig, load_engine
from cosmos_workflow.lifetime import Closes


class EngineCache(Closes):
    """At most one loaded engine, keyed by its configuration; loads go through ``loader``."""

    def __init__(self, loader: Callable[[EngineConfig], Engine] = load_engine) -> None:
        self._loader = loader
        self._config: EngineConfig | None = None
        self._engine: Engine | None = None
        self._pending: tuple[EngineConfig, Future[Engine]] | None = None

    @property
    def engine(self) -> Engine | None:
        """The engine kept now, if any."""
        return self._engine

    def preload(self, config: EngineConfig) -> None:
        """Start loading ``config``'s engine in a background thread (unless it is kept already or
        a load is under way); :meth:`get` waits for it and raises what the load raised."""
        if self._pending is not None or (self._engine is not None and self._config == config):
            return
        self.close()
        future: Future[Engine] = Future()

        def load() -> None:
            try:
                future.set_result(self._loader(config))
            except BaseException as exc:  # handed to get(), in the caller's thread
                future.set_exception(exc)

        # a daemon: a run stopped while the model loads exits without waiting for it
        threading.Thread(target=load, name="engine-load", daemon=True).start()
        self._pending = (config, future)

    def get(self, config: EngineConfig) -> Engine:
        """The kept engine when it was loaded with ``config`` (waiting for a load under way), else a
        new one (the old is closed)."""
        if self._pending is not None:
            (loading, future), self._pending = self._pending, None
            engine = future.result()
            if loading == config:
                self._engine, self._config = engine, config
                return engine
            engine.close()
        if self._engine is not None and self._config == config:
            return self._engine
        self.close()
        self._engine = self._loader(config)
        self._config = config
        return self._engine

    def close(self) -> None:
        """Close the kept engine and free its memory (an engine still loading is closed once
        loaded). Safe to call twice."""
        if self._pending is not None:
            (_, future), self._pending = self._pending, None
            future.add_done_callback(_close_loaded)
        engine, self._engine, self._config = self._engine, None, None
        if engine is not None:
            engine.close()


def _close_loaded(future: Future[Engine]) -> None:
    if future.exception() is None:
        future.result().close()
