"""The host side of a venv-mode install (``code.HOST_INSTALL_SCRIPT``) takes turns: it waits for
the install lock of its interpreter before it looks at what is installed, and a run that finds the
same code installed meanwhile leaves the environment as it is (no pip). Run here against this
process' own interpreter, with a private home (where the lock lives), so nothing is installed."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from cosmos_workflow.executors.remote import code

PACKAGE = Path(code.__file__).resolve().parents[2]


def lock_file(home: Path) -> Path:
    """Where the script locks for this interpreter (``sys.prefix``), under ``home``."""
    digest = hashlib.sha256(sys.prefix.encode()).hexdigest()[:16]
    return home / ".cache" / "cosmos-workflow" / f"install-{digest}.lock"


def test_the_install_waits_for_the_lock_then_finds_the_same_code_and_installs_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    held = lock_file(home)
    held.parent.mkdir(parents=True)
    wanted = code.tree_hash(PACKAGE)
    command = [sys.executable, "-c", code.HOST_INSTALL_SCRIPT, wanted, "./no.whl", json.dumps([])]
    with held.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # another run installing
        waiting = subprocess.Popen(
            command, cwd=tmp_path, env=os.environ | {"HOME": str(home)}, stdout=subprocess.PIPE, text=True
        )
        time.sleep(1.0)
        assert waiting.poll() is None  # it waits: nothing looked at, nothing installed
    out, _ = waiting.communicate(timeout=60)

    assert waiting.returncode == 0
    assert out.strip() == code.ALREADY
    assert not (tmp_path / "constraints.txt").exists()  # pip never ran
