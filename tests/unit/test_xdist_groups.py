"""How tests/conftest.py shares tests between pytest-xdist's workers (``--dist loadgroup``): the
marks it puts on this module's own tests at collection, and the OpenMP threads each worker gets."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = Path(__file__).resolve().relative_to(ROOT).as_posix()


@pytest.fixture(scope="module")
def made_once() -> list[str]:
    return ["a module-scoped fixture"]


def group(request: pytest.FixtureRequest) -> tuple[object, ...] | None:
    mark = request.node.get_closest_marker("xdist_group")
    return None if mark is None else mark.args


def test_a_test_using_a_module_fixture_runs_with_its_module(
    made_once: list[str], request: pytest.FixtureRequest
) -> None:
    assert group(request) == (MODULE,)


def test_a_test_using_only_function_fixtures_is_spread(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    assert group(request) is None


@pytest.mark.xdist_group("shared-resource")
def test_a_group_given_by_the_test_is_kept(made_once: list[str], request: pytest.FixtureRequest) -> None:
    assert group(request) == ("shared-resource",)


def test_each_worker_gets_its_share_of_the_cores_for_openmp() -> None:
    from tests.conftest import omp_threads

    assert omp_threads("2", 2) == 1  # CI: -n logical on 2 cores
    assert omp_threads("4", 16) == 4
    assert omp_threads("3", 2) == 1  # never 0
    assert omp_threads(None, 16) is None and omp_threads("", 16) is None  # one process: torch's default
