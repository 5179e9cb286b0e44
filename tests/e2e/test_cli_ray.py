"""``upsample-prompts --executor ray`` as a user runs it: the shipped examples, the tiny model, and
a local Ray cluster that the command starts itself (no address given) and stops at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# one local Ray cluster at a time: a second one beside it starves both on a 2-CPU machine
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run(
        [sys.executable, "-m", "cosmos_workflow", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )


def test_the_examples_on_two_actors_of_a_local_cluster(
    examples: Path, tiny_model: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out" / "upsampled.json"

    run = cli(
        "upsample-prompts", str(examples), "-o", str(output), "--executor", "ray", "--ray-actors", "2",
        "--engine", "hf", "--model", "tiny-random", "--seed", "1",
    )  # fmt: skip

    assert run.returncode == 0, run.stderr[-3000:]
    records = json.loads(output.read_text())
    expected = [item["name"] for item in json.loads(examples.read_text())]
    assert [r["name"] for r in records] == expected
    assert {r["status"] for r in records} == {"ok", "text_only"}
    assert all(r["upsampled_prompt"] and r["engine"] == "hf" for r in records)
    clips = [Path(r["preprocessed_video"]) for r in records if r["preprocessed_video"]]
    assert len(clips) == 3 and all(clip.is_file() for clip in clips)  # written by the preprocessing tasks
    assert "4 items (0 already done)" in run.stderr
    journal = output.with_name(output.name + ".journal.jsonl").read_text().splitlines()
    assert len(journal) == len(expected)


def test_the_openai_engine_is_refused_on_ray(examples: Path, tmp_path: Path) -> None:
    run = cli(
        "upsample-prompts", str(examples), "-o", str(tmp_path / "o.json"), "--executor", "ray",
        "--engine", "openai", "--model", "served",
    )  # fmt: skip

    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "error: --executor ray does not take --engine openai: the server already batches requests; "
        "drop --executor ray"
    ]
