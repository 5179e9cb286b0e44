"""A hypothesis fuzzer of prompts files and options, driving the real CLI entry point (issue 15).

Each example writes a batch file (JSON or JSONL, maybe with a BOM) of good and bad items (blank
prompts, unknown keys, wrong types, duplicate names and keys, NUL paths, lone surrogates, lines
that are not JSON, markup and control characters, JSONL lines nested 100,000 deep) and picks an
output (sometimes the input file, a folder, a FIFO, a device, a path under a file) and flag
values, some invalid. Issue 23 adds hostile files in place of the prompts file (a FIFO, an
endless ``/dev/zero`` link, JSON nested 100,000 deep) and of the ``--config`` file (a FIFO, an
endless file, TOML nested 330 deep). It runs ``cosmos_workflow.cli.main`` with the fake engine
and asserts: no traceback, the exit code the README gives, every good item in the output, no file
written outside the output folder, nothing special replaced, and (an alarm) no read that blocks.
``derandomize`` keeps CI runs identical; 80 examples take about 30 s.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from cosmos_workflow.cli import main
from tests.videos import make_video

SURROGATE = "@@half-emoji@@"  # written into the file as the JSON escape \ud83d
HOSTILE_TEXT = ["[/]", "take [/v2]", "[bold]x", ":smile:", "\x1b[31mred", "a\u2028b", "c\u0085d", "\x07"]


@dataclass
class Case:
    """One generated run and what the README says must come of it."""

    records: list[Any] = field(default_factory=list)
    good: list[str] = field(default_factory=list)
    bad: int = 0
    jsonl: bool = False
    bom: bool = False
    output: str = "normal"
    flags: list[str] = field(default_factory=list)
    bad_flag: bool = False
    source: str = "file"  #: what the prompts file is: see SOURCES
    config: str = "none"  #: what --config names: see CONFIGS


names = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)
prompts = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40).filter(str.strip),
    st.sampled_from(HOSTILE_TEXT),
    st.sampled_from(["x" + SURROGATE, "emoji " + SURROGATE + " cut"]),
)
BAD_FLAGS = [
    ("--max-resolution", "abc"),
    ("--max-resolution", "8"),
    ("--batch-size", "0"),
    ("--batch-size", "x"),
]
OUTPUTS = ["normal", "nested", "input", "folder", "fifo", "device", "under-file"]
#: the prompts file: the batch written, or in its place a FIFO, an endless file, or deep nesting
SOURCES = ["file", "fifo", "endless", "deep"]
#: --config: none, a good file, or a FIFO, an endless file, TOML nested deeper than tomllib can parse
CONFIGS = ["none", "good", "fifo", "endless", "deep"]
DEEP_JSON_LINE = "[" * 100_000 + "]" * 100_000
DEEP_TOML = "[upsample]\nmodel = " + "[" * 330 + "]" * 330 + "\n"
BAD_ITEMS = [
    {"name": "blank", "prompt": "   "},
    {"name": "no-prompt"},
    {"name": "extra", "prompt": "x", "fps": 24},
    {"name": 7, "prompt": "number"},
    {"name": "typed", "prompt": ["not", "text"]},
    {"name": "nul", "prompt": "x", "video_path": "a\x00b.mp4"},
    "just a string",
    None,
]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    case = Case(jsonl=draw(st.booleans()), bom=draw(st.booleans()))
    good_names = draw(st.lists(names, min_size=draw(st.sampled_from([0, 1, 1, 1])), max_size=5, unique=True))
    for name in good_names:
        item: dict[str, Any] = {"name": name, "prompt": draw(prompts)}
        video = draw(st.sampled_from([None, "v.mp4", "missing.mp4", ""]))
        if video is not None:
            item["video_path"] = video
        case.records.append(item)
        case.good.append(name)
    for bad in draw(st.lists(st.sampled_from([*BAD_ITEMS, DEEP_JSON_LINE]), max_size=3)):
        if bad == DEEP_JSON_LINE and not case.jsonl:
            continue  # a JSONL line of its own; a whole JSON file nested deep is a source below
        case.records.insert(draw(st.integers(0, len(case.records))), bad)
        case.bad += 1
    if good_names and draw(st.booleans()):  # the second of two items with one name is skipped
        case.records.append({"name": good_names[0], "prompt": "again"})
        case.bad += 1
    # mostly usable outputs and flags, so that most runs get as far as the engine
    case.output = draw(st.sampled_from(OUTPUTS)) if draw(st.booleans()) else "normal"
    flags = {
        "--max-resolution": draw(st.sampled_from(["480", "auto", "64"])),
        "--batch-size": draw(st.sampled_from(["1", "8"])),
        "--num-frames": draw(st.sampled_from(["0", "1", "2"])),
    }
    # mostly the batch as written, and no config file
    case.source = draw(st.sampled_from(SOURCES)) if draw(st.integers(0, 3)) == 0 else "file"
    case.config = draw(st.sampled_from(CONFIGS)) if draw(st.integers(0, 3)) == 0 else "none"
    if draw(st.integers(0, 5)) == 0 and case.config in ("none", "good"):  # the config is read first
        flag, value = draw(st.sampled_from(BAD_FLAGS))
        flags[flag] = value
        case.bad_flag = True
    case.flags = [part for pair in flags.items() for part in pair]
    if draw(st.booleans()):
        case.flags.append("--no-clips")
    return case


def expected_exit(case: Case) -> int:
    """The README's table: 2 bad flag value; 1 nothing usable (no valid item, an unusable output
    path); 3 finished but some items failed or were skipped; 0 all done."""
    if case.config not in ("none", "good"):
        return 1
    if case.bad_flag:
        return 2
    if case.source != "file" or not case.good or case.output not in ("normal", "nested"):
        return 1
    return 3 if case.bad else 0


def batch_text(case: Case) -> str:
    def dump(value: Any) -> str:
        if value == DEEP_JSON_LINE:
            return value
        return json.dumps(value, ensure_ascii=False).replace(SURROGATE, "\\ud83d")

    body = "\n".join(dump(r) for r in case.records) + "\n" if case.jsonl else dump(case.records)
    return ("\ufeff" if case.bom else "") + body


class Blocked(BaseException):
    """The command ran past the alarm: a read blocked (a FIFO) or never ended (an endless file)."""


def _alarm(signum: int, frame: object) -> None:
    raise Blocked(f"the command ran longer than {ALARM_S} s")


#: far more than any example takes: only a read that blocks or never ends gets there
ALARM_S = 60


@contextmanager
def cli_process_state() -> Iterator[None]:
    """main() installs signal handlers and logging, as a process would: put them back afterwards.
    An alarm stops a command that blocks (the test then fails instead of hanging)."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, ALARM_S)
    import logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        root.handlers[:], root.level = saved


