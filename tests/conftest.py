"""Shared fixtures: generated videos (tests/videos.py), an isolated cache, the tiny model; and how
tests are shared between pytest-xdist's workers (``scripts/check.sh``: ``-n logical --dist loadgroup``)."""

from __future__ import annotations

import fcntl
import importlib.util
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from cosmos_workflow.engines import EncodedRequest
from tests.videos import bad_videos, small_video, video_factory  # noqa: F401  (fixtures)

# the remote fixtures need the remote extra (paramiko); scripts/ci/version_matrix.sh's environments
# hold the core dependencies only and run no remote test
if importlib.util.find_spec("paramiko") is not None:
    from tests.sshd import docker_image, known_hosts, remote_config, remote_python, sshd  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    """Each pytest-xdist worker's processes (the tests, the CLI runs and Ray workers they start,
    which inherit the variable) use its share of the cores for OpenMP: torch's default of one
    thread per core in every worker oversubscribes the machine, and OpenMP's idle threads spin
    (the tiny model's tests ran twice as long with 2 workers on 2 cores). Set before any test
    module imports torch; an ``OMP_NUM_THREADS`` already set is kept; one process changes nothing."""
    threads = omp_threads(os.environ.get("PYTEST_XDIST_WORKER_COUNT"), os.cpu_count())
    if threads is not None:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def omp_threads(workers: str | None, cpus: int | None) -> int | None:
    """OpenMP threads per worker: the cores divided among the workers (at least 1); None outside xdist."""
    if not workers:
        return None
    return max(1, (cpus or 1) // int(workers))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Which tests share a pytest-xdist worker under ``--dist loadgroup``; the rest are spread test
    by test. Without xdist the marks change nothing. A test already in an ``xdist_group`` keeps it."""
    for item in items:
        group = _shared_resource(item)
        if item.get_closest_marker("xdist_group") is None and group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


def _shared_resource(item: pytest.Item) -> str | None:
    """The tests that start containers take turns on the one Docker daemon (one of them checks
    that no ``cosmos-workflow-*`` container is left); the tests that run jobs in the loopback host's
    one venv take turns too (a job there reinstalls our wheel when it changed); a module's tests
    that use a module-scoped fixture (a browser, a built environment, a loaded model) run on one
    worker, so it is made once."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    if "docker_image" in info.names_closure:
        return "docker"
    if "remote_python" in info.names_closure:
        return "remote-venv"  # one venv on the loopback host: jobs that reinstall our wheel take turns
    if any(d.scope == "module" for defs in info.name2fixturedefs.values() for d in defs):
        return item.nodeid.split("::")[0]
    return None


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache for the whole run, so the tiny model (and the remote tests' wheel) is built once and
    never in ~/.cache. Under pytest-xdist the workers share it: it sits beside their own folders."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "cosmos-cache"
    root.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COSMOS_WORKFLOW_CACHE", str(root))
        yield root


@pytest.fixture(scope="session")
def tiny_model(cache_dir: Path) -> Path:
    """The tiny random Pixtral checkpoint (built once per run: a second worker waits for the first)."""
    from cosmos_workflow.engines.tiny import tiny_model_dir

    with (cache_dir / ".tiny-model.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return tiny_model_dir()


@pytest.fixture(scope="module")
def tiny_encode(tiny_model: Path) -> Callable[[str, str, Sequence[Any]], EncodedRequest]:
    """Encodes a request (key, prompt, frames as RGB uint8 arrays) for the tiny model as the
    runner would send it."""
    from cosmos_workflow.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tiny_model / "tekken.json")

    def encode(key: str, prompt: str, frames: Sequence[Any]) -> EncodedRequest:
        encoding = tokenizer.encode(prompt, frames)
        return EncodedRequest(
            key=key,
            prompt=prompt,
            token_ids=encoding.token_ids,
            frames=list(frames),
            pixel_values=encoding.pixel_values,
        )

    return encode


@pytest.fixture(scope="module")
def requests(tiny_encode: Callable[[str, str, Sequence[Any]], EncodedRequest]) -> list[EncodedRequest]:
    """Requests as the runner would send them to the tiny model: two frames of one size, one
    frame of another, and text only (a mixed batch)."""
    import numpy as np

    rng = np.random.default_rng(0)

    def encode(key: str, prompt: str, shapes: list[tuple[int, int]]) -> EncodedRequest:
        return tiny_encode(key, prompt, [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes])

    return [
        encode("two-frames", "a red car turns left at the crossing", [(64, 96), (64, 96)]),
        encode("tall-frame", "a person walks a dog along the river", [(128, 48)]),
        encode("text-only", "a quiet street at night", []),
    ]


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A private copy of the shipped examples (prompts.json + videos/)."""
    import shutil

    source = Path(__file__).parent.parent / "examples"
    target = tmp_path / "examples"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.py"))
    return target / "prompts.json"
