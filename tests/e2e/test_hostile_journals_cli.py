"""Issue 23, data destroyed, trust in journals, exit codes, messages: the CLI as a careless or
hostile user drives it (real subprocesses, the fake engine). Each test is named after its case."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: runs the CLI in a process that sends itself SIGTERM when the named function is called, so the
#: signal lands inside the command's work, every time (argv: "module:Attr.attr", then the CLI's)
INTERRUPT_DURING = """
import importlib, os, signal, sys
module, _, attribute = sys.argv[1].partition(":")
owner = importlib.import_module(module)
*parents, name = attribute.split(".")
for parent in parents:
    owner = getattr(owner, parent)
original = getattr(owner, name)
def interrupted(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    return original(*args, **kwargs)
setattr(owner, name, interrupted)
sys.argv = ["cosmos-workflow", *sys.argv[2:]]
from cosmos_workflow.cli import main
main()
"""


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cosmos_workflow", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def interrupted_during(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", INTERRUPT_DURING, target, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


def prompts_file(folder: Path, count: int = 3, name: str = "p.json") -> Path:
    path = folder / name
    items = [{"name": f"shot{i}", "prompt": f"a wet street, take {i}"} for i in range(count)]
    path.write_text(json.dumps(items))
    return path


def remote_config(folder: Path) -> Path:
    path = folder / "remote.toml"
    path.write_text('[remote]\nhost = "127.0.0.1"\nuser = "nobody"\n')
    return path


@pytest.mark.parametrize(
    ("target", "args"),
    [
        ("cosmos_workflow.specs.manager:SpecStore.scan", ["list-specs", "--specs-dir", "{tmp}/specs"]),
        (
            "cosmos_workflow.specs.manager:SpecStore.create",
            ["create-spec", "x", "a prompt", "--video", "v.mp4", "--specs-dir", "{tmp}/specs"],
        ),
        ("cosmos_workflow.report:write_report_for_file", ["report", "{tmp}/out.json"]),
        ("cosmos_workflow.executors.remote:load_remote_config", ["remote", "check", "--config", "{remote}"]),
        ("cosmos_workflow.api:plan", ["plan", "{prompts}"]),
    ],
)
def test_case11a_commands_that_save_nothing_say_they_stopped(
    tmp_path: Path, target: str, args: list[str]
) -> None:
    if "remote" in args:
        pytest.importorskip("paramiko")
    paths = {"tmp": tmp_path, "remote": remote_config(tmp_path), "prompts": prompts_file(tmp_path)}
    result = interrupted_during(target, *(arg.format(**paths) for arg in args))
    no_traceback(result)
    assert result.returncode == 143, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "interrupted by SIGTERM; stopped"
    assert "resume" not in result.stderr


def test_case11a_upsample_prompts_says_how_to_resume(tmp_path: Path) -> None:
    prompts = prompts_file(tmp_path)
    args = ["upsample-prompts", str(prompts), "-o", str(tmp_path / "o.json"), "--engine", "fake", "-q"]
    result = interrupted_during("cosmos_workflow.api:upsample_file", *args)
    no_traceback(result)
    assert result.returncode == 143, result.stderr
    assert (
        "interrupted by SIGTERM before any new result was saved; rerun the same command to resume"
        in result.stderr
    )
