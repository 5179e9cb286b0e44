"""The command line as a user runs it: real processes, the shipped examples, the tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.videos import make_video

ROOT = Path(__file__).resolve().parents[2]


def cli(
    *args: str, env: dict[str, str] | None = None, module: str = "cosmos_workflow"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )


def test_help_and_version_do_not_import_torch() -> None:
    code = (
        "import sys; from cosmos_workflow.cli import app; "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    for module in ("cosmos_workflow", "cosmos_workflow.main"):
        result = cli("--help", module=module)
        assert result.returncode == 0 and "upsample-prompts" in result.stdout and "plan" in result.stdout


def test_plan_done_when(tmp_path: Path) -> None:
    make_video(tmp_path / "hd.mp4", 1280, 720, frames=4)
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps([{"name": "hd", "prompt": "Test", "video_path": "hd.mp4"}]))
    stock = cli("plan", str(prompts), "--no-preprocess", "--json")
    assert stock.returncode == 1
    [row] = json.loads(stock.stdout)
    assert row["total_tokens"] == 4684 and row["fits"] is False and row["status"] == "overflow"
    default = cli("plan", str(prompts), "--json")
    assert default.returncode == 0
    [row] = json.loads(default.stdout)
    assert row["fits"] and row["max_model_len"] - row["total_tokens"] >= 300
    keys = {
        "name",
        "source_width",
        "source_height",
        "width",
        "height",
        "frames",
        "image_tokens",
        "text_tokens",
        "max_tokens",
        "total_tokens",
        "max_model_len",
        "fits",
        "status",
        "message",
    }
    assert keys <= row.keys()
    table = cli("plan", str(prompts), "--no-preprocess")
    assert "overflow" in table.stdout and "4684" in table.stdout


def test_plan_reports_bad_items_and_bad_files(tmp_path: Path) -> None:
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps([{"name": "a", "prompt": "x"}, {"name": "b", "prompt": "", "oops": 1}]))
    result = cli("plan", str(prompts))
    assert result.returncode == 0
    assert "skipped p.json item 2 ('b')" in result.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("[")
    result = cli("plan", str(broken))
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error:") and "not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr
    result = cli("plan", str(prompts), "--max-resolution", "huge")
    assert result.returncode == 2 and "--max-resolution 'huge' is not a number" in result.stderr


def test_upsample_without_model_says_what_to_pass(examples: Path, tmp_path: Path) -> None:
    result = cli("upsample-prompts", str(examples), "-o", str(tmp_path / "o.json"))
    assert result.returncode == 1 and "--model tiny-random" in result.stderr


def test_model_load_failure_exit_codes(examples: Path, tmp_path: Path) -> None:
    args = [
        "upsample-prompts",
        str(examples),
        "-o",
        str(tmp_path / "o.json"),
        "--engine",
        "hf",
        "--model",
        str(tmp_path / "missing-ckpt"),
        "--quiet",
    ]
    result = cli(*args)
    assert result.returncode == 1 and "missing-ckpt" in result.stderr
    assert not (tmp_path / "o.json").exists()
    result = cli(*args, "--on-error", "original")
    assert result.returncode == 3
    data = json.loads((tmp_path / "o.json").read_text())
    assert {d["status"] for d in data} == {"fallback"}
    assert [d["upsampled_prompt"] for d in data] == [d["original_prompt"] for d in data]


@pytest.mark.slow
def test_readme_main_command_with_tiny_model(examples: Path, tmp_path: Path, tiny_model: Path) -> None:
    out = tmp_path / "out" / "upsampled.json"
    env = {**os.environ}
    result = cli(
        "upsample-prompts",
        str(examples),
        "-o",
        str(out),
        "--engine",
        "hf",
        "--model",
        "tiny-random",
        "--seed",
        "1",
        env=env,
    )
    assert result.returncode in (0, 3), result.stderr
    assert "Summary" in result.stderr and "items/s" in result.stderr
    data = json.loads(out.read_text())
    assert [d["name"] for d in data] == [
        "cityscape_prompt",
        "nature_prompt",
        "street_portrait",
        "text_only_prompt",
    ]
    for d in data:
        assert d["engine"] == "hf" and d["model"] == "tiny-random"
        assert d["prompt_tokens"] + d["max_tokens"] <= d["max_model_len"]
        if d["status"] in ("ok", "text_only"):
            assert d["upsampled_prompt"] and d["finish_reason"] == "stop"
        if d["preprocessed_video"]:
            assert Path(d["preprocessed_video"]).is_file()


@pytest.mark.slow
def test_sigkill_then_rerun_finishes_without_redoing(tmp_path: Path, tiny_model: Path) -> None:
    for i in range(4):
        make_video(tmp_path / f"v{i}.mp4", 640, 360, frames=3)
    prompts = tmp_path / "p.json"
    prompts.write_text(
        json.dumps([{"name": f"shot{i}", "prompt": f"Shot {i}", "video_path": f"v{i}.mp4"} for i in range(4)])
    )
    out = tmp_path / "o.json"
    journal = tmp_path / "o.json.journal.jsonl"
    args = [
        sys.executable,
        "-m",
        "cosmos_workflow",
        "upsample-prompts",
        str(prompts),
        "-o",
        str(out),
        "--engine",
        "hf",
        "--model",
        "tiny-random",
        "--batch-size",
        "1",
        "--seed",
        "3",
        "--quiet",
    ]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists(), "the run was meant to be killed before it finished"
    first = [json.loads(line)["key"] for line in journal.read_text().splitlines() if line.strip()]
    assert 1 <= len(first) < 4
    rerun = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode in (0, 3), rerun.stderr
    keys = [json.loads(line)["key"] for line in journal.read_text().splitlines() if line.strip()]
    assert keys[: len(first)] == first
    assert sorted(set(keys)) == sorted(keys), "an item was done twice"
    data = json.loads(out.read_text())
    assert [d["name"] for d in data] == [f"shot{i}" for i in range(4)]


def test_seed_script_flags(examples: Path, tmp_path: Path) -> None:
    out = tmp_path / "seed.json"
    result = subprocess.run(
        [
            sys.executable,
            "scripts/upsample_prompts.py",
            "--prompts-file",
            str(examples),
            "--checkpoint-dir",
            "fake",
            "--preprocess-videos",
            "--max-resolution",
            "320",
            "--num-frames",
            "1",
            "--output-file",
            str(out),
            "--engine",
            "fake",
            "--quiet",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data[0]["frames"] == 1 and max(data[0]["width"], data[0]["height"]) == 320
    assert data[0]["preprocessed_video"] and Path(data[0]["preprocessed_video"]).is_file()


def test_clips_dir_and_invalid_options(examples: Path, tmp_path: Path) -> None:
    clips = tmp_path / "my clips"
    out = tmp_path / "o.json"
    result = cli(
        "upsample-prompts",
        str(examples),
        "-o",
        str(out),
        "--engine",
        "fake",
        "--clips-dir",
        str(clips),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    written = [d["preprocessed_video"] for d in json.loads(out.read_text()) if d["preprocessed_video"]]
    assert len(written) == 3 and all(Path(p).parent == clips and Path(p).is_file() for p in written)
    result = cli("upsample-prompts", str(examples), "-o", str(out), "--engine", "fake", "--top-p", "0")
    assert result.returncode == 2 and "invalid setting: [upsample] top_p = 0.0 (flag)" in result.stderr
    assert "Traceback" not in result.stderr
