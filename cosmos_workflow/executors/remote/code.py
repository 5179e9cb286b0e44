"""The code on the host: exactly the cosmos-workflow running here, shipped as a wheel.

The wheel is built from this checkout (``pip wheel --no-deps``, from a copy so the checkout stays
clean) or, where cosmos-workflow was installed from a wheel, packed again from its installed files
(``wheel pack``), and cached by the hash of the package's files. On the host it lives in
``remote_dir/code/<hash>/``. Venv mode installs it into the configured interpreter's environment
without moving any package that environment has (torch, transformers, vLLM, ...: pip is
constrained to its own ``pip list --format=freeze``): its missing dependencies first, then the
wheel itself (``--no-deps --force-reinstall``), under a lock per interpreter so that runs installing
into one environment at once take turns (:data:`HOST_INSTALL_SCRIPT`). The installed package's files
are then hashed on the host and must equal this one's. Docker mode does the same inside the
throwaway container (``scripts/upsample_prompt.sh``, ``COSMOS_WORKFLOW_PIP``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cosmos_workflow
from cosmos_workflow.errors import ConfigError, RemoteError
from cosmos_workflow.executors.remote.ssh import Connection
from cosmos_workflow.executors.remote.transfer import RemoteDir

log = logging.getLogger("cosmos_workflow")


def tree_hash(package: Path) -> str:
    """sha256 over the package's files (relative path and content), caches excluded."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            digest.update(path.relative_to(package).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def installed_hash_here() -> str | None:
    """:func:`tree_hash` of the cosmos_workflow this interpreter imports (None: none), without
    importing it; the host's scripts run this on the host."""
    importlib.invalidate_caches()
    spec = importlib.util.find_spec("cosmos_workflow")
    return None if spec is None or spec.origin is None else tree_hash(Path(spec.origin).parent)


#: the host scripts' first lines: their imports and the two functions above (program text from
#: this module, never user data)
_HOST_PREAMBLE = (
    "from __future__ import annotations\n"
    "import fcntl, hashlib, importlib, importlib.util, json, os, subprocess, sys\nfrom pathlib import Path\n"
    + inspect.getsource(tree_hash)
    + inspect.getsource(installed_hash_here)
)

#: run by the host's interpreter: the hash of the cosmos_workflow it imports (exit 3: none)
HOST_HASH_SCRIPT = (
    _HOST_PREAMBLE + "found = installed_hash_here()\nsys.exit(3) if found is None else print(found)\n"
)


@dataclass(frozen=True)
class Wheel:
    """The wheel of this cosmos-workflow and the hash of its package files."""

    path: Path
    code_hash: str

    @property
    def remote_dir(self) -> str:
        """Its folder under remote_dir."""
        return f"code/{self.code_hash[:16]}"

    @property
    def remote_path(self) -> str:
        return f"{self.remote_dir}/{self.path.name}"


#: the package running here
PACKAGE = Path(cosmos_workflow.__file__).resolve().parent
#: the Docker-mode wrapper, package data (``scripts/upsample_prompt.sh`` in a checkout links to it)
SCRIPT = PACKAGE / "scripts" / "upsample_prompt.sh"

#: dist-info files that belong to one installation, not to the wheel (``RECORD`` is written again)
_INSTALL_ONLY = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def source_checkout() -> Path | None:
    """The checkout this cosmos-workflow runs from, or None where it was installed from a wheel."""
    return PACKAGE.parent if (PACKAGE.parent / "pyproject.toml").is_file() else None


def build_wheel(cache: Path) -> Wheel:
    """The wheel of this cosmos-workflow, built once per content (``cache/wheels/<hash>/``)."""
    code_hash = tree_hash(PACKAGE)
    target = cache / "wheels" / code_hash[:16]
    built = sorted(target.glob("cosmos_workflow-*.whl"))
    if built:
        return Wheel(built[0], code_hash)
    root = source_checkout()
    with tempfile.TemporaryDirectory(prefix="cosmos-wheel-") as tmp:
        source, out = Path(tmp) / "src", Path(tmp) / "out"
        if root is not None:
            _copy_source(root, source)
            _build(_pip_wheel(source, out))
        else:
            _copy_installed(source)
            _build(_wheel_pack(source, out))
        [wheel] = sorted(out.glob("cosmos_workflow-*.whl"))
        target.mkdir(parents=True, exist_ok=True)
        shutil.move(wheel, target / wheel.name)
    return Wheel(target / wheel.name, code_hash)


def _copy_installed(unpacked: Path) -> None:
    """The installed distribution's files as an unpacked wheel: its package and its dist-info."""
    beside = str(PACKAGE.parent)  # the copy imported, not another one
    found = list(importlib.metadata.distributions(name="cosmos-workflow", path=[beside]))
    if len(found) != 1:
        raise ConfigError(
            f"--remote ships this cosmos-workflow to the host as a wheel, and {beside} holds neither its "
            "checkout nor one installed copy; install it with pip (or run from a checkout)"
        )
    [dist] = found
    for file in dist.files or []:
        top = file.parts[0]  # the console script (bin/, ../../bin/) is made again from entry_points.txt
        dist_info = top.endswith(".dist-info")
        kept = top == "cosmos_workflow" or (dist_info and file.name not in _INSTALL_ONLY)
        if not kept or "__pycache__" in file.parts:
            continue
        copy = unpacked / file.as_posix()
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(str(file.locate())), copy)


