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
    assert empty_video.returncode == 2
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
    # plan saves no results (issue 23 case 11a): it says it stopped, not how to resume
    assert stderr.strip().splitlines()[-1] == "interrupted by SIGINT; stopped"
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


def upsample(prompts: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli("upsample-prompts", str(prompts), *args, "--engine", "fake", "-q")


def small_batch(tmp_path: Path) -> Path:
    prompts = tmp_path / "in" / "p.json"
    prompts.parent.mkdir(exist_ok=True)
    prompts.write_text(json.dumps([{"name": "a", "prompt": "a city"}, {"name": "b", "prompt": "a forest"}]))
    return prompts


def test_case1_output_device_or_fifo_is_refused_and_left_alone(tmp_path: Path) -> None:
    prompts = small_batch(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    specials = {"fifo": "a FIFO (named pipe)"}
    os.mkfifo(out / "fifo")
    if os.geteuid() == 0:  # the reproduction: a copy of /dev/null
        os.mknod(out / "null", 0o666 | 0o020000, os.makedev(1, 3))
        specials["null"] = "a character device"
    for name, kind in specials.items():
        result = upsample(prompts, "-o", str(out / name))
        no_traceback(result)
        assert result.returncode == 1
        assert f"error: output {out / name} is {kind}; writing would replace it" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(specials)  # no journal, lock or clips
    assert (out / "fifo").is_fifo() and ("null" not in specials or (out / "null").is_char_device())


def test_case2_output_equal_to_the_prompts_file_is_refused(tmp_path: Path) -> None:
    prompts = small_batch(tmp_path)
    before = prompts.read_bytes()
    for same in (str(prompts), str(prompts.parent / "." / "p.json")):
        result = upsample(prompts, "-o", same)
        no_traceback(result)
        assert result.returncode == 1
        assert f"is the input file {prompts}; pass a different output file" in result.stderr
    assert prompts.read_bytes() == before
    assert sorted(p.name for p in prompts.parent.iterdir()) == ["p.json"]


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("{out}", "is a folder; pass a file path"),
        ("{out}/afile/o.json", "afile is a file, not a folder"),
        ("", "the output path is empty"),
        ("{out}/" + "n" * 240 + ".json", "file name too long"),
    ],
)
def test_case6_bad_output_paths_fail_first_in_one_line(tmp_path: Path, output: str, message: str) -> None:
    prompts = small_batch(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "afile").write_text("")
    result = upsample(prompts, "-o", output.format(out=out))
    no_traceback(result)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert sorted(p.name for p in out.iterdir()) == ["afile"]


def test_case6_unwritable_clips_folder_fails_before_any_work(tmp_path: Path) -> None:
    prompts = small_batch(tmp_path)
    clips = Path("/sys/clips") if os.geteuid() == 0 else tmp_path / "ro" / "clips"
    if not clips.is_relative_to("/sys"):
        clips.parent.mkdir()
        clips.parent.chmod(0o555)
    result = upsample(prompts, "-o", str(tmp_path / "o.json"), "--clips-dir", str(clips))
    no_traceback(result)
    assert result.returncode == 1
    assert f"error: cannot write in folder {clips.parent}: permission denied" in result.stderr
    assert not (tmp_path / "o.json.journal.jsonl").exists()


def test_case8_items_skipped_as_invalid_count_as_failed(tmp_path: Path) -> None:
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps([{"name": "a", "prompt": "x"}, {"name": "b", "prompt": ""}, {"name": "c"}]))
    result = cli("upsample-prompts", str(prompts), "-o", str(tmp_path / "o.json"), "--engine", "fake")
    no_traceback(result)
    assert result.returncode == 3
    assert "│ invalid (skipped) │     2 │" in result.stderr
    summary = result.stderr[result.stderr.index("Summary") :]
    assert "invalid (skipped) p.json item 2 ('b'): prompt: prompt is empty" in summary
    assert "invalid (skipped) p.json item 3 ('c'): missing 'prompt'; add it" in summary
    assert [r["name"] for r in json.loads((tmp_path / "o.json").read_text())] == ["a"]


def test_case15_invalid_combinations_exit_2_and_hints_do_not_mislead(tmp_path: Path) -> None:
    prompts = small_batch(tmp_path)
    both = cli("upsample-prompts", str(prompts), "--input-dir", str(tmp_path), "--engine", "fake")
    assert both.returncode == 2 and "give either PROMPTS_FILE or --input-dir" in both.stderr
    neither = cli("upsample-prompts", "--engine", "fake")
    assert neither.returncode == 2 and "give either PROMPTS_FILE or --input-dir" in neither.stderr
    with_o = cli("upsample-prompts", "--input-dir", str(tmp_path), "-o", "x.json", "--engine", "fake")
    assert with_o.returncode == 2 and "--output-file does not apply to --input-dir" in with_o.stderr
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    nothing = upsample(empty, "-o", str(tmp_path / "o.json"))
    assert nothing.returncode == 1
    assert "holds no items; add {name, prompt, video_path} objects" in nothing.stderr
    assert "problems" not in nothing.stderr
    for result in (both, neither, with_o, nothing):
        no_traceback(result)
