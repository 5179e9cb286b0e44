"""How the auto engine chooses, with the GPU and vLLM edges simulated (none exist here)."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from cosmos_workflow.engines.auto import choose_engine


def test_no_gpu_means_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))

    assert choose_engine() == ("hf", "no CUDA GPU visible to torch")


def test_a_gpu_without_vllm_means_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail

    name, reason = choose_engine()

    assert name == "hf"
    assert reason.startswith("vllm cannot be imported: ModuleNotFoundError")


def test_a_gpu_with_vllm_means_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))

    assert choose_engine()[0] == "vllm"
