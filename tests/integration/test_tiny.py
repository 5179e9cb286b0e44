"""The tiny random Pixtral checkpoint: built once, deterministic, reused, safe to build concurrently."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cosmos_workflow.engines import tiny
from cosmos_workflow.engines.tiny import CACHE_ENV, TINY_MODEL_NAME, cache_root, tiny_model_dir
from cosmos_workflow.tokenizer import bundled_tokenizer_path, load_tokenizer

REPO = Path(__file__).resolve().parents[2]
BUILD = "from cosmos_workflow.engines.tiny import tiny_model_dir; print(tiny_model_dir())"


@pytest.fixture(scope="module")
def tiny_root(cache_dir: Path, tiny_model: Path) -> Path:
    """The session cache folder (tests/conftest.py), with the tiny model built in it."""
    return cache_dir


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_checkpoint_carries_its_config_weights_and_tokenizer(tiny_root: Path) -> None:
    folder = tiny_model_dir(tiny_root)

    assert folder == tiny_root / TINY_MODEL_NAME
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llava"
    assert config["vision_config"]["model_type"] == "pixtral"
    assert config["image_token_index"] == 10
    assert (folder / "model.safetensors").stat().st_size > 1_000_000
    assert _digest(folder / "tekken.json") == _digest(bundled_tokenizer_path())
    assert load_tokenizer(folder / "tekken.json").eos_id == 2
    assert not [p for p in tiny_root.iterdir() if p.name.startswith(f".{TINY_MODEL_NAME}")]  # no staging left


def test_the_cache_is_reused(tiny_root: Path) -> None:
    weights = tiny_root / TINY_MODEL_NAME / "model.safetensors"
    before = weights.stat().st_mtime_ns

    assert tiny_model_dir(tiny_root) == weights.parent
    assert weights.stat().st_mtime_ns == before


def test_builds_are_deterministic(tiny_root: Path, tmp_path: Path) -> None:
    again = tiny_model_dir(tmp_path)

    assert _digest(again / "model.safetensors") == _digest(tiny_root / TINY_MODEL_NAME / "model.safetensors")


def test_the_cache_folder_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "elsewhere"))

    assert cache_root() == tmp_path / "elsewhere"


def test_the_default_cache_is_under_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))

    assert cache_root() == tmp_path / ".cache" / "cosmos-workflow"


def test_an_incomplete_folder_is_rebuilt(tmp_path: Path) -> None:
    broken = tmp_path / TINY_MODEL_NAME
    broken.mkdir()
    (broken / "config.json").write_text("{}")

    folder = tiny_model_dir(tmp_path)

    assert (folder / "model.safetensors").is_file()
    assert json.loads((folder / "config.json").read_text())["model_type"] == "llava"
    assert [p.name for p in tmp_path.iterdir()] == [TINY_MODEL_NAME]


@pytest.mark.slow
def test_concurrent_builders_agree_on_one_complete_checkpoint(tiny_root: Path, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", CACHE_ENV: str(tmp_path), "PYTHONPATH": str(REPO)}
    builders = [
        subprocess.Popen([sys.executable, "-c", BUILD], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    printed = {builder.communicate(timeout=300)[0].strip() for builder in builders}

    assert [builder.returncode for builder in builders] == [0, 0, 0]
    assert printed == {str(tmp_path / TINY_MODEL_NAME)}
    assert [p.name for p in tmp_path.iterdir()] == [TINY_MODEL_NAME]
    assert _digest(tmp_path / TINY_MODEL_NAME / "model.safetensors") == _digest(
        tiny_root / TINY_MODEL_NAME / "model.safetensors"
    )


def test_a_builder_that_loses_the_race_uses_the_winners_copy(
    tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Force the interleaving: another builder publishes while this one is still building."""
    real_build = tiny._build
    calls: list[Path] = []

    def build_while_another_publishes(folder: Path) -> None:
        calls.append(folder)
        real_build(folder)
        if len(calls) == 1:
            tiny_model_dir(tmp_path)  # the rival: builds and publishes first

    monkeypatch.setattr(tiny, "_build", build_while_another_publishes)

    folder = tiny_model_dir(tmp_path)

    assert len(calls) == 2
    assert folder == tmp_path / TINY_MODEL_NAME
    assert [p.name for p in tmp_path.iterdir()] == [TINY_MODEL_NAME]
    assert _digest(folder / "model.safetensors") == _digest(tiny_root / TINY_MODEL_NAME / "model.safetensors")
