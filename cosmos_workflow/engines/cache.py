"""One loaded engine kept between batches, for ``offload_prompt_upsampler = False``.

A long-lived process (a notebook, a DCC session) that upsamples batch after batch with the same
settings should pay the model load once. The cache holds at most one engine, for the
:class:`EngineConfig` it was loaded with: asking for another configuration closes the kept engine
first, so two models never share the GPU. ``close()`` frees it; the owner (the local executor, and
above it the orchestrator) calls it.
"""

from __future__ import annotations

from collections.abc import Callable

from cosmos_workflow.engines import Engine, EngineConfig, load_engine
from cosmos_workflow.lifetime import Closes


class EngineCache(Closes):
    """At most one loaded engine, keyed by its configuration; loads go through ``loader``."""

    def __init__(self, loader: Callable[[EngineConfig], Engine] = load_engine) -> None:
        self._loader = loader
        self._config: EngineConfig | None = None
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine | None:
        """The engine kept now, if any."""
        return self._engine

    def get(self, config: EngineConfig) -> Engine:
        """The kept engine when it was loaded with ``config``, else a new one (the old is closed)."""
        if self._engine is not None and self._config == config:
            return self._engine
        self.close()
        self._engine = self._loader(config)
        self._config = config
        return self._engine

    def close(self) -> None:
        """Close the kept engine and free its memory. Safe to call twice."""
        engine, self._engine, self._config = self._engine, None, None
        if engine is not None:
            engine.close()
