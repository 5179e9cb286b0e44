"""Shared fixtures: generated videos (tests/videos.py), an isolated cache, the tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.videos import bad_videos, small_video, video_factory  # noqa: F401  (fixtures)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache for the whole session, so the tiny model is built once and never in ~/.cache."""
    root = tmp_path_factory.mktemp("cosmos-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COSMOS_WORKFLOW_CACHE", str(root))
        yield root


@pytest.fixture(scope="session")
def tiny_model(cache_dir: Path) -> Path:
    """The tiny random Pixtral checkpoint (built once per session)."""
    from cosmos_workflow.engines.tiny import tiny_model_dir

    return tiny_model_dir()


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A private copy of the shipped examples (prompts.json + videos/)."""
    import shutil

    source = Path(__file__).parent.parent / "examples"
    target = tmp_path / "examples"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.py"))
    return target / "prompts.json"
