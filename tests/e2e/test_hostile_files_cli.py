"""Issue 23: files a user names, through the one door (``cosmos_workflow/userfiles.py``).

Each test is named after the issue's case. Real FIFOs (``os.mkfifo``), real ``/dev/zero`` links,
the real CLI in a subprocess with a timeout: a command that blocks fails the test, not CI.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: a command that would block on a FIFO is killed here and fails the test
TIMEOUT_S = 20
#: the address space a command may use: reading /dev/zero would pass it in a second
MEMORY_LIMIT = 4 << 30
#: nested deeper than tomllib and json can parse (they raise RecursionError)
DEEP_TOML = "model = " + "[" * 330 + "]" * 330 + "\n"
DEEP_JSON = "[" * 100_000 + "]" * 100_000


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def cli(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cosmos_workflow", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=TIMEOUT_S,
        preexec_fn=_limit_memory,
    )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one ``error:`` line; no traceback."""
    printed = result.stdout + result.stderr
    assert "Traceback" not in printed and "RecursionError" not in printed, printed
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    return line


def lines_naming(result: subprocess.CompletedProcess[str], name: str) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if name in line]


@pytest.fixture
def spec_folder(tmp_path: Path) -> Path:
    """A spec folder with one good spec (made by create-spec) and its date folder."""
    specs = tmp_path / "specs"
    made = cli("create-spec", "good", "A wet street", "--video", "v.mp4", "--specs-dir", str(specs))
    assert made.returncode == 0, made.stderr
    return specs


