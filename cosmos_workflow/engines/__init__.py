"""Engines by name, imported lazily: importing this module never imports torch or vLLM."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from cosmos_workflow.engines.base import (
    EncodedRequest,
    Engine,
    EngineConfig,
    Generation,
    SamplingParams,
)
from cosmos_workflow.errors import ConfigError

__all__ = [
    "ENGINES",
    "EncodedRequest",
    "Engine",
    "EngineConfig",
    "Generation",
    "SamplingParams",
    "engine_names",
    "load_engine",
]

#: name -> "module:factory". A factory takes an EngineConfig and returns a loaded Engine.
ENGINES: dict[str, str] = {
    "fake": "cosmos_workflow.engines.fake:FakeEngine",
    "hf": "cosmos_workflow.engines.hf:load",
    "vllm": "cosmos_workflow.engines.vllm:load",
    "openai": "cosmos_workflow.engines.openai:load",
    "auto": "cosmos_workflow.engines.auto:load",
}


def engine_names() -> list[str]:
    return sorted(ENGINES)


def _factory(name: str) -> Callable[[EngineConfig], Engine]:
    try:
        target = ENGINES[name]
    except KeyError:
        raise ConfigError(f"unknown engine {name!r}; choose one of: {', '.join(engine_names())}") from None
    module_name, _, attr = target.partition(":")
    factory: Callable[[EngineConfig], Engine] = getattr(importlib.import_module(module_name), attr)
    return factory


def load_engine(config: EngineConfig) -> Engine:
    """Load the engine named by ``config.engine``; use the result as a context manager."""
    return _factory(config.engine)(config)
