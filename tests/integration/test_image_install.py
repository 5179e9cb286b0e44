"""Installing cosmos-workflow into the Cosmos-Transfer1 image changes nothing the image pins.

A virtual environment stands in for the image: it holds the image's pins (transformers 4.49.0,
numpy 2.2.6, av 14.2.0, mistral-common 1.5.4, pydantic 2.10.6, ...: scripts/ci/cosmos-image-pins.txt,
each with its source), built by scripts/ci/image_venv.sh on this machine's Python (3.11 in CI; the
image's is 3.12, so the resolution is also checked for 3.12). Then, with constraints taken from that
environment's own freeze, as scripts/upsample_prompt.sh does inside the container:

- ``pip install --dry-run --report`` of cosmos-workflow changes no installed package's version;
- the same install resolved for Python 3.12 keeps every pin;
- the script's in-container install really runs there, then a batch with the fake engine: every
  package present before is still there at the same version afterwards.

These need PyPI: outside CI they skip when it cannot be reached; in CI (COSMOS_CI=1) they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
PINS = REPO / "scripts" / "ci" / "cosmos-image-pins.txt"
NOT_COPIED = (".git", ".venv", ".cache", "__pycache__", "*.egg-info", "build", "dist", "out", ".*_cache")

pytestmark = pytest.mark.slow


def _pins() -> dict[str, str]:
    pins = {}
    for line in PINS.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            name, _, version = requirement.partition("==")
            pins[_normal(name)] = version
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _freeze(python: Path) -> dict[str, str]:
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True
    )
    return {_normal(p["name"]): p["version"] for p in json.loads(listed.stdout)}


def _pip(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return subprocess.run(
        [str(python), "-m", "pip", *args], capture_output=True, text=True, timeout=900, cwd=cwd, env=env
    )


def _require_pypi() -> None:
    try:
        httpx.head("https://pypi.org/simple/pip/", timeout=20, follow_redirects=True)
    except httpx.TransportError as exc:
        if os.environ.get("COSMOS_CI") == "1":
            raise
        pytest.skip(f"PyPI unreachable ({exc}): cannot build the image's environment")


@pytest.fixture(scope="module")
def image_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a fresh environment holding the image's pins (and nothing of ours): a copy of
    one built once under .cache/ci (rebuilt by image_venv.sh when the pins or the interpreter
    change), since the tests install into it."""
    _require_pypi()
    pristine = REPO / ".cache" / "ci" / "image-pristine"
    built = subprocess.run(
        ["bash", str(REPO / "scripts" / "ci" / "image_venv.sh"), str(pristine)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    folder = tmp_path_factory.mktemp("image") / "venv"
    shutil.copytree(pristine, folder, symlinks=True)  # a venv finds its packages from where it lies
    python = folder / "bin" / "python"
    installed = _freeze(python)
    assert {name: installed.get(name) for name in _pins()} == _pins(), "the image's pins are installed"
    assert "cosmos-workflow" not in installed
    return python


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of this checkout (pip builds in the source folder; the checkout stays clean)."""
    target = tmp_path_factory.mktemp("source") / "cosmos-workflow"
    shutil.copytree(REPO, target, ignore=shutil.ignore_patterns(*NOT_COPIED))
    return target


def _constraints(python: Path, folder: Path) -> Path:
    """The environment's own freeze as a constraints file, as the docker path makes it."""
    frozen = _pip(python, "list", "--format=freeze", "--exclude", "cosmos-workflow", cwd=folder)
    assert frozen.returncode == 0, frozen.stderr
    path = folder / "constraints.txt"
    path.write_text(frozen.stdout)
    return path


def _installs(report: Path) -> dict[str, str]:
    data = json.loads(report.read_text())
    return {_normal(item["metadata"]["name"]): item["metadata"]["version"] for item in data["install"]}


def test_the_dry_run_install_changes_no_installed_package(
    image_python: Path, source: Path, tmp_path: Path
) -> None:
    before = _freeze(image_python)
    report = tmp_path / "report.json"
    args = ["install", "--dry-run", "--quiet", "--report", str(report)]
    run = _pip(
        image_python,
        *args,
        "--constraint",
        str(_constraints(image_python, tmp_path)),
        str(source),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    installs = _installs(report)
    changed = {
        name: (before[name], version)
        for name, version in installs.items()
        if before.get(name, version) != version
    }
    assert changed == {}, f"the install would change {changed}"
    assert "cosmos-workflow" in installs
    assert not {"torch", "transformers", "vllm", "numpy", "pydantic", "mistral-common"} & set(installs)


def test_the_install_resolved_for_the_images_python_312_keeps_every_pin(
    image_python: Path, source: Path, tmp_path: Path
) -> None:
    built = _pip(
        image_python,
        "wheel",
        "--no-deps",
        "--quiet",
        "-w",
        str(tmp_path / "wheel"),
        str(source),
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "wheel").glob("cosmos_workflow-*.whl")
    report = tmp_path / "report.json"
    run = _pip(
        image_python,
        "install",
        "--dry-run",
        "--quiet",
        "--target",  # pip wants a target for another Python's tags; a dry run writes nothing there
        str(tmp_path / "target"),
        "--python-version",
        "3.12",
        "--only-binary=:all:",
        "--report",
        str(report),
        "--constraint",
        str(_constraints(image_python, tmp_path)),
        str(wheel),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    installs = _installs(report)
    resolved = {name: installs.get(name) for name in _pins() if name in installs}
    assert resolved == {name: _pins()[name] for name in resolved}
    assert {"numpy", "pydantic", "av", "mistral-common", "pillow"} <= set(resolved), (
        "the core's pinned dependencies"
    )


def test_the_docker_paths_install_keeps_the_image_and_runs(
    image_python: Path, source: Path, tmp_path: Path
) -> None:
    before = _freeze(image_python)
    prompts = tmp_path / "prompts.json"
    prompts.write_text(
        json.dumps([{"name": f"shot{n}", "prompt": f"a tram at dusk, take {n}"} for n in range(2)])
    )
    output = tmp_path / "out" / "upsampled.json"
    env = os.environ | {
        "PYTHON": str(image_python),
        "IN_CONTAINER": "1",
        "DOCKER": "0",
        "ENGINE": "fake",
        "COSMOS_WORKFLOW_PIP": str(source),
        "COSMOS_WORKFLOW_CACHE": str(tmp_path / "cache"),
    }
    run = subprocess.run(
        ["bash", str(REPO / "scripts" / "upsample_prompt.sh"), str(prompts), str(output), "--", "--no-clips"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,  # not the checkout: `import cosmos_workflow` must come from the install
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "the image's packages kept as they are" in run.stderr
    after = _freeze(image_python)
    assert {name: after.get(name) for name in before} == before, "a package of the image changed"
    assert "cosmos-workflow" in after
    records = json.loads(output.read_text())
    assert [r["name"] for r in records] == ["shot0", "shot1"] and {r["engine"] for r in records} == {"fake"}
