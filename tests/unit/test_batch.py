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
        (b"\xff\xfe\x00", ".json", "not UTF-8 text"),
        ("[" * 100_000, ".json", "nested too deeply"),
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


# issue 15: hostile inputs. Each test is named after the case.


def test_case3_lone_surrogate_becomes_replacement_character_with_a_warning(tmp_path: Path) -> None:
    prompts = tmp_path / "p.json"
    prompts.write_text('[{"name": "emoji\\ud83d", "prompt": "x\\ud83d"}, {"name": "ok", "prompt": "y"}]')
    batch = load_batch(prompts)
    assert batch.problems == []
    broken, ok = batch.items
    assert broken.name == "emoji\ufffd" and broken.prompt == "x\ufffd"
    assert broken.warning is not None and "U+FFFD" in broken.warning and "name, prompt" in broken.warning
    assert ok.warning is None
    broken.model_dump_json().encode("utf-8")  # now encodable


def test_case4_nul_in_video_path_is_that_items_problem(tmp_path: Path) -> None:
    prompts = write(
        tmp_path / "p.json",
        [
            {"name": "nul", "prompt": "x", "video_path": "a\x00b.mp4"},
            {"name": "surrogate", "prompt": "x", "video_path": "v\ud83d.mp4"},
            {"name": "ok", "prompt": "y"},
        ],
    )
    batch = load_batch(prompts)
    assert [i.name for i in batch.items] == ["surrogate", "ok"]
    [problem] = batch.problems
    assert str(problem) == "p.json item 1 ('nul'): video_path: contains a NUL character; fix the path"
    assert batch.items[0].video_path == tmp_path / "v\ufffd.mp4"
    assert batch.items[0].warning is not None and "video_path" in batch.items[0].warning


def test_case7_jsonl_keeps_unicode_line_separators_inside_strings(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    records = [{"name": "a", "prompt": "one\u2028two\u0085three\x1cfour"}, {"name": "b", "prompt": "y"}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\r\n", encoding="utf-8")
    batch = load_batch(path)
    assert batch.problems == []
    assert [i.prompt for i in batch.items] == [records[0]["prompt"], "y"]


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_case7_utf8_bom_is_accepted(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"p{suffix}"
    body = '{"name": "a", "prompt": "x"}' if suffix == ".jsonl" else '[{"name": "a", "prompt": "x"}]'
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert [i.name for i in load_batch(path).items] == ["a"]


def test_case7_one_bad_jsonl_line_is_that_items_problem(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"name": "a", "prompt": "x"}\n{bad\n\n{"name": "c", "prompt": "z"}\n', encoding="utf-8")
    batch = load_batch(path)
    assert [i.name for i in batch.items] == ["a", "c"]
    [problem] = batch.problems
    assert str(problem).startswith("p.jsonl line 2: not valid JSON (column 2")


def test_case9_deep_nesting_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"name": "a", "prompt": "x"}\n' + "[" * 100_000 + "\n", encoding="utf-8")
    batch = load_batch(path)
    assert [i.name for i in batch.items] == ["a"]
    assert [str(p) for p in batch.problems] == [
        "p.jsonl line 2: nested too deeply to read; "
        "each item must be a flat {name, prompt, video_path} object"
    ]
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    with pytest.raises(InputFileError, match="nested too deeply"):
        load_batch(deep)


def test_case16_duplicate_keys_are_reported_per_item(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(
        '[{"name": "a", "prompt": "first", "prompt": "second"}, '
        '{"name": "b", "prompt": "y", "extra": {"k": 1, "k": 2}}, '
        '{"name": "c", "prompt": "z"}]'
    )
    batch = load_batch(path)
    assert [i.name for i in batch.items] == ["c"]
    first, second = (str(p) for p in batch.problems)
    assert first == "p.json item 1 ('a'): key 'prompt' given more than once; keep one"
    assert second.startswith("p.json item 2 ('b'): unknown key 'extra'")