def run_main(argv: list[str]) -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    old_argv = sys.argv
    sys.argv = ["cosmos-workflow", *argv]
    try:
        with cli_process_state(), redirect_stdout(out), redirect_stderr(err):
            main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old_argv
    return code, out.getvalue() + err.getvalue()


def write_source(case: Case, prompts: Path) -> None:
    """The prompts file as the case has it: the batch, or a FIFO, an endless file, deep JSON."""
    if case.source == "fifo":
        os.mkfifo(prompts)  # no writer: opened as a plain file, it would block for ever
    elif case.source == "endless":
        prompts.symlink_to("/dev/zero")
    elif case.source == "deep":
        prompts.write_text(DEEP_JSON_LINE)
    else:
        prompts.write_text(batch_text(case), encoding="utf-8")


def config_flags(case: Case, root: Path) -> list[str]:
    """``--config`` and the file as the case has it, made under ``root/cfg``."""
    if case.config == "none":
        return []
    config = root / "cfg" / "config.toml"
    config.parent.mkdir(exist_ok=True)
    if case.config == "fifo":
        os.mkfifo(config)
    elif case.config == "endless":
        config.symlink_to("/dev/zero")
    else:
        config.write_text(DEEP_TOML if case.config == "deep" else "[upsample]\nmax_tokens = 300\n")
    return ["--config", str(config)]