def _copy_source(root: Path, source: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(root / "cosmos_workflow", source / "cosmos_workflow", ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (root / name).is_file():
            shutil.copy2(root / name, source / name)


def _pip_wheel(source: Path, out: Path) -> list[str]:
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)]
    if importlib.util.find_spec("setuptools") is not None:
        command.insert(4, "--no-build-isolation")  # offline: this environment's setuptools builds it
    return command


def _wheel_pack(unpacked: Path, out: Path) -> list[str]:
    if importlib.util.find_spec("wheel") is None:
        raise ConfigError(
            "--remote packs this installed cosmos-workflow into a wheel for the host and needs the "
            "'wheel' package; run: pip install 'cosmos-workflow[remote]'"
        )
    out.mkdir()  # wheel pack does not make it
    return [sys.executable, "-m", "wheel", "pack", "-d", str(out), str(unpacked)]


def _build(command: list[str]) -> None:
    """Run a wheel-building command; failing, say its last line."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"could not build the cosmos-workflow wheel for the host: {tail}")


def core_requirements() -> list[str]:
    """This version's own requirements, extras left out (what the wheel needs on the host)."""
    requires = importlib.metadata.requires("cosmos-workflow") or []
    return [r for r in requires if "extra ==" not in r]


def installed_hash(connection: Connection, python: str) -> str | None:
    """The hash of the cosmos_workflow the host's interpreter imports, or None without one."""
    result = connection.run([python, "-c", HOST_HASH_SCRIPT], check=False, timeout=120)
    if result.returncode == 127:
        raise RemoteError(
            f"{python} not found on the host; set [remote] python "
            f"({connection.settings.command('remote', 'check')})"
        )
    return result.stdout.strip() if result.returncode == 0 else None


def install_in_venv(connection: Connection, folder: RemoteDir, python: str, wheel: Wheel) -> bool:
    """Make ``python`` on the host import exactly this cosmos-workflow; False when it already did
    (found before, or installed meanwhile by another run while this one waited for the lock)."""
    if installed_hash(connection, python) == wheel.code_hash:
        return False
    log.info("installing cosmos-workflow %s in %s on the host", cosmos_workflow.__version__, python)
    folder.upload_as(wheel.path, wheel.remote_path)
    # pip reads a requirement's ';' as a marker: the wheel is named relative to its own folder
    arguments = [wheel.code_hash, f"./{wheel.path.name}", json.dumps(core_requirements())]
    result = connection.run(
        [python, "-c", HOST_INSTALL_SCRIPT, *arguments], timeout=3600, cwd=folder.path(wheel.remote_dir)
    )
    if installed_hash(connection, python) != wheel.code_hash:
        raise RemoteError(
            f"{python} on the host still imports another cosmos-workflow after installing the wheel; "
            "is an older copy earlier on its sys.path (PYTHONPATH)?"
        )
    return result.stdout.strip() != ALREADY


#: what :data:`HOST_INSTALL_SCRIPT` prints when another run installed the same code meanwhile
ALREADY = "already installed"

#: The host side of a venv-mode install, run by the interpreter it installs into, in the wheel's
#: folder, with the wanted hash, the wheel file and the core requirements (JSON). Runs that install
#: into one environment at once take turns on a lock per interpreter (in the user's cache): without
#: it one run's ``--force-reinstall`` removes files the other's pip is writing. Under the lock it
#: checks again (another run may have installed the same code meanwhile), then pins every package the
#: environment has (its ``pip list --format=freeze``, as upsample_prompt.sh does in a container),
#: installs the missing requirements within those pins and the wheel itself. Its one file, the pins,
#: is private to the user (0600), as every file a run puts on the host.
HOST_INSTALL_SCRIPT = (
    _HOST_PREAMBLE
    + f"""
wanted, wheel, requirements = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
cache = Path.home() / ".cache" / "cosmos-workflow"
cache.mkdir(parents=True, exist_ok=True)
lock = cache / ("install-" + hashlib.sha256(sys.prefix.encode()).hexdigest()[:16] + ".lock")
with open(lock, "a") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    if installed_hash_here() == wanted:
        print({ALREADY!r})
        sys.exit(0)
    pip = [sys.executable, "-m", "pip"]
    install = pip + ["install", "-q", "--disable-pip-version-check", "--no-warn-script-location"]
    private = os.open("constraints.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(private, "w") as constraints:
        freeze = pip + ["list", "--format=freeze", "--exclude", "cosmos-workflow"]
        code = subprocess.run(freeze, stdout=constraints).returncode
    steps = [install + ["-c", "constraints.txt", *requirements]] if requirements else []
    steps.append(install + ["--no-deps", "--force-reinstall", wheel])
    for command in steps:  # the first failure's code; pip's own error is the last line it wrote
        code = code or subprocess.run(command).returncode
    sys.exit(code)
"""
)
