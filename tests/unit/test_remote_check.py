"""``remote check``'s disk-space verdict, at and around its two thresholds."""

from __future__ import annotations

import pytest

from cosmos_workflow.executors.remote.check import FAIL_GIB, WARN_GIB, disk_verdict


@pytest.mark.parametrize(
    ("free_gib", "verdict", "fix_names"),
    [
        (0.0, "fail", "remote_dir elsewhere"),
        (FAIL_GIB - 0.01, "fail", "remote_dir elsewhere"),
        (FAIL_GIB, "warn", "free some space"),
        (WARN_GIB - 0.01, "warn", "free some space"),
        (WARN_GIB, "ok", ""),
        (500.0, "ok", ""),
    ],
)
def test_disk_verdict_and_fix(free_gib: float, verdict: str, fix_names: str) -> None:
    got_verdict, fix = disk_verdict(free_gib)
    assert got_verdict == verdict
    assert (fix_names in fix) if fix_names else fix == ""
