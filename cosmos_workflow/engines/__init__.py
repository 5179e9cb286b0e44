"""Engines by name, imported lazily: importing this module never imports torch or vLLM.

What an engine can do (a GPU needed, Ray actors, a default model) is said once, by its class's
attributes (:class:`Engine`); :func:`engine_class` reads them for a name without loading a model.
"""

from __future__ import annotations

import importlib
import typing
from collections.abc import Callable, Mapping

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
    "engine_class",
    "engine_list",
    "engine_names",
    "load_engine",
]

#: name -> "module:factory". A factory takes an EngineConfig and returns a loaded Engine: an Engine
#: class, or a function whose return annotation names the class (what :func:`engine_class` reads).
#: In the order the help text lists them.
ENGINES: dict[str, str] = {
    "auto": "cosmos_workflow.engines.auto:load",
    "hf": "cosmos_workflow.engines.hf:load",
    "vllm": "cosmos_workflow.engines.vllm:load",
    "openai": "cosmos_workflow.engines.openai:load",
    "fake": "cosmos_workflow.engines.fake:FakeEngine",
}


def engine_names() -> list[str]:
    return sorted(ENGINES)


def engine_list(notes: Mapping[str, str] | None = None, *, last: str = " or ") -> str:
    """The engines for help text, in the registry's order (``auto, hf, vllm, openai or fake``),
    each followed by its note in parentheses, if any."""
    named = [f"{name} ({notes[name]})" if notes and name in notes else name for name in ENGINES]
    return f"{', '.join(named[:-1])}{last}{named[-1]}" if len(named) > 1 else "".join(named)


def engine_class(name: str) -> type[Engine]:
    """The class of engine ``name``, whose attributes say what it can do, read without loading a
    model (the engine modules import torch or vLLM only when they load one). An unknown name (refused
    when loaded) and a factory whose return type is not an Engine class answer as :class:`Engine`."""
    target = ENGINES.get(name)
    if target is None:
        return Engine
    factory = _target(target)
    if isinstance(factory, type):
        return factory if issubclass(factory, Engine) else Engine
    try:
        returned = typing.get_type_hints(factory).get("return")
    except (NameError, TypeError):  # an annotation naming what only type checkers import
        return Engine
    return returned if isinstance(returned, type) and issubclass(returned, Engine) else Engine


def _factory(name: str) -> Callable[[EngineConfig], Engine]:
    try:
        target = ENGINES[name]
    except KeyError:
        raise ConfigError(f"unknown engine {name!r}; choose one of: {', '.join(engine_names())}") from None
    return _target(target)


def _target(target: str) -> Callable[[EngineConfig], Engine]:
    module_name, _, attr = target.partition(":")
    factory: Callable[[EngineConfig], Engine] = getattr(importlib.import_module(module_name), attr)
    return factory


def load_engine(config: EngineConfig) -> Engine:
    """Load the engine named by ``config.engine``; use the result as a context manager."""
    return _factory(config.engine)(config)
