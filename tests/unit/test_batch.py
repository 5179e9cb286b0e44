"""The seed's input format: per-item validation, whole-file errors, relative paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cosmos_workflow.errors import InputFileError
from cosmos_workflow.specs.batch import load_batch


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_good_items_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    prompts = write(
        tmp_path / "sub" / "p.json",
        [
            {"name": "a", "prompt": "A city", "video_path": "v/a.mp4"},
            {"name": "b", "prompt": "A forest", "video_path": "/abs/b.mp4"},
            {"name": "c", "prompt": "Text only"},
            {"name": "d", "prompt": "Null video", "video_path": None},
        ],
    )
    batch = load_batch(prompts)
    assert batch.problems == []
    assert [i.name for i in batch.items] == ["a", "b", "c", "d"]
    assert batch.items[0].video_path == tmp_path / "sub" / "v" / "a.mp4"
    assert batch.items[1].video_path == Path("/abs/b.mp4")
    assert batch.items[2].video_path is None and batch.items[3].video_path is None


def test_bad_items_are_reported_one_line_each_and_skipped(tmp_path: Path) -> None:
    prompts = write(
        tmp_path / "p.json",
        [
            {"name": "ok", "prompt": "fine"},
            {"name": "empty", "prompt": "   "},
            {"name": "missing"},
            {"name": 7, "prompt": "number name"},
            {"name": "typed", "prompt": ["not", "text"]},
            {"name": "extra", "prompt": "x", "fps": 24},
            {"name": "ok", "prompt": "duplicate"},
            "just a string",
            {"name": "ok2", "prompt": "fine too", "video_path": 12},
        ],
    )
    batch = load_batch(prompts)
    assert [i.name for i in batch.items] == ["ok"]
    lines = [str(p) for p in batch.problems]
    assert len(lines) == 8
    assert all("\n" not in line for line in lines)
    assert "p.json item 2 ('empty'): prompt: prompt is empty" in lines[0]
    assert "missing 'prompt'" in lines[1]
    assert "item 4" in lines[2] and "name" in lines[2]
    assert "unknown key 'fps'" in lines[4] and "allowed keys" in lines[4]
    assert "duplicate name" in lines[5]
    assert "expected an object" in lines[6]
    assert "video_path" in lines[7]


def test_jsonl_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"name": "a", "prompt": "x"}\n\n{"name": "b", "prompt": "y"}\n', encoding="utf-8")
    assert [i.name for i in load_batch(path).items] == ["a", "b"]


@pytest.mark.parametrize(
    ("content", "suffix", "expected"),
    [
        ("[{", ".json", r"not valid JSON \(line 1"),
        ('{"name": "a"}', ".json", "not a list"),
        ('{"name": "a"}\n{bad', ".jsonl", "line 2 is not valid JSON"),
        (b"\xff\xfe\x00", ".json", "cannot read"),
    ],
)
def test_unreadable_file_is_one_error(
    tmp_path: Path, content: str | bytes, suffix: str, expected: str
) -> None:
    path = tmp_path / f"p{suffix}"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InputFileError, match=expected):
        load_batch(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        load_batch(tmp_path / "nope.json")
