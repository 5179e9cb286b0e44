"""The transformers floor of the hf engine and convert-checkpoint: one line at once below it.

The refusal is exercised for real in CI's Cosmos-image environment (transformers 4.49.0, see
scripts/ci/version_matrix.sh), where ``test_the_installed_transformers_below_the_floor_is_refused``
runs; here it is skipped, and the message is checked with the version lookup swapped.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from cosmos_workflow import versions as requirements
from cosmos_workflow.engines import EngineConfig, load_engine
from cosmos_workflow.errors import ModelLoadError
from cosmos_workflow.versions import TRANSFORMERS_FLOOR, installed_version, release, require_transformers

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
INSTALLED = installed_version("transformers")
BELOW_FLOOR = INSTALLED is not None and release(INSTALLED) < release(TRANSFORMERS_FLOOR)


def test_release_reads_the_numbers() -> None:
    assert release("4.49.0") == (4, 49, 0)
    assert release("5.17.0.dev0") == (5, 17, 0)
    assert release("5.17") < release("5.17.1") < release("5.24.0")


def test_the_floor_is_the_hf_extras_lower_bound() -> None:
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]["hf"]
    (spec,) = [s for s in extras if s.startswith("transformers")]
    lower = re.search(r">=\s*([\d.]+)", spec)
    assert lower is not None, spec
    assert release(lower.group(1)) == release(TRANSFORMERS_FLOOR), (spec, TRANSFORMERS_FLOOR)


def test_an_old_transformers_is_one_line_with_the_version_and_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(requirements, "installed_version", lambda name: "4.49.0")
    with pytest.raises(ModelLoadError) as caught:
        require_transformers("the hf engine")
    message = str(caught.value)
    assert "\n" not in message
    assert f"the hf engine needs transformers>={TRANSFORMERS_FLOOR}" in message
    assert "has transformers 4.49.0" in message and "--engine vllm" in message


def test_a_missing_transformers_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requirements, "installed_version", lambda name: None)
    with pytest.raises(ModelLoadError, match=r"not installed; run: pip install 'cosmos-workflow\[hf\]'"):
        require_transformers("convert-checkpoint")


@pytest.mark.skipif(
    INSTALLED is None or BELOW_FLOOR, reason=f"transformers {INSTALLED} is below the floor here"
)
def test_the_installed_transformers_is_accepted() -> None:
    require_transformers("the hf engine")


@pytest.mark.skipif(
    not BELOW_FLOOR, reason="runs where transformers is older than the floor: CI's Cosmos-image environment"
)
def test_the_installed_transformers_below_the_floor_is_refused(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError) as caught:
        load_engine(EngineConfig(engine="hf", model=str(checkpoint)))
    assert f"has transformers {INSTALLED}" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert "transformers" not in sys.modules, "refused before transformers was imported"
