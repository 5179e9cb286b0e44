"""Journal and atomic writes never crash on text, never leave a temp file, never replace a special file."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from cosmos_workflow.errors import PathError
from cosmos_workflow.files import write_json_atomic
from cosmos_workflow.journal import SEAL, Journal, read_records, saved_this_process
from cosmos_workflow.specs.results import UpsampleRecord


def record(name: str, prompt: str = "p") -> UpsampleRecord:
    return UpsampleRecord(name=name, original_prompt=prompt, upsampled_prompt="long", status="ok", key=name)


def test_case3_journal_encodes_a_lone_surrogate_as_replacement_character(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.append([record("a", "x\ud83d"), record("b")])
    first, second = read_records(journal.path, clips_dir=tmp_path)
    assert first.original_prompt == "x\ufffd"
    assert first.warning is not None and "original_prompt" in first.warning and "U+FFFD" in first.warning
    assert second.original_prompt == "p" and second.warning is None
    assert saved_this_process()[journal.path] == 2


def test_case3_atomic_output_encodes_a_lone_surrogate(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    write_json_atomic(out, [{"prompt": "x\ud83d"}])
    assert out.read_text(encoding="utf-8") == '[\n  {\n    "prompt": "x\ufffd"\n  }\n]\n'


def test_case6_atomic_write_leaves_no_temp_file_when_the_disk_is_full(tmp_path: Path) -> None:
    # a real failing write: the file-size limit makes write(2) fail with EFBIG, as a full disk fails
    code = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from cosmos_workflow.files import write_json_atomic\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "try:\n"
        "    write_json_atomic(Path(sys.argv[1]), ['x' * 100] * 1000)\n"
        "except OSError as exc:\n"
        "    print(exc.errno)\n"
    )
    out = tmp_path / "out.json"
    out.write_text("[]\n")
    result = subprocess.run(
        [sys.executable, "-c", code, str(out)], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "27"  # EFBIG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    assert out.read_text() == "[]\n"  # the old output is intact


def test_case6_atomic_write_removes_its_temp_file_on_any_failure(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "out.json", [1, 2, object()])
    assert list(tmp_path.iterdir()) == []


def test_case1_atomic_write_never_replaces_a_special_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(PathError, match="not a regular file"):
        write_json_atomic(fifo, [])
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        with pytest.raises(PathError, match="not a regular file"):
            write_json_atomic(tmp_path / "sock", [])
    assert (tmp_path / "fifo").is_fifo() and (tmp_path / "sock").is_socket()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "sock"]


CLIPS = Path("/runs/out_clips")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"upsampled_prompt": None}, "status 'ok' without an upsampled_prompt"),
        ({"upsampled_prompt": "  "}, "status 'ok' without an upsampled_prompt"),
        ({"status": "text_only", "upsampled_prompt": ""}, "status 'text_only' without an upsampled_prompt"),
        ({"status": "error", "error": "boom"}, "status 'error' with an upsampled_prompt"),
        ({"status": "fallback", "upsampled_prompt": None, "error": "x"}, "status 'fallback' without"),
        ({"frames": -1}, "Input should be greater than or equal to 0"),
        ({"frames": "2"}, "Input should be a valid integer"),
        ({"name": ""}, "String should have at least 1 character"),
        ({"preprocessed_video": "/etc/shadow"}, "'/etc/shadow' is not a clip in the run's clips folder"),
        ({"preprocessed_video": "/runs/out_clips/../x.mp4"}, "is not a clip in the run's clips folder"),
        ({"preprocessed_video": "/runs/out_clips/sub/x.mp4"}, "is not a clip in the run's clips folder"),
    ],
)
def test_case9_a_record_read_back_keeps_the_records_rules(change: dict[str, object], problem: str) -> None:
    data = {**record("a").model_dump(mode="json"), **change}
    with pytest.raises(ValidationError, match=re.escape(problem)):
        UpsampleRecord.read_back(json.dumps(data), clips_dir=CLIPS)
    with pytest.raises(ValidationError, match=re.escape(problem)):
        UpsampleRecord.read_back(data, clips_dir=CLIPS)


def test_case9_a_clip_in_the_clips_folder_is_trusted() -> None:
    data = {**record("a").model_dump(mode="json"), "preprocessed_video": "/runs/out_clips/a_0123.mp4"}
    assert (
        UpsampleRecord.read_back(json.dumps(data), clips_dir=CLIPS).preprocessed_video
        == data["preprocessed_video"]
    )


def test_case11b_corrupt_incomplete_and_sealed_lines_are_told_apart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.append([record("a")])
    with journal.path.open("a") as handle:
        handle.write("not json\n" + record("b").model_dump_json()[:20])
    with caplog.at_level(logging.WARNING):
        assert [r.name for r in read_records(journal.path, clips_dir=tmp_path)] == ["a"]
    assert [m.split(";")[0] for m in caplog.messages] == [
        f"{journal.path} line 2 is corrupt (not a JSON record)",
        f"{journal.path} line 3 is incomplete (an interrupted write)",
    ]
    caplog.clear()
    journal.append([record("c")])  # seals line 3
    with caplog.at_level(logging.WARNING):
        assert [r.name for r in read_records(journal.path, clips_dir=tmp_path)] == ["a", "c"]
    assert caplog.messages == []  # line 2 was reported already (once per process); line 3 is sealed
    assert journal.path.read_text().splitlines()[2].endswith(SEAL.strip())