def output_path(case: Case, root: Path, prompts: Path) -> Path:
    out = root / "out"
    return {
        "normal": out / "o.json",
        "nested": out / "new" / "deeper" / "o.json",
        "input": prompts,
        "folder": out,
        "fifo": out / "fifo",
        "device": out / "null",
        "under-file": out / "afile" / "o.json",
    }[case.output]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root``: (file type, size)."""
    found = {}
    for path in root.rglob("*"):
        status = path.lstat()
        size = status.st_size if stat.S_ISREG(status.st_mode) else 0
        found[str(path.relative_to(root))] = (stat.S_IFMT(status.st_mode), size)
    return found


@pytest.fixture(scope="module")
def video() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield make_video(Path(folder) / "v.mp4", 64, 48, frames=3)


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=cases())
@example(case=Case(records=[{"name": "a", "prompt": "x"}], good=["a"], output="input"))
@example(case=Case(records=[{"name": "a", "prompt": "x"}], good=["a"], output="device"))
@example(case=Case(records=[{"name": "a", "prompt": "x"}], good=["a"], source="fifo"))
@example(case=Case(records=[{"name": "a", "prompt": "x"}], good=["a"], source="endless"))
@example(case=Case(records=[{"name": "a", "prompt": "x"}], good=["a"], source="deep"))
@example(case=Case(records=[{"name": "a", "prompt": "x"}], good=["a"], config="fifo"))
@example(case=Case(records=[{"name": "a", "prompt": "x"}], good=["a"], config="endless"))
@example(case=Case(records=[{"name": "a", "prompt": "x"}], good=["a"], config="deep"))
@example(case=Case(records=[{"name": "a", "prompt": "x"}, DEEP_JSON_LINE], good=["a"], bad=1, jsonl=True))
@example(
    case=Case(
        records=[
            {"name": "a", "prompt": "x" + SURROGATE, "video_path": "v.mp4"},
            {"name": "b", "prompt": "[/]"},
            None,
        ],
        good=["a", "b"],
        bad=1,
        jsonl=True,
        bom=True,
    )
)
def test_fuzz_batch_files_and_options(case: Case, video: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "in").mkdir()
        (root / "out").mkdir()
        prompts = root / "in" / ("p.jsonl" if case.jsonl else "p.json")
        write_source(case, prompts)
        (root / "in" / "v.mp4").write_bytes(video.read_bytes())
        os.mkfifo(root / "out" / "fifo")
        if os.geteuid() == 0:
            os.mknod(root / "out" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        else:
            (root / "out" / "null").symlink_to("/dev/null")
        (root / "out" / "afile").write_text("")
        config = config_flags(case, root)
        before = snapshot(root)
        output = output_path(case, root, prompts)

        argv = ["upsample-prompts", str(prompts), "-o", str(output), "--engine", "fake", "-q"]
        code, printed = run_main([*argv, *case.flags, *config])

        event(f"exit {code}, output {case.output}, source {case.source}, config {case.config}")
        assert "Traceback" not in printed, printed
        assert code == expected_exit(case), printed
        after = snapshot(root)
        for name, kind in before.items():  # inputs and special files untouched
            assert after.get(name) == kind, name
        if code in (1, 2):  # refused: nothing at all was written (no journal, lock or clips)
            assert after == before
        folder = output.parent.relative_to(root)
        for name in set(after) - set(before):  # written only into the output's folder (made if new)
            assert Path(name) == folder or folder in Path(name).parents or Path(name) in folder.parents, name
        if code in (0, 3):
            records = json.loads(output.read_text(encoding="utf-8"))
            assert [r["name"] for r in records] == case.good
            assert {r["status"] for r in records} <= {"ok", "text_only"}


# Tampered journals (issue 23): a finished run's journal edited line by line as a careless or
# hostile person (or a failing disk) would, then `merge` or a resume. No record that breaks the
# record's rules may reach the output; every untouched record is kept; nothing else is lost.

TAMPERINGS = ["keep", "garble", "cut", "wrong-type", "ok-without-prompt", "clip-outside"]
OUTSIDE_CLIPS = ["/etc/shadow", "{clips}/../p.json", "{clips}/sub/a.mp4", "{root}/elsewhere/a.mp4"]


@dataclass
class Tampering:
    """What is done to each journal line (one per item), and what follows."""

    lines: list[str]
    outside: str = "/etc/shadow"
    wrong: tuple[str, Any] = ("frames", "2")
    drop_output: bool = False
    command: str = "merge"


@st.composite
def tamperings(draw: st.DrawFn) -> Tampering:
    return Tampering(
        lines=draw(st.lists(st.sampled_from(TAMPERINGS), min_size=3, max_size=3)),
        outside=draw(st.sampled_from(OUTSIDE_CLIPS)),
        wrong=draw(st.sampled_from([("frames", "2"), ("status", 7), ("name", 5), ("sampling", [])])),
        drop_output=draw(st.booleans()),
        command=draw(st.sampled_from(["merge", "resume"])),
    )


def tampered_line(line: str, how: str, case: Tampering, root: Path, last: bool) -> bytes:
    record = json.loads(line)
    if how == "garble":
        return b"\x00\xff{" + line.encode()[5:40] + b"\n"
    if how == "cut":
        return line.encode()[: len(line) // 2] + (b"" if last else b"\n")
    if how == "wrong-type":
        record[case.wrong[0]] = case.wrong[1]
    elif how == "ok-without-prompt":
        record.update(status="ok", upsampled_prompt=None)
    elif how == "clip-outside":
        record["preprocessed_video"] = case.outside.format(clips=root / "out" / "o_clips", root=root)
    return (json.dumps(record) + "\n").encode()


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=tamperings())
@example(case=Tampering(lines=["ok-without-prompt", "clip-outside", "cut"], drop_output=True))
@example(case=Tampering(lines=["garble", "keep", "wrong-type"], command="resume"))
def test_fuzz_tampered_journals(case: Tampering, video: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "out").mkdir()
        prompts = root / "p.json"
        items = [{"name": f"shot{i}", "prompt": f"a street, take {i}"} for i in range(3)]
        items[0]["video_path"] = "v.mp4"  # its record names a real clip, which must stay trusted
        (root / "v.mp4").write_bytes(video.read_bytes())
        prompts.write_text(json.dumps(items))
        output = root / "out" / "o.json"
        run = ["upsample-prompts", str(prompts), "-o", str(output), "--engine", "fake", "-q"]
        assert run_main(run)[0] == 0
        journal = output.with_name("o.json.journal.jsonl")
        lines = journal.read_text().splitlines()
        by_name = {json.loads(line)["name"]: line for line in lines}
        journal.write_bytes(
            b"".join(
                tampered_line(by_name[f"shot{i}"], how, case, root, last=i == 2)
                for i, how in enumerate(case.lines)
            )
        )
        if case.drop_output:
            output.unlink()
        kept = {f"shot{i}" for i, how in enumerate(case.lines) if how == "keep"}

        argv = ["merge", str(prompts), "-o", str(output)] if case.command == "merge" else run
        code, printed = run_main(argv)

        event(f"{case.command}, exit {code}")
        assert "Traceback" not in printed, printed
        records = json.loads(output.read_text(encoding="utf-8"))
        clips = root / "out" / "o_clips"
        for record in records:  # whatever came through keeps the record's rules
            assert record["status"] in ("ok", "text_only") and record["upsampled_prompt"]
            clip = record["preprocessed_video"]
            assert (clip is not None) == (record["name"] == "shot0")
            assert clip is None or (Path(clip).parent == clips and Path(clip).is_file())
            assert isinstance(record["frames"], int) and isinstance(record["name"], str)
        names = [r["name"] for r in records]
        if case.command == "resume" or not case.drop_output:  # all there: redone, or still held
            assert code == 0, printed
            assert names == ["shot0", "shot1", "shot2"]
        else:  # merged from the journal alone: exactly the untouched records
            assert names == sorted(kept)
            assert code == (0 if len(kept) == 3 else 3), printed
