"""The auto engine on this machine (no GPU, no vLLM) falls back to transformers."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cosmos_workflow.engines import load_engine
from cosmos_workflow.engines.base import EngineConfig
from cosmos_workflow.engines.hf import HFEngine


def test_auto_uses_transformers_without_a_gpu(tiny_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    checkpoint = tiny_model

    with caplog.at_level(logging.INFO, logger="cosmos_workflow"):
        engine = load_engine(EngineConfig(engine="auto", model=str(checkpoint)))
    with engine:
        assert isinstance(engine, HFEngine)
        assert engine.config.engine == "hf"
        assert engine.config.model == str(checkpoint)

    assert "engine auto: using hf (no CUDA GPU visible to torch)" in caplog.text
