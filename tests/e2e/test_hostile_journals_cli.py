"""Issue 23, data destroyed, trust in journals, exit codes, messages: the CLI as a careless or
hostile user drives it (real subprocesses, the fake engine). Each test is named after its case."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.videos import make_video

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


def said(result: subprocess.CompletedProcess[str]) -> str:
    """stderr with runs of white space as one space (long log lines are wrapped)."""
    return " ".join(result.stderr.split())


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
        ("cosmos_workflow.specs.store:SpecStore.scan", ["list-specs", "--specs-dir", "{tmp}/specs"]),
        (
            "cosmos_workflow.specs.store:SpecStore.create",
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


def finished_run(tmp_path: Path, *, video: bool = False) -> tuple[Path, Path, Path]:
    """A finished 3-item run with the fake engine: (prompts file, output, its journal); with
    ``video`` the first item has a video, so its record names a clip in out_clips/."""
    prompts = prompts_file(tmp_path)
    if video:
        items = json.loads(prompts.read_text())
        items[0]["video_path"] = str(make_video(tmp_path / "v.mp4", 64, 48, frames=3))
        prompts.write_text(json.dumps(items))
    out = tmp_path / "out.json"
    run = cli("upsample-prompts", str(prompts), "-o", str(out), "--engine", "fake", "-q")
    assert run.returncode == 0, run.stderr
    return prompts, out, tmp_path / "out.json.journal.jsonl"


def names(output: Path) -> list[str]:
    return [record["name"] for record in json.loads(output.read_text())]


def backups(output: Path) -> list[Path]:
    return sorted(output.parent.glob(f"{output.name}.bak-*"))


@pytest.mark.parametrize("journal_text", [b"", b"\x00\xff garbled \xfe\n" * 3])
def test_case1_merge_keeps_what_the_output_holds_when_the_journal_is_lost(
    tmp_path: Path, journal_text: bytes
) -> None:
    prompts, out, journal = finished_run(tmp_path)
    before = json.loads(out.read_text())
    journal.write_bytes(journal_text)
    result = cli("merge", str(prompts), "-o", str(out))
    no_traceback(result)
    assert result.returncode == 0, result.stderr
    assert "merged 3 items from 1 journals (out.json.journal.jsonl) and the 3 records out.json held" in (
        result.stderr
    )
    assert json.loads(out.read_text()) == before
    assert backups(out) == []


def test_case1_merge_never_shrinks_output_without_force(tmp_path: Path) -> None:
    prompts, out, journal = finished_run(tmp_path)
    journal.write_bytes(b"")
    prompts.write_text(json.dumps(json.loads(prompts.read_text())[:1]))  # two items left the file
    before = out.read_bytes()
    refused = cli("merge", str(prompts), "-o", str(out))
    no_traceback(refused)
    assert refused.returncode == 1
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith(f"error: merging would replace {out} with less than it holds: 'shot1' (text_only)")
    assert "pass --force to replace it" in line
    assert out.read_bytes() == before and backups(out) == []

    forced = cli("merge", str(prompts), "-o", str(out), "--force")
    no_traceback(forced)
    assert forced.returncode == 0, forced.stderr
    assert names(out) == ["shot0"]
    [kept] = backups(out)
    assert kept.read_bytes() == before
    assert f"the replaced out.json is kept as {kept}" in forced.stderr


def test_case1_merge_keeps_an_unreadable_output_unless_forced(tmp_path: Path) -> None:
    prompts, out, _ = finished_run(tmp_path)
    out.write_bytes(b"\xff not json")
    refused = cli("merge", str(prompts), "-o", str(out))
    assert refused.returncode == 1
    assert "the whole file (" in refused.stderr and "not a JSON list of records" in refused.stderr
    assert out.read_bytes() == b"\xff not json"
    forced = cli("merge", str(prompts), "-o", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert names(out) == ["shot0", "shot1", "shot2"]
    assert [p.read_bytes() for p in backups(out)] == [b"\xff not json"]


def test_case2_merge_refuses_the_prompts_file_as_output(tmp_path: Path) -> None:
    prompts, _, journal = finished_run(tmp_path)
    pp = tmp_path / "pp.json"
    pp.write_bytes(prompts.read_bytes())
    (tmp_path / "pp.json.journal.jsonl").write_bytes(journal.read_bytes())
    before = pp.read_bytes()
    for same in (str(pp), str(tmp_path / "." / "pp.json")):
        result = cli("merge", str(pp), "-o", same)
        no_traceback(result)
        assert result.returncode == 1
        assert f"error: output {same} is the input file {pp}; pass a different output file" in result.stderr
    assert pp.read_bytes() == before and backups(pp) == []


def tamper(journal: Path, edits: dict[str, dict[str, object]]) -> None:
    """Edit the journal's records by item name, as a careless or hostile person would."""
    lines = []
    for line in journal.read_text().splitlines():
        record = json.loads(line)
        record.update(edits.get(record["name"], {}))
        lines.append(json.dumps(record) + "\n")
    journal.write_text("".join(lines))


