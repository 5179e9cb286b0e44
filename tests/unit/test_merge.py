"""Merging rank journals into one output: each item exactly once, in input order."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cosmos_workflow.cli.app import app
from cosmos_workflow.cli.merge import EXIT_INCOMPLETE
from cosmos_workflow.errors import OutputShrinkError
from cosmos_workflow.files import keep_copy
from cosmos_workflow.journal import Journal, journal_path_for
from cosmos_workflow.journal_merge import BY_NAME, by_key, journals_for, merge_output, merge_records
from cosmos_workflow.specs.batch import BatchItem
from cosmos_workflow.specs.results import Status, UpsampleRecord

CLIPS = Path("clips")


def item(name: str, prompt: str | None = None) -> BatchItem:
    return BatchItem(name=name, prompt=prompt or f"prompt of {name}")


def record(
    name: str,
    *,
    status: Status = "ok",
    text: str | None = None,
    stamp: str = "2025-01-01T00:00:00+00:00",
    prompt: str | None = None,
    key: str | None = None,
) -> UpsampleRecord:
    return UpsampleRecord(
        name=name,
        original_prompt=prompt or f"prompt of {name}",
        upsampled_prompt=None if status == "error" else (text or f"long {name}"),
        status=status,
        error="boom; retry" if status == "error" else None,
        key=key or f"key-{name}",
        timestamp=stamp,
    )


def rank_journal(output: Path, rank: int, *records: UpsampleRecord) -> Path:
    journal = Journal(journal_path_for(output, f".rank{rank}"))
    journal.append(records)
    return journal.path


def test_input_order_each_item_once_across_ranks(tmp_path: Path) -> None:
    output = tmp_path / "out.json"
    rank_journal(output, 1, record("b"), record("d"))
    rank_journal(output, 0, record("c"), record("a"), record("e"))
    items = [item(n) for n in "abcde"]

    result = merge_output(items, output, clips_dir=CLIPS)

    assert [r.name for r in result.records] == list("abcde")
    assert result.missing == []
    written = json.loads(output.read_text())
    assert [r["name"] for r in written] == list("abcde")


def test_items_without_any_record_are_listed_missing_and_left_out(tmp_path: Path) -> None:
    output = tmp_path / "out.json"
    rank_journal(output, 0, record("a"))
    result = merge_output([item("a"), item("b"), item("c")], output, clips_dir=CLIPS)
    assert result.missing == ["b", "c"]
    assert [r["name"] for r in json.loads(output.read_text())] == ["a"]


def test_latest_done_record_wins_across_journals(tmp_path: Path) -> None:
    output = tmp_path / "out.json"
    rank_journal(output, 0, record("a", text="old", stamp="2025-01-01T00:00:01+00:00"))
    rank_journal(output, 1, record("a", text="new", stamp="2025-01-02T00:00:00+00:00"))
    Journal(journal_path_for(output)).append([record("a", text="oldest", stamp="2024-12-31T00:00:00+00:00")])

    (merged,) = merge_output([item("a")], output, clips_dir=CLIPS).records

    assert merged.upsampled_prompt == "new"


def test_done_record_beats_a_later_failure(tmp_path: Path) -> None:
    output = tmp_path / "out.json"
    rank_journal(
        output,
        0,
        record("a", text="good", stamp="2025-01-01T00:00:00+00:00"),
        record("a", status="error", stamp="2025-01-05T00:00:00+00:00"),
    )
    (merged,) = merge_output([item("a")], output, clips_dir=CLIPS).records
    assert merged.status == "ok"
    assert merged.upsampled_prompt == "good"


def test_failed_item_keeps_its_latest_failure(tmp_path: Path) -> None:
    output = tmp_path / "out.json"
    rank_journal(output, 0, record("a", status="error"), record("a", status="fallback", text="orig"))
    (merged,) = merge_output([item("a")], output, clips_dir=CLIPS).records
    assert merged.status == "fallback"


def test_same_timestamp_later_line_wins(tmp_path: Path) -> None:
    output = tmp_path / "out.json"
    rank_journal(output, 0, record("a", text="first"), record("a", text="second"))
    (merged,) = merge_output([item("a")], output, clips_dir=CLIPS).records
    assert merged.upsampled_prompt == "second"


def test_by_name_ignores_a_record_for_a_changed_prompt(tmp_path: Path) -> None:
    output = tmp_path / "out.json"
    rank_journal(output, 0, record("a", prompt="what it said before"))
    result = merge_output([item("a", "what it says now")], output, clips_dir=CLIPS)
    assert result.missing == ["a"]


def test_by_key_matches_exact_requests_only(tmp_path: Path) -> None:
    output = tmp_path / "out.json"
    path = rank_journal(output, 0, record("a", key="k-other-options", text="other"), record("a", key="k1"))
    result = merge_records([item("a")], [path], by_key({"a": "k1"}), clips_dir=CLIPS)
    assert [r.key for r in result.records] == ["k1"]
    assert merge_records([item("a")], [path], by_key({"a": "k9"}), clips_dir=CLIPS).missing == ["a"]


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    output = tmp_path / "out.json"
    path = rank_journal(output, 0, record("a"))
    with path.open("a", encoding="utf-8") as handle:
        handle.write(record("b").model_dump_json()[:40])
    result = merge_records([item("a"), item("b")], [path], BY_NAME, clips_dir=CLIPS)
    assert [r.name for r in result.records] == ["a"]
    assert result.missing == ["b"]


def test_journals_for_lists_single_then_ranks_in_numeric_order(tmp_path: Path) -> None:
    output = tmp_path / "run [1].json"
    for rank in (10, 2, 0):
        rank_journal(output, rank, record("a"))
    Journal(journal_path_for(output)).append([record("a")])
    (tmp_path / "run [1].json.rank3.done.json").write_text("{}")
    (tmp_path / "other.json.rank1.journal.jsonl").write_text("")

    names = [p.name for p in journals_for(output)]

    assert names == [
        "run [1].json.journal.jsonl",
        "run [1].json.rank0.journal.jsonl",
        "run [1].json.rank2.journal.jsonl",
        "run [1].json.rank10.journal.jsonl",
    ]


def _prompts(tmp_path: Path, names: str) -> Path:
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps([{"name": n, "prompt": f"prompt of {n}"} for n in names]))
    return path


@pytest.fixture
def cli() -> CliRunner:
    import cosmos_workflow.cli.merge  # noqa: F401  (registers the command)

    return CliRunner()


def test_merge_command_writes_output_and_exits_zero(tmp_path: Path, cli: CliRunner) -> None:
    prompts = _prompts(tmp_path, "ab")
    output = tmp_path / "out.json"
    rank_journal(output, 0, record("b"))
    rank_journal(output, 1, record("a"))

    result = cli.invoke(app, ["merge", str(prompts), "-o", str(output)])

    assert result.exit_code == 0, result.output
    assert [r["name"] for r in json.loads(output.read_text())] == ["a", "b"]
    assert "merged 2 items from 2 journals" in result.output


def test_merge_command_lists_missing_and_exits_incomplete(tmp_path: Path, cli: CliRunner) -> None:
    prompts = _prompts(tmp_path, "abc")
    output = tmp_path / "out.json"
    rank_journal(output, 0, record("a"), record("c", status="error"))

    result = cli.invoke(app, ["merge", str(prompts), "-o", str(output)])

    assert result.exit_code == EXIT_INCOMPLETE
    assert "missing 1 item(s) with no result in any journal: b; rerun" in result.output
    assert "error c: boom; retry" in result.output
    assert [r["name"] for r in json.loads(output.read_text())] == ["a", "c"]


def test_merge_command_without_journals_says_which_files_it_looked_for(
    tmp_path: Path, cli: CliRunner
) -> None:
    from cosmos_workflow.errors import InputFileError

    prompts = _prompts(tmp_path, "a")
    output = tmp_path / "out.json"

    result = cli.invoke(app, ["merge", str(prompts), "-o", str(output)])

    assert isinstance(result.exception, InputFileError)
    assert "out.json.rank<N>.journal.jsonl" in str(result.exception)
    assert not output.exists()


def test_case1_merge_output_takes_what_the_output_holds(tmp_path: Path) -> None:
    output = tmp_path / "out.json"
    output.write_text(json.dumps([record("a").model_dump(mode="json")]))
    rank_journal(output, 0, record("b"))
    result = merge_output([item("a"), item("b")], output, clips_dir=CLIPS)
    assert [r.name for r in result.records] == ["a", "b"] and result.held == 1 and result.kept is None


def test_case1_merge_output_refuses_to_lose_a_record_unless_forced(tmp_path: Path) -> None:
    output = tmp_path / "out.json"
    output.write_text(json.dumps([record("a").model_dump(mode="json"), {"name": "tampered"}]))
    before = output.read_bytes()
    rank_journal(output, 0, record("b", status="error"))
    with pytest.raises(
        OutputShrinkError,
        match="entry 2 \\(not a valid record: 4 validation errors for UpsampleRecord\\), 'a' \\(ok\\) would",
    ):
        merge_output([item("b")], output, clips_dir=CLIPS)
    assert output.read_bytes() == before
    now = datetime(2026, 12, 4, 18, 0, 1, tzinfo=UTC)
    result = merge_output([item("b")], output, clips_dir=CLIPS, force=True, now=now)
    assert result.kept == tmp_path / "out.json.bak-20261204T180001Z"
    assert result.kept.read_bytes() == before
    assert [r["name"] for r in json.loads(output.read_text())] == ["b"]


def test_case1_a_done_record_replaced_by_a_failure_is_a_loss(tmp_path: Path) -> None:
    output = tmp_path / "out.json"
    output.write_text(json.dumps([record("a", prompt="old").model_dump(mode="json")]))
    rank_journal(output, 0, record("a", status="error", prompt="new"))
    with pytest.raises(OutputShrinkError, match="'a' \\(ok\\) would be lost"):
        merge_output([item("a", "new")], output, clips_dir=CLIPS)


def test_case1_keep_copy_never_overwrites_a_copy(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    now = datetime(2026, 12, 4, 18, 0, 1, tzinfo=UTC)
    copies = []
    for text in ("first", "second"):
        path.write_text(text)
        copies.append(keep_copy(path, now=now))
    assert [c.name for c in copies] == ["out.json.bak-20261204T180001Z", "out.json.bak-20261204T180001Z-2"]
    assert [c.read_text() for c in copies] == ["first", "second"]


def test_case1_an_output_entry_that_is_a_string_is_not_read_as_a_record(tmp_path: Path) -> None:
    output = tmp_path / "out.json"
    output.write_text(json.dumps([record("a").model_dump_json()]))  # JSON text, not an object
    rank_journal(output, 0, record("a"))
    with pytest.raises(OutputShrinkError, match="entry 1 \\(not a valid record: str\\)"):
        merge_output([item("a")], output, clips_dir=CLIPS)
