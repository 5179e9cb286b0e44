"""The wheel ``--remote`` ships: built from a checkout, and packed again from a copy that pip
installed from a wheel (no checkout there), both carrying the same package and the Docker wrapper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import cosmos_workflow
from cosmos_workflow.executors.remote import code

pytestmark = pytest.mark.slow

PACKAGE = Path(cosmos_workflow.__file__).resolve().parent
#: dist-info files pip writes for one installation; never part of a wheel's own list
INSTALL_ONLY = {"INSTALLER", "REQUESTED", "direct_url.json"}


def pip_install(wheel: Path, target: Path) -> None:
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target"]
    subprocess.run([*command, str(target), str(wheel)], check=True, capture_output=True, text=True)


def names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name for name in archive.namelist() if not name.endswith("/RECORD")}


def build_where_installed(site: Path, cache: Path, cwd: Path) -> dict[str, str | None]:
    """``build_wheel`` run by a process that imports the copy under ``site``."""
    program = (
        "import json, sys; from pathlib import Path; import cosmos_workflow;"
        "from cosmos_workflow.executors.remote import code;"
        "root = code.source_checkout(); wheel = code.build_wheel(Path(sys.argv[1]));"
        "print(json.dumps({'imported': cosmos_workflow.__file__, 'checkout': root and str(root),"
        " 'wheel': str(wheel.path), 'hash': wheel.code_hash}))"
    )
    env = os.environ | {"PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", program, str(cache)], capture_output=True, text=True, cwd=cwd, env=env
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_checkout_wheel_carries_the_package_and_the_wrapper_and_is_cached(tmp_path: Path) -> None:
    wheel = code.build_wheel(tmp_path / "cache")
    assert wheel.code_hash == code.tree_hash(PACKAGE)
    assert wheel.path.parent == tmp_path / "cache" / "wheels" / wheel.code_hash[:16]
    inside = names(wheel.path)
    assert "cosmos_workflow/scripts/upsample_prompt.sh" in inside
    assert "cosmos_workflow/executors/remote/code.py" in inside
    assert not any("__pycache__" in name for name in inside)
    assert code.build_wheel(tmp_path / "cache") == wheel  # the same content: built once
    assert code.SCRIPT.read_bytes() == (PACKAGE.parent / "scripts" / "upsample_prompt.sh").read_bytes()


def test_an_installed_copy_is_packed_again_into_the_same_wheel(tmp_path: Path) -> None:
    original = code.build_wheel(tmp_path / "cache")
    site = tmp_path / "site"
    pip_install(original.path, site)
    (site / "cosmos_workflow" / "__pycache__").mkdir(exist_ok=True)  # what running it leaves behind
    (site / "cosmos_workflow" / "__pycache__" / "api.cpython-311.pyc").write_bytes(b"stale")

    got = build_where_installed(site, tmp_path / "cache-installed", cwd=tmp_path)
    assert got["imported"] == str(site / "cosmos_workflow" / "__init__.py")
    assert got["checkout"] is None  # no pyproject.toml beside it: the installed path was taken
    assert got["hash"] == original.code_hash
    repacked = Path(str(got["wheel"]))
    assert repacked.name == original.path.name
    assert names(repacked) == names(original.path)  # the console script comes from entry_points.txt
    assert not INSTALL_ONLY & {Path(name).name for name in names(repacked)}

    again = tmp_path / "site-again"
    pip_install(repacked, again)
    assert code.tree_hash(again / "cosmos_workflow") == original.code_hash
    assert (again / "bin" / "cosmos-workflow").is_file()
