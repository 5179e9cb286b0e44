"""create-spec, list-specs and upsample-prompts --input-dir as a user runs them (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cosmos_workflow.journal import read_records
from cosmos_workflow.specs.store import load_spec
from tests.videos import make_video

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cosmos_workflow", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ},
        timeout=600,
    )


def create_two(tmp_path: Path) -> tuple[Path, list[Path]]:
    specs = tmp_path / "prompts"
    video = make_video(tmp_path / "city.mp4", 320, 180)
    depth = make_video(tmp_path / "depth.mp4", 256, 144)
    made = [
        cli("create-spec", "city", "A city at night", "--video", str(video), "--specs-dir", str(specs)),
        cli(
            "create-spec",
            "city_depth",
            "A rainy city",
            "--video",
            str(video),
            "--control",
            f"depth={depth}",
            "--control",
            "vis",
            "--negative-prompt",
            "blurry",
            "--specs-dir",
            str(specs),
        ),
    ]
    assert [m.returncode for m in made] == [0, 0], [m.stderr for m in made]
    paths = [Path(m.stdout.strip()) for m in made]
    assert all(p.is_file() and p.parent.parent == specs for p in paths)
    return specs, paths


def test_create_and_list_specs(tmp_path: Path) -> None:
    specs, [city, depth] = create_two(tmp_path)
    spec = load_spec(depth)
    assert spec.control_inputs == {"depth": str(tmp_path / "depth.mp4"), "vis": None}
    assert spec.negative_prompt == "blurry" and spec.upsampled_prompt is None
    listed = cli("list-specs", "--specs-dir", str(specs))
    assert listed.returncode == 0
    assert (
        "city_depth" in listed.stdout and "depth=depth.mp4, vis" in listed.stdout and spec.id in listed.stdout
    )
    again = cli(
        "create-spec",
        "copy",
        "A city at night",
        "--video",
        str(tmp_path / "city.mp4"),
        "--specs-dir",
        str(specs),
    )
    assert again.returncode == 1 and f"already exists: {city}" in again.stderr
    bad = cli(
        "create-spec", "x", "y", "--video", "v.mp4", "--control", "lidar=l.mp4", "--specs-dir", str(specs)
    )
    assert bad.returncode == 2 and "unknown modality 'lidar'" in bad.stderr


def test_create_then_upsample_then_nothing_to_do(tmp_path: Path) -> None:
    specs, paths = create_two(tmp_path)
    (specs / "notes.json").write_text("not json")
    first = cli("upsample-prompts", "--input-dir", str(specs), "--engine", "fake", "-q")
    assert first.returncode == 3, first.stderr  # the invalid file counts as failed (issue 23 case 10)
    assert "2 updated, 0 skipped (already upsampled), 0 failed, 1 invalid files" in first.stderr
    city, depth = (load_spec(p) for p in paths)
    for spec in (city, depth):
        assert spec.upsampled_prompt and spec.upsampled_at and spec.upsampling_params
        assert spec.upsampled_prompt.startswith(f"A detailed scene: {spec.prompt}")
    assert city.upsampling_params and city.upsampling_params.video_source == "input"
    assert depth.upsampling_params and depth.upsampling_params.video_source == "control:depth"
    assert depth.upsampling_params.width == 256
    before = [p.read_bytes() for p in paths]
    second = cli("upsample-prompts", "--input-dir", str(specs), "--engine", "fake", "-q")
    assert second.returncode == 3 and "nothing to do" in second.stderr
    assert [p.read_bytes() for p in paths] == before
    forced = cli("upsample-prompts", "--input-dir", str(specs), "--engine", "fake", "-q", "--force")
    assert forced.returncode == 3 and "2 updated" in forced.stderr


@pytest.mark.slow
def test_create_then_upsample_with_the_tiny_model(tmp_path: Path, tiny_model: Path) -> None:
    """The issue's "done when": every spec file gets the three fields; a second run does nothing."""
    specs, paths = create_two(tmp_path)
    args = ["upsample-prompts", "--input-dir", str(specs), "--engine", "hf", "--model", "tiny-random"]
    args += ["--seed", "1", "-q"]
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    assert "2 updated, 0 skipped (already upsampled), 0 failed" in first.stderr
    journal = specs / ".upsampling" / "results.json.journal.jsonl"
    records = {r.name: r for r in read_records(journal, clips_dir=journal.with_name("results_clips"))}
    assert len(records) == 2
    for path in paths:
        spec = load_spec(path)
        params = spec.upsampling_params
        record = records[spec.id]
        assert spec.upsampled_prompt and spec.upsampled_prompt == record.upsampled_prompt
        assert spec.upsampled_at is not None and params is not None
        assert params.engine == "hf" and params.model == "tiny-random" and params.frames == 2
        assert (
            params.finish_reason == "stop"
            and params.prompt_tokens + params.max_tokens <= params.max_model_len
        )
        assert params.request_key == record.key and params.tool_version
    depth_params = load_spec(paths[1]).upsampling_params
    assert depth_params is not None and depth_params.video_source == "control:depth"
    after_first = [p.read_bytes() for p in paths]
    second = cli(*args)
    assert second.returncode == 0 and "nothing to do" in second.stderr
    assert [p.read_bytes() for p in paths] == after_first
    assert (
        len(list(read_records(journal, clips_dir=journal.with_name("results_clips")))) == 2
    )  # the model was not asked again
