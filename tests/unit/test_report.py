"""The review page's HTML, header and token bars, without a browser or a video."""

from __future__ import annotations

import base64
import hashlib
import html as html_lib
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cosmos_workflow.errors import InputFileError, ReportError
from cosmos_workflow.report import (
    PENDING,
    Shot,
    load_records,
    render_report,
    write_report,
    write_report_for_file,
)
from cosmos_workflow.report._shots import shot_from_record, shot_from_spec, shots_from_records
from cosmos_workflow.report._summary import BAR_WIDTH, budget_of, summarise
from cosmos_workflow.specs.prompt_spec import UpsamplingParams, new_spec
from cosmos_workflow.specs.results import UpsampleRecord
from cosmos_workflow.specs.store import StoredSpec

HOSTILE = '</p><script>alert("x")</script><img src=x onerror=alert(1)> & "quoted" \'single\''


def record(**changes: object) -> UpsampleRecord:
    fields: dict[str, object] = {
        "name": "shot",
        "original_prompt": "a car",
        "upsampled_prompt": "a red car turns left",
        "status": "ok",
        "image_tokens": 1054,
        "text_tokens": 9,
        "prompt_tokens": 1063,
        "completion_tokens": 95,
        "max_tokens": 300,
        "max_model_len": 4096,
        "model": "tiny-random",
        "engine": "hf",
        "sampling": {"temperature": 0.6, "top_p": 1.0, "max_tokens": 300},
        "key": "a" * 32,
    }
    return UpsampleRecord.model_validate(fields | changes)


def page_of(*records: UpsampleRecord) -> str:
    return render_report(shots_from_records(records), title="t", source="s.json")


def test_user_text_is_escaped_everywhere() -> None:
    html = page_of(
        record(
            name=HOSTILE,
            original_prompt=HOSTILE,
            upsampled_prompt=HOSTILE,
            warning=HOSTILE,
            error=HOSTILE,
            plan_changes=[HOSTILE],
            model=HOSTILE,
            video_path=HOSTILE,
        )
    )
    assert "<script>alert" not in html and "<img src=x" not in html and "</p><script>" not in html
    assert html.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") >= 8  # every field, header included
    assert len(re.findall(r"<script\b", html)) == 1  # the page's own


def test_policy_allows_only_the_inline_style_and_script_by_hash() -> None:
    html = page_of(record())
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert policy is not None
    directives = dict(d.strip().split(" ", 1) for d in html_lib.unescape(policy.group(1)).split(";"))
    assert directives["default-src"] == "'none'" and directives["img-src"] == "data:"
    for tag, directive in (("style", "style-src"), ("script", "script-src")):
        [body] = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert directives[directive] == f"'sha256-{digest}'"


def test_no_remote_resources() -> None:
    html = page_of(record(video_path="https://example.com/v.mp4"))
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", html, flags=re.I)
    assert "@import" not in html and "url(" not in html


def test_budget_bar_is_to_scale() -> None:
    budget = budget_of(shot_from_record(record()))
    assert budget is not None and budget.fits and budget.used == 1063 + 300 and budget.limit_x == BAR_WIDTH
    widths = {s.kind: s.width for s in budget.segments}
    assert widths["image"] == round(1054 * BAR_WIDTH / 4096, 2)
    assert [s.tokens for s in budget.segments] == [1054, 9, 95, 205]
    assert budget.segments[-1].x == pytest.approx(sum(s.width for s in budget.segments[:-1]), abs=0.05)


def test_an_overflowing_shot_scales_to_its_own_size() -> None:
    shot = Shot(
        name="n", original_prompt="p", upsampled_prompt=None, status="error",
        image_tokens=4680, text_tokens=4, max_tokens=300, max_model_len=4096,
    )  # fmt: skip
    budget = budget_of(shot)
    assert budget is not None and not budget.fits and budget.used == 4984
    assert budget.limit_x == round(4096 * BAR_WIDTH / 4984, 2)
    html = render_report([shot], title="t", source="s")
    assert "over the limit" in html


def test_no_bar_without_token_counts() -> None:
    assert budget_of(Shot(name="n", original_prompt="p", upsampled_prompt=None, status=PENDING)) is None


def test_header_counts_tokens_time_and_settings() -> None:
    shots = [
        record(status="ok", timestamp="2026-01-01T10:00:00+00:00"),
        record(status="error", upsampled_prompt=None, timestamp="2026-01-01T10:02:05+00:00"),
        record(status="ok", sampling={"temperature": 0.2}, timestamp="2026-01-01T10:01:00+00:00"),
    ]
    summary = summarise(shots_from_records(shots), elapsed=3.25)
    assert summary.counts == [("ok", 2), ("error", 1)]
    assert (summary.image_tokens, summary.completion_tokens) == (3 * 1054, 3 * 95)
    assert summary.first == "2026-01-01 10:00:00 UTC" and summary.last == "2026-01-01 10:02:05 UTC"
    assert summary.span == "2 min 05 s" and summary.elapsed == "3.2 s"
    settings = dict(summary.settings)
    assert settings["model"] == "tiny-random" and settings["engine"] == "hf"
    assert settings["temperature"] == "0.6, 0.2" and settings["max_tokens"] == "300"


def test_spec_shots(tmp_path: Path) -> None:
    pending = new_spec("city", "A city at night", input_video_path="/v/city.mp4")
    legacy = new_spec("old", "A long upsampled prompt").model_copy(
        update={"is_upsampled": True, "parent_prompt_text": "short"}
    )
    params = UpsamplingParams(
        tool_version="0.1.0",
        model="m",
        engine="fake",
        status="text_only",
        video_source="none",
        video_note="the input video is missing",
        image_tokens=0,
        text_tokens=12,
        max_tokens=300,
        max_model_len=4096,
    )
    done = new_spec("done", "A forest").model_copy(
        update={
            "upsampled_prompt": "A quiet forest",
            "upsampled_at": datetime.now(UTC),
            "upsampling_params": params,
        }
    )
    shots = [shot_from_spec(StoredSpec(tmp_path / f"{s.name}.json", s)) for s in (pending, legacy, done)]
    assert [s.status for s in shots] == [PENDING, "ok", "text_only"]
    assert (shots[1].original_prompt, shots[1].upsampled_prompt) == ("short", "A long upsampled prompt")
    assert shots[2].warning == "the input video is missing" and shots[2].source_file == str(
        tmp_path / "done.json"
    )
    assert budget_of(shots[0]) is None and budget_of(shots[2]) is not None


def test_load_records_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    with pytest.raises(InputFileError, match="not found; pass the output JSON"):
        load_records(path)
    path.write_text("[{", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"not valid JSON \(line 1"):
        load_records(path)
    path.write_text(json.dumps([{"name": "x"}]), encoding="utf-8")
    with pytest.raises(InputFileError, match=r"item 0.original_prompt: Field required \(and \d+ more\)"):
        load_records(path)
    path.write_text(json.dumps([record().model_dump(mode="json")]), encoding="utf-8")
    assert load_records(path) == [record()]


def test_write_report_for_file(tmp_path: Path) -> None:
    results = tmp_path / "up.json"
    results.write_text(json.dumps([record().model_dump(mode="json")]), encoding="utf-8")
    page = write_report_for_file(results)
    assert page == tmp_path / "up.html" and page.read_text(encoding="utf-8").count('class="card"') == 1
    with pytest.raises(ReportError, match="would overwrite"):
        write_report_for_file(results, results)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_unwritable_report_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(ReportError, match=r"cannot write the report .*; check the folder"):
        write_report([record()], blocker / "r.html")
