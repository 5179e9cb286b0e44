"""The Qwen2.5-VL family from the command line: a Reason1-style checkpoint folder (tiny, random)
is planned with Qwen's arithmetic and upsampled by the hf engine on the shipped examples."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.commands import cosmos

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
FIELDS = {"width", "height", "frames", "image_tokens", "text_tokens", "total_tokens"}


@pytest.fixture(scope="module")
def qwen_dir(cache_dir: Path) -> Path:
    from cosmos_workflow.engines.tiny_qwen import tiny_qwen_dir

    return tiny_qwen_dir(cache_dir)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return cosmos(*args, cwd=EXAMPLES)


def test_plan_uses_qwens_arithmetic_and_keeps_the_fields(qwen_dir: Path) -> None:
    result = cli("plan", "prompts.json", "--model", str(qwen_dir), "--json", "--max-resolution", "auto")

    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    for row in rows.values():
        assert row.keys() >= FIELDS
        assert row["total_tokens"] == row["image_tokens"] + row["text_tokens"]
    city = rows["cityscape_prompt"]  # 1280x720: the processor's own 1288x728, two frames = one pair
    assert (city["width"], city["height"], city["frames"]) == (1288, 728, 2)
    assert city["image_tokens"] == (728 // 28) * (1288 // 28) + 2


def test_plan_keeps_the_vision_budget(qwen_dir: Path) -> None:
    result = cli("plan", "prompts.json", "--model", str(qwen_dir), "--json", "--max-vision-tokens", "300")

    assert result.returncode == 0, result.stderr
    assert all(row["image_tokens"] <= 300 for row in json.loads(result.stdout))


def test_an_unsupported_family_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "qwen3_vl"}')

    result = cli("plan", "prompts.json", "--model", str(tmp_path))

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "'qwen3_vl'" in result.stderr and "qwen2_5_vl" in result.stderr


@pytest.mark.parametrize("frames", ["1", "2"])  # an image, a video
def test_upsample_prompts_runs_the_examples_with_the_hf_engine(
    qwen_dir: Path, tmp_path: Path, frames: str
) -> None:
    output = tmp_path / "out.json"
    result = cli(
        "upsample-prompts", "prompts.json", "-o", str(output), "--model", str(qwen_dir), "--engine", "hf",
        "--num-frames", frames, "--max-tokens", "300", "--temperature", "0", "--batch-size", "4",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    records = json.loads(output.read_text())
    assert {r["status"] for r in records} <= {"ok", "text_only"}
    for record in records:
        assert record["upsampled_prompt"] and record["finish_reason"] == "stop"
        assert record["prompt_tokens"] == record["image_tokens"] + record["text_tokens"]
    assert {r["frames"] for r in records if r["video_path"]} == {int(frames)}


def test_a_spec_folder_is_upsampled_with_the_qwen_checkpoint(qwen_dir: Path, tmp_path: Path) -> None:
    from cosmos_workflow.specs.store import load_spec

    specs = tmp_path / "prompts"
    video = EXAMPLES / "videos" / "city_night_720p.mp4"
    made = cli("create-spec", "city", "A city at night", "--video", str(video), "--specs-dir", str(specs))
    assert made.returncode == 0, made.stderr
    args = ["upsample-prompts", "--input-dir", str(specs), "--engine", "hf", "--model", str(qwen_dir)]
    args += ["--temperature", "0", "-q"]

    first = cli(*args)
    second = cli(*args)

    assert first.returncode == 0, first.stderr
    assert "1 updated, 0 skipped (already upsampled), 0 failed" in first.stderr
    spec = load_spec(Path(made.stdout.strip()))
    params = spec.upsampling_params
    assert spec.upsampled_prompt and params is not None and params.finish_reason == "stop"
    assert params.width is not None and params.width % 28 == 0 and params.frames == 2
    assert second.returncode == 0 and "nothing to do" in second.stderr


@pytest.mark.slow
def test_the_refiner_preset_runs_batched_and_resumes_per_system_prompt(
    qwen_dir: Path, tmp_path: Path
) -> None:
    """--preset predict2-refiner: greedy, 512 new tokens, ASCII-only answers, its system prompt
    counted in the plan; another --system-prompt-file redoes the work, the same one resumes."""
    output = tmp_path / "out.json"
    mine = tmp_path / "system.txt"
    mine.write_text("Describe the video in one sentence.", encoding="utf-8")
    args = ["upsample-prompts", "prompts.json", "-o", str(output), "--model", str(qwen_dir)]
    args += ["--engine", "hf", "--preset", "predict2-refiner", "--batch-size", "4", "--num-frames", "1"]

    refined = cli(*args)
    assert refined.returncode == 0, refined.stderr
    records = json.loads(output.read_text())
    plain = cli("plan", "prompts.json", "--model", str(qwen_dir), "--json", "--num-frames", "1")
    plain_text = {row["name"]: row["text_tokens"] for row in json.loads(plain.stdout)}
    for record in records:
        assert record["sampling"] == {
            "temperature": 0.0, "top_p": 1.0, "max_tokens": 512, "seed": None, "ascii_only": True
        }  # fmt: skip
        assert record["upsampled_prompt"].isascii() and record["status"] in {"ok", "text_only"}
        assert record["text_tokens"] > plain_text[record["name"]]  # the system prompt is counted
    keys = {r["key"] for r in records}

    mine_run = cli(*args, "--system-prompt-file", str(mine))
    again = cli(*args, "--system-prompt-file", str(mine))

    assert mine_run.returncode == 0, mine_run.stderr
    mine_records = json.loads(output.read_text())
    assert not keys & {r["key"] for r in mine_records}, "another system prompt: every item redone"
    assert again.returncode == 0 and "(4 already done)" in again.stderr