def date_folder(specs: Path) -> Path:
    [folder] = [p for p in specs.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return folder


# -- case 3: a FIFO inside a spec folder ---------------------------------------------------------


def test_case3_fifo_in_spec_folder_is_one_invalid_line_in_every_command(spec_folder: Path) -> None:
    os.mkfifo(date_folder(spec_folder) / "f.json")  # no writer: opening it to read would block
    expected = "f.json: is a FIFO (named pipe), not a regular file; fix or delete it"

    listed = cli("list-specs", "--specs-dir", str(spec_folder))
    assert listed.returncode == 0 and "│ good " in listed.stdout
    [line] = lines_naming(listed, "f.json")
    assert line.startswith("invalid ") and line.endswith(expected)

    created = cli("create-spec", "other", "A dry road", "--video", "v.mp4", "--specs-dir", str(spec_folder))
    assert created.returncode == 0, created.stderr  # it scans the folder for the same spec

    run = cli("upsample-prompts", "--input-dir", str(spec_folder), "--engine", "fake", "-q")
    assert "Traceback" not in run.stderr
    assert run.returncode in (0, 3), run.stderr  # which of the two: case 10 of the issue decides
    assert "2 updated" in run.stdout + run.stderr
    [invalid] = lines_naming(run, "f.json")
    assert invalid.startswith("invalid") and invalid.endswith(expected)

    report = cli("report", "--input-dir", str(spec_folder))
    assert report.returncode == 0, report.stderr
    [skipped] = lines_naming(report, "f.json")
    assert skipped.endswith(expected)
    assert (spec_folder / "report.html").is_file()
    assert (date_folder(spec_folder) / "f.json").is_fifo()


# -- case 4: /dev/zero linked into a spec folder --------------------------------------------------


def test_case4_dev_zero_in_spec_folder_is_never_read(spec_folder: Path) -> None:
    (date_folder(spec_folder) / "z.json").symlink_to("/dev/zero")  # endless: read, it fills memory
    listed = cli("list-specs", "--specs-dir", str(spec_folder))  # under a 4 GiB address space
    assert listed.returncode == 0, listed.stderr
    [line] = lines_naming(listed, "z.json")
    assert line.endswith("z.json: is a character device, not a regular file; fix or delete it")
    assert "│ good " in listed.stdout and "MemoryError" not in listed.stderr


# -- case 5: [remote] known_hosts or ssh_key set to a FIFO or /dev/zero ---------------------------


def remote_config(tmp_path: Path, **paths: Path) -> Path:
    """A [remote] config naming ``paths``; nothing listens on port 9, should anything connect."""
    lines = ["[remote]", 'host = "127.0.0.1"', "port = 9", 'user = "nobody"', 'mode = "venv"']
    lines += [f'{key} = "{path}"' for key, path in paths.items()]
    config = tmp_path / "remote.toml"
    config.write_text("\n".join([*lines, "[paths]", 'remote_dir = "~/cosmos"', ""]))
    return config


def remote_run(prompts: Path, config: str) -> tuple[str, ...]:
    output = str(prompts.with_name("o.json"))
    return (
        "upsample-prompts",
        str(prompts),
        "-o",
        output,
        "--remote",
        "--config",
        config,
        "--engine",
        "fake",
    )


def special_files(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    zero = tmp_path / "zero"
    zero.symlink_to("/dev/zero")
    return {"a FIFO (named pipe)": fifo, "a character device": zero}


@pytest.mark.parametrize(
    ("key", "what"), [("known_hosts", "known_hosts file"), ("ssh_key", "[remote] ssh_key")]
)
def test_case5_remote_key_files_fifo_or_dev_zero_are_one_line_in_check_trust_and_run(
    tmp_path: Path, key: str, what: str
) -> None:
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps([{"name": "a", "prompt": "x"}]))
    for kind, path in special_files(tmp_path).items():
        config = str(remote_config(tmp_path, **{key: path}))
        for args in (
            ("remote", "check", "--config", config),
            ("remote", "trust", "--config", config, "--yes"),
            remote_run(prompts, config),
        ):
            result = cli(*args)
            assert result.returncode == 1, result.stderr
            assert error_line(result).startswith(f"error: {what} {path} is {kind}, not a regular file; "), (
                args
            )
            assert result.stdout == ""  # refused before any check, plan or connection


# -- case 6: a FIFO as the prompts file; --config FIFO or /dev/zero -------------------------------


def test_case6_fifo_prompts_file_is_exit_1_in_plan_upsample_merge_and_report(tmp_path: Path) -> None:
    fifo = tmp_path / "p.json"
    os.mkfifo(fifo)
    out = str(tmp_path / "o.json")
    for args, what in (
        (("plan", str(fifo)), "prompts file"),
        (("upsample-prompts", str(fifo), "-o", out, "--engine", "fake"), "prompts file"),
        # merge checks its paths (the output must not be the input) before reading anything
        (("merge", str(fifo), "-o", out), "input file"),
        (("report", str(fifo)), "results file"),
    ):
        result = cli(*args)
        assert result.returncode == 1, (args, result.stderr)
        assert error_line(result).startswith(
            f"error: {what} {fifo} is a FIFO (named pipe), not a regular file; "
        )
    assert fifo.is_fifo() and not Path(out).exists()


def test_case6_config_fifo_dev_zero_or_too_large_says_what_is_wrong(tmp_path: Path) -> None:
    special = special_files(tmp_path)
    large = tmp_path / "large.toml"
    large.write_text("# padding\n" * 200_000)
    cases = {f"is {kind}, not a regular file": path for kind, path in special.items()}
    cases["is 1.9 MiB, over the 1.0 MiB limit of a config file"] = large
    cases["is a character device, not a regular file"] = Path("/dev/zero")
    for problem, path in cases.items():
        prompts = str(ROOT / "examples" / "prompts.json")
        for args in (("config", "--config", str(path)), ("plan", prompts, "--config", str(path))):
            line = error_line(cli(*args))
            assert line.startswith(
                f"error: config file {path} {problem}; fix the file or pass another --config"
            )
            assert "not found" not in line


# -- case 7: a TOML config nested 330 deep ---------------------------------------------------------


def test_case7_deep_toml_config_is_one_line_given_or_in_the_working_directory(tmp_path: Path) -> None:
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps([{"name": "a", "prompt": "x"}]))
    given = tmp_path / "deep.toml"
    given.write_text(DEEP_TOML)
    here = tmp_path / "here"
    here.mkdir()
    (here / "cosmos-workflow.toml").write_text(DEEP_TOML)
    commands = [("config",), ("plan", str(prompts)), ("upsample-prompts", str(prompts), "--engine", "fake")]
    for args in commands:
        for extra, cwd, path in (
            (("--config", str(given)), ROOT, given),
            ((), here, here / "cosmos-workflow.toml"),
        ):
            result = cli(*args, *extra, cwd=cwd)
            assert result.returncode == 1, (args, result.stderr)
            assert error_line(result) == (
                f"error: config file {path} is nested too deeply (more than 64 levels of brackets); "
                "fix the file or pass another --config"
            )


# -- case 8: report on a JSON nested 100,000 deep -------------------------------------------------


def test_case8_report_on_deep_json_is_one_line_like_upsample_prompts(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP_JSON)
    report = cli("report", str(deep))
    assert report.returncode == 1
    assert error_line(report) == (
        f"error: results file {deep} is nested too deeply (more than 64 levels of brackets); "
        "pass the output JSON of upsample-prompts"
    )
    upsample = cli("upsample-prompts", str(deep), "-o", str(tmp_path / "o.json"), "--engine", "fake")
    assert upsample.returncode == 1
    assert "is nested too deeply (more than 64 levels of brackets)" in error_line(upsample)


# -- case 11c: an unknown COSMOS_* variable -------------------------------------------------------


def test_case11c_unknown_cosmos_variable_is_warned_with_did_you_mean(tmp_path: Path) -> None:
    result = cli("config", env={"COSMOS_MAX_TOKEN": "200", "COSMOS_CI": "1"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [warning] = [line for line in result.stderr.splitlines() if "COSMOS_" in line]
    assert (
        "unknown environment variable COSMOS_MAX_TOKEN (did you mean 'COSMOS_MAX_TOKENS'?); it is ignored"
        in warning
    )
