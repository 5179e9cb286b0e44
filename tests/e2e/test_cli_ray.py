"""``upsample-prompts --executor ray`` as a user runs it: the shipped examples, the tiny model, and
a local Ray cluster that the command starts itself (no address given) and stops at the end; with a
fixed seed, the records are those of the same command run locally."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def without_run_details(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A record as two runs of the same items agree on it: no timestamp, the clip by its file name
    (each run writes its clips beside its own output)."""
    return [
        {
            **{k: v for k, v in r.items() if k != "timestamp"},
            "preprocessed_video": r["preprocessed_video"] and Path(r["preprocessed_video"]).name,
        }
        for r in records
    ]


def test_the_examples_on_two_actors_of_a_local_cluster_give_a_local_runs_records(
    examples: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """The seeded run on the actors (batches of 2: both actors load the tiny model and serve) gives
    the records of the same command run here, word for word (timestamps aside)."""
    output = tmp_path / "out" / "upsampled.json"
    command = ["upsample-prompts", str(examples), "--engine", "hf", "--model", "tiny-random", "--seed", "1",
               "--batch-size", "2"]  # fmt: skip

    run = cli(*command, "-o", str(output), "--executor", "ray", "--ray-actors", "2")

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

    local_output = tmp_path / "local" / "upsampled.json"
    local = cli(*command, "-o", str(local_output), "--executor", "local")

    assert local.returncode == 0, local.stderr[-3000:]
    assert without_run_details(records) == without_run_details(json.loads(local_output.read_text()))


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
