"""The CLI as a user runs it: ``python -m cosmos_workflow ARGS`` in a folder, its output captured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cosmos(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cosmos_workflow", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=os.environ.copy(),
        timeout=timeout,
    )
