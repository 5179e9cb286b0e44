"""Engines that tests register in the real engine registry (``ENGINES[name] = "tests.probe_engines:..."``),
so loads go through :func:`cosmos_workflow.engines.load_engine` like any other engine's.

``counted`` and ``counted_hf`` record every load (the fake engine, and the real transformers engine
on the tiny model); ``envprobe`` is the fake engine plus a file, written when it loads, of the
environment and device it was started with (for engines loaded in other processes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cosmos_workflow.engines import Engine, EngineConfig
from cosmos_workflow.engines.fake import FakeEngine

#: every engine loaded through ``counted`` / ``counted_hf``, in load order
LOADED: list[Engine] = []
PROBE_DIR_ENV = "COSMOS_TEST_PROBE_DIR"


def counted(config: EngineConfig) -> Engine:
    engine = FakeEngine(config)
    LOADED.append(engine)
    return engine


def counted_hf(config: EngineConfig) -> Engine:
    from cosmos_workflow.engines.hf import load

    engine = load(config.model_copy(update={"engine": "hf"}))
    LOADED.append(engine)
    return engine


def envprobe(config: EngineConfig) -> Engine:
    seen = {"env": dict(os.environ), "device": config.device, "model": config.model}
    Path(os.environ[PROBE_DIR_ENV], f"probe-{os.getpid()}.json").write_text(json.dumps(seen))
    return FakeEngine(config)


#: written as ``sitecustomize.py`` into a folder on the PYTHONPATH of processes a test starts
SITECUSTOMIZE = """
from cosmos_workflow.engines import ENGINES

ENGINES["envprobe"] = "tests.probe_engines:envprobe"
"""
