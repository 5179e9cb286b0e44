"""Issue 15: the CLI as a careless or hostile user drives it. Each test is named after the case."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARKUP_NAMES = ["[/]", "take [/v2]", "city [night]", "[bold red]loud[/]", ":smile: face"]
ESCAPE_NAME = "\x1b[31mred\x1b[0m\x07"


def write_jsonl(path: Path, count: int) -> None:
    with path.open("w") as handle:
        for i in range(count):
            handle.write(json.dumps({"name": f"shot{i}", "prompt": f"A wet street, take {i}"}) + "\n")


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cosmos_workflow", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


def test_case5_plan_prints_names_and_messages_literally(tmp_path: Path) -> None:
    prompts = tmp_path / "p.json"
    names = [*MARKUP_NAMES, ESCAPE_NAME]
    prompts.write_text(json.dumps([{"name": n, "prompt": f"{n} prompt"} for n in names]))
    result = cli("plan", str(prompts))
    no_traceback(result)
    assert result.returncode == 0, result.stderr
    for name in MARKUP_NAMES:
        assert f"│ {name} " in result.stdout
        assert f"{name}: no video" in result.stdout
    assert "\\x1b[31mred\\x1b[0m\\x07" in result.stdout
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout


def test_case5_list_specs_prints_every_spec_literally(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    for name in [*MARKUP_NAMES, ESCAPE_NAME]:
        created = cli("create-spec", name, f"{name} prompt", "--video", "v.mp4", "--specs-dir", str(specs))
        assert created.returncode == 0, created.stderr
        assert "\x1b" not in created.stderr + created.stdout
    result = cli("list-specs", "--specs-dir", str(specs))
    no_traceback(result)
    assert result.returncode == 0
    for name in MARKUP_NAMES:
        assert f"│ {name} " in result.stdout and f"│ {name} prompt " in result.stdout
    assert "│ \\x1b[31mred\\x1b[0m\\x07 " in result.stdout
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout


def test_case5_skipped_item_lines_show_escapes(tmp_path: Path) -> None:
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps([{"name": ESCAPE_NAME, "prompt": ""}, {"name": "ok", "prompt": "x"}]))
    result = cli("plan", str(prompts))
    assert result.returncode == 0
    assert "skipped p.json item 1 (" in result.stderr and "\x1b" not in result.stderr


@pytest.mark.slow
def test_case11_plan_json_streams_while_planning(tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    count = 50_000
    write_jsonl(prompts, count)
    with subprocess.Popen(
        [sys.executable, "-m", "cosmos_workflow", "plan", str(prompts), "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        assert process.stdout is not None
        first = process.stdout.readline(), process.stdout.readline()
        still_planning = process.poll() is None  # output began long before the last item was planned
        rest = process.stdout.read()
        assert process.wait() == 0
    assert still_planning
    plans = json.loads("".join(first) + rest)
    assert len(plans) == count and plans[-1]["name"] == f"shot{count - 1}"


def test_case13_create_spec_refuses_empty_prompt_and_video(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    empty_prompt = cli("create-spec", "x", "  ", "--video", "v.mp4", "--specs-dir", str(specs))
    assert empty_prompt.returncode == 1
    assert "error: spec 'x': the prompt is empty; write a short prompt for the shot" in empty_prompt.stderr
    empty_video = cli("create-spec", "x", "a prompt", "--video", "", "--specs-dir", str(specs))
    assert empty_video.returncode == 1
    assert "error: --video is empty; pass the video's path" in empty_video.stderr
    assert not specs.exists()


def test_case13_long_name_gives_a_short_safe_file_name(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    name = "-" + "n" * 299
    result = cli("create-spec", "--video", "v.mp4", "--specs-dir", str(specs), "--", name, "a prompt")
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.is_file() and path.name.startswith("n" * 80 + "_ps_") and len(path.name) < 120
    assert json.loads(path.read_text())["name"] == name


def test_case6_os_errors_are_one_line_naming_the_path_and_the_fix(tmp_path: Path) -> None:
    unwritable = Path("/sys") if os.geteuid() == 0 else tmp_path / "ro"
    if unwritable != Path("/sys"):
        unwritable.mkdir()
        unwritable.chmod(0o555)
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps([{"name": "a", "prompt": "x"}]))
    for args in (
        ("create-spec", "x", "a prompt", "--video", "v.mp4", "--specs-dir", str(unwritable / "specs")),
        ("upsample-prompts", str(prompts), "-o", str(unwritable / "o.json"), "--engine", "fake", "-q"),
    ):
        result = cli(*args)
        no_traceback(result)
        assert result.returncode == 1
        [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
        assert str(unwritable) in line and "permission denied" in line, result.stderr


def test_case10_sigint_says_what_was_saved_and_how_to_resume(tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    write_jsonl(prompts, 50_000)
    with subprocess.Popen(
        [sys.executable, "-m", "cosmos_workflow", "plan", str(prompts), "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        process.stdout.readline()  # planning has begun
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "interrupted by SIGINT before any new result was saved; rerun the same command" in stderr
    assert "Traceback" not in stderr


@pytest.mark.slow
def test_case10_sigterm_says_what_was_saved_and_how_to_resume(tmp_path: Path, tiny_model: Path) -> None:
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps([{"name": f"shot{i}", "prompt": f"Shot {i}"} for i in range(6)]))
    out = tmp_path / "o.json"
    journal = tmp_path / "o.json.journal.jsonl"
    args = ["upsample-prompts", str(prompts), "-o", str(out), "--model", "tiny-random", "--engine", "hf"]
    with subprocess.Popen(
        [sys.executable, "-m", "cosmos_workflow", *args, "--batch-size", "1", "--quiet"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            if journal.exists() and journal.read_text().count("\n") >= 1:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    saved = journal.read_text().count("\n")
    assert f"interrupted by SIGTERM; results saved: {saved} in {journal}; rerun the same command" in stderr
    assert "Traceback" not in stderr and not out.exists()


def test_case3_one_lone_surrogate_prompt_no_longer_kills_the_run(tmp_path: Path) -> None:
    prompts = tmp_path / "p.json"
    items = [f'{{"name": "shot{i}", "prompt": "a street, take {i}"}}' for i in range(19)]
    prompts.write_text("[" + ", ".join([*items, '{"name": "cut", "prompt": "x\\ud83d"}']) + "]")
    out = tmp_path / "o.json"
    for _ in range(2):  # the rerun resumes from the journal, as it must
        result = cli("upsample-prompts", str(prompts), "-o", str(out), "--engine", "fake", "-q")
        no_traceback(result)
        assert result.returncode == 0, result.stderr
    records = json.loads(out.read_text(encoding="utf-8"))
    assert len(records) == 20 and {r["status"] for r in records} == {"text_only"}
    assert records[-1]["original_prompt"] == "x\ufffd"
    assert "U+FFFD" in records[-1]["warning"]
    assert (tmp_path / "o.json.journal.jsonl").read_text(encoding="utf-8").count("\n") == 20


def test_case4_nul_or_surrogate_in_video_path_is_reported_not_a_traceback(tmp_path: Path) -> None:
    prompts = tmp_path / "p.json"
    prompts.write_text(
        '[{"name": "nul", "prompt": "x", "video_path": "a\\u0000b.mp4"},'
        ' {"name": "half", "prompt": "y", "video_path": "v\\ud83d.mp4"}, {"name": "ok", "prompt": "z"}]'
    )
    plan = cli("plan", str(prompts))
    no_traceback(plan)
    assert plan.returncode == 0
    assert "skipped p.json item 1 ('nul'): video_path: contains a NUL character; fix the path" in plan.stderr
    out = tmp_path / "o.json"
    run = cli("upsample-prompts", str(prompts), "-o", str(out), "--engine", "fake", "-q")
    no_traceback(run)
    half, ok = json.loads(out.read_text(encoding="utf-8"))
    assert half["status"] == "text_only" and "U+FFFD" in half["warning"] and "not found" in half["warning"]
    assert ok["name"] == "ok"
