"""The seed's own standalone command, unchanged, with the checkpoint where Cosmos-Transfer1's
download script puts it (``checkpoints/nvidia/Cosmos-UpsamplePrompt1-12B-Transfer``): here the
tiny random model, copied into that place in a fresh working directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cosmos_workflow.checkpoint.discovery import UPSAMPLER_CHECKPOINT

ROOT = Path(__file__).resolve().parents[2]
SEED_COMMAND = [
    "scripts/upsample_prompts.py",
    "--prompts-file",
    "prompts.json",
    "--preprocess-videos",
    "--max-resolution",
    "480",
    "--output-file",
    "upsampled.json",
]


def seed_command(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script, *args = SEED_COMMAND
    command = [sys.executable, str(ROOT / script), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "COSMOS_CHECKPOINT_DIR"}


def unwrapped(text: str) -> str:
    """``text`` without its whitespace: the log wraps its lines at 160 columns off a terminal, which
    splits the long path of an xdist worker's temporary folder."""
    return "".join(text.split())


@pytest.mark.slow
def test_the_seed_command_finds_the_checkpoint_in_cosmos_transfer1s_place(
    examples: Path, tiny_model: Path
) -> None:
    work = examples.parent
    checkpoint = work / "checkpoints" / UPSAMPLER_CHECKPOINT
    shutil.copytree(tiny_model, checkpoint)

    run = seed_command(work, clean_env())

    assert run.returncode in (0, 3), run.stderr[-3000:]  # 3: some random answer was cut off
    assert unwrapped(f"no model given; using {checkpoint}") in unwrapped(run.stderr)
    data = json.loads((work / "upsampled.json").read_text())
    assert [d["name"] for d in data] == [
        "cityscape_prompt",
        "nature_prompt",
        "street_portrait",
        "text_only_prompt",
    ]
    assert {d["model"] for d in data} == {str(checkpoint)} and {d["engine"] for d in data} == {"hf"}
    assert all(d["upsampled_prompt"] for d in data if d["status"] in ("ok", "text_only"))
    assert max(data[0]["width"], data[0]["height"]) == 480


def test_without_the_checkpoint_it_says_where_it_looked(examples: Path, tmp_path: Path) -> None:
    work = examples.parent
    env = clean_env() | {"COSMOS_CHECKPOINT_DIR": str(tmp_path / "ckpts")}

    run = seed_command(work, env)

    assert run.returncode == 1 and "Traceback" not in run.stderr
    [line] = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    looked = (
        f"{tmp_path}/ckpts/nvidia/Cosmos-UpsamplePrompt1-12B-Transfer ($COSMOS_CHECKPOINT_DIR) and "
        f"{work}/checkpoints/nvidia/Cosmos-UpsamplePrompt1-12B-Transfer (the working directory)"
    )
    assert looked in line and "--model" in line