TAMPERED = {
    "shot1": {"status": "ok", "upsampled_prompt": None},
    "shot2": {"preprocessed_video": "/etc/shadow"},
}


def test_case9_tampered_journal_records_are_reported_missing_by_merge(tmp_path: Path) -> None:
    prompts, out, journal = finished_run(tmp_path)
    tamper(journal, TAMPERED)
    out.unlink()
    result = cli("merge", str(prompts), "-o", str(out))
    no_traceback(result)
    assert result.returncode == 3
    assert f"{journal} line 2 is corrupt (status 'ok' without an upsampled_prompt); ignored" in said(result)
    assert (
        f"{journal} line 3 is corrupt (preprocessed_video: '/etc/shadow' is not a clip in the run's "
        f"clips folder {tmp_path / 'out_clips'}); ignored"
    ) in said(result)
    assert "missing 2 item(s) with no result in any journal: shot1, shot2; rerun" in said(result)
    assert names(out) == ["shot0"] and "/etc/shadow" not in out.read_text()


def test_case9_tampered_journal_records_are_redone_on_resume(tmp_path: Path) -> None:
    prompts, out, journal = finished_run(tmp_path, video=True)
    clip = json.loads(out.read_text())[0]["preprocessed_video"]
    assert clip and Path(clip).parent == tmp_path / "out_clips"  # a real clip is trusted, and resumed
    tamper(journal, TAMPERED)
    tamper(journal, {"shot2": {"frames": "2"}})  # a wrong type too
    line = {json.loads(text)["name"]: n for n, text in enumerate(journal.read_text().splitlines(), 1)}
    rerun = cli("upsample-prompts", str(prompts), "-o", str(out), "--engine", "fake", "-q")
    no_traceback(rerun)
    assert rerun.returncode == 0, rerun.stderr
    assert f"line {line['shot1']} is corrupt (status 'ok' without an upsampled_prompt)" in said(rerun)
    assert f"line {line['shot2']} is corrupt (preprocessed_video: '/etc/shadow' is not a clip" in said(rerun)
    assert "frames: Input should be a valid integer" in said(rerun)
    assert "3 items (1 already done)" in said(rerun)
    records = json.loads(out.read_text())
    assert [r["name"] for r in records] == ["shot0", "shot1", "shot2"]
    assert all(r["upsampled_prompt"] for r in records) and "/etc/shadow" not in out.read_text()
    assert records[0]["preprocessed_video"] == clip


def test_case11b_only_a_last_unfinished_line_is_an_interrupted_write(tmp_path: Path) -> None:
    prompts, out, journal = finished_run(tmp_path)
    first, *rest = journal.read_text().splitlines(keepends=True)
    journal.write_text(first + "garbage from an editor\n" + "".join(rest) + rest[-1][:30])
    merged = cli("merge", str(prompts), "-o", str(out))
    assert merged.returncode == 0, merged.stderr
    assert f"{journal} line 2 is corrupt (not a JSON record); ignored" in said(merged)
    assert f"{journal} line 5 is incomplete (an interrupted write); ignored" in said(merged)
    assert said(merged).count("interrupted write") == 1
    # the next run that appends seals the unfinished line: from then on it is known for what it is
    prompts.write_text(json.dumps([*json.loads(prompts.read_text()), {"name": "new", "prompt": "a sea"}]))
    rerun = cli("upsample-prompts", str(prompts), "-o", str(out), "--engine", "fake", "-q")
    assert rerun.returncode == 0, rerun.stderr
    assert journal.read_text().splitlines()[4].endswith("<- cut short by an interrupted write")
    again = cli("merge", str(prompts), "-o", str(out))
    assert again.returncode == 0 and names(out) == ["shot0", "shot1", "shot2", "new"]
    assert "line 5" not in said(again) and "line 2 is corrupt (not a JSON record)" in said(again)


def test_case10_invalid_spec_files_exit_3_and_the_valid_rest_is_done(tmp_path: Path) -> None:
    specs = tmp_path / "prompts"
    for name in ("city", "forest"):
        made = cli("create-spec", name, f"a {name} at night", "--video", "v.mp4", "--specs-dir", str(specs))
        assert made.returncode == 0, made.stderr
    for number in range(6):
        (specs / f"broken{number}.json").write_text(["not json", "[]", '{"id": 1}'][number % 3])
    result = cli("upsample-prompts", "--input-dir", str(specs), "--engine", "fake", "-q")
    no_traceback(result)
    assert result.returncode == 3, result.stderr
    assert "2 updated, 0 skipped (already upsampled), 0 failed, 6 invalid files" in result.stderr
    listed = cli("list-specs", "--specs-dir", str(specs))
    assert listed.stdout.count("│ no ") == 0 and listed.stderr.count("invalid ") == 6
