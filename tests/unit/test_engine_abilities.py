"""What an engine can do is read from its class, by name, without importing torch or vLLM."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cosmos_workflow import engines
from cosmos_workflow.config import UpsampleSettings, resolve_model
from cosmos_workflow.engines import ENGINES, Engine, EngineConfig, engine_class, engine_list
from cosmos_workflow.engines.fake import FakeEngine
from cosmos_workflow.engines.hf import HFBase, HFEngine
from cosmos_workflow.engines.hf.qwen import HFQwenEngine
from cosmos_workflow.engines.openai import OpenAIEngine
from cosmos_workflow.engines.vllm import VLLMEngine
from cosmos_workflow.errors import UsageError
from cosmos_workflow.options import check_ray_engine


def served(config: EngineConfig) -> OpenAIEngine:
    """A factory registered by a test: its return annotation names the class."""
    return OpenAIEngine(config)


def test_each_name_answers_with_the_class_its_factory_loads() -> None:
    assert engine_class("hf") is HFBase  # the checkpoint picks the Pixtral or the Qwen2.5-VL class
    assert issubclass(HFEngine, HFBase) and issubclass(HFQwenEngine, HFBase)
    assert engine_class("vllm") is VLLMEngine
    assert engine_class("openai") is OpenAIEngine
    assert engine_class("fake") is FakeEngine
    assert engine_class("auto") is Engine  # it loads vLLM or hf: the base class's answers
    assert engine_class("no-such-engine") is Engine  # refused when loaded, not when asked


def test_a_registered_function_is_asked_through_its_annotation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ENGINES, "served", f"{__name__}:served")

    assert engine_class("served") is OpenAIEngine


#: the shipped engines' abilities: (needs a GPU, runs on Ray)
ABILITIES = {
    "auto": (True, True),
    "hf": (True, True),
    "vllm": (True, True),
    "openai": (False, False),
    "fake": (False, True),
}


def test_the_abilities_of_the_engines() -> None:
    """Asked of each shipped engine's class; an engine registered later says its own."""
    asked = {
        name: (engine_class(name).needs_gpu, engine_class(name).ray_refusal is None) for name in ABILITIES
    }

    assert asked == ABILITIES


def test_asking_imports_neither_torch_nor_vllm() -> None:
    code = (
        "import sys\n"
        "from cosmos_workflow.engines import ENGINES, engine_class\n"
        "[engine_class(name).needs_gpu for name in ENGINES]\n"
        "print(sorted(m for m in ('torch', 'vllm', 'transformers') if m in sys.modules))\n"
    )
    command = [sys.executable, "-c", code]
    run = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)

    assert run.stdout.strip() == "[]"


def test_the_ray_refusal_and_the_default_model_come_from_the_class() -> None:
    with pytest.raises(UsageError, match=r"^--executor ray does not take --engine openai: the server"):
        check_ray_engine("openai")
    check_ray_engine("hf")
    assert resolve_model(UpsampleSettings(engine="fake")) == "fake"


def test_the_help_lists_the_registered_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    assert engine_list().replace(" or ", ", ").split(", ") == list(ENGINES)
    registry = dict.fromkeys(("auto", "hf", "vllm", "openai", "fake"), "module:factory")
    monkeypatch.setattr(engines, "ENGINES", registry)
    assert engine_list() == "auto, hf, vllm, openai or fake"
    assert engine_list({"auto": "either"}, last=", or ") == "auto (either), hf, vllm, openai, or fake"
