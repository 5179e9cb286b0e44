"""``cosmos-workflow report`` as a user runs it (real processes, the fake engine for the results)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.videos import make_video

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cosmos_workflow", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def cards(page: Path) -> list[str]:
    """Each card's name and status, in page order."""
    html = page.read_text(encoding="utf-8")
    return re.findall(r'<article class="card" id="shot-\d+" data-status="([^"]+)" data-name="([^"]+)"', html)


def test_report_of_an_output_file(tmp_path: Path) -> None:
    make_video(tmp_path / "v.mp4", 320, 180, frames=4)
    prompts = tmp_path / "p.json"
    items = [
        {"name": "a", "prompt": "A red car", "video_path": "v.mp4"},
        {"name": "b", "prompt": "A quiet street", "video_path": "missing.mp4"},
        {"name": "c", "prompt": "Text only"},
    ]
    prompts.write_text(json.dumps(items), encoding="utf-8")
    output = tmp_path / "out" / "up.json"
    run = cli("upsample-prompts", str(prompts), "-o", str(output), "--engine", "fake", "-q", "--report")
    assert run.returncode == 0, run.stderr
    page = output.with_suffix(".html")
    assert f"review page -> {page}" in run.stderr
    assert cards(page) == [("ok", "a"), ("text_only", "b"), ("text_only", "c")]
    html = page.read_text(encoding="utf-8")
    assert html.count('<img class="frame"') == 2 and "Video not found" in html
    assert "<dt>run</dt>" in html and str(output) in html  # the run's duration; the output it reviews
    page.unlink()
    made = cli("report", str(output))
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == str(page) and cards(page) == [
        ("ok", "a"),
        ("text_only", "b"),
        ("text_only", "c"),
    ]
    custom = cli("report", str(output), "-o", str(tmp_path / "elsewhere" / "r.html"))
    assert custom.returncode == 0 and (tmp_path / "elsewhere" / "r.html").is_file()


def test_open_hands_the_page_to_the_browser(tmp_path: Path) -> None:
    """``--open`` goes through Python's webbrowser, which runs $BROWSER: here a script that notes the URL."""
    results = tmp_path / "up.json"
    results.write_text("[]", encoding="utf-8")
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf %s "$1" > {shlex.quote(str(opened))}\n', encoding="utf-8")
    browser.chmod(0o755)
    run = cli("report", str(results), "--open", env={**os.environ, "BROWSER": str(browser)})
    assert run.returncode == 0, run.stderr
    assert opened.read_text(encoding="utf-8") == (tmp_path / "up.html").as_uri()


def test_report_of_a_spec_folder(tmp_path: Path) -> None:
    specs = tmp_path / "prompts"
    video = make_video(tmp_path / "city.mp4", 320, 180)
    for name, prompt in (("city", "A city at night"), ("later", "A later shot")):
        made = cli("create-spec", name, prompt, "--video", str(video), "--specs-dir", str(specs))
        assert made.returncode == 0, made.stderr
    done = cli("upsample-prompts", "--input-dir", str(specs), "--engine", "fake", "-q", "--report")
    assert done.returncode == 0, done.stderr
    assert sorted(cards(specs / "report.html")) == [("ok", "city"), ("ok", "later")]
    cli("create-spec", "new", "A new shot", "--video", str(video), "--specs-dir", str(specs))
    (specs / "broken.json").write_text("{", encoding="utf-8")
    report = cli("report", "--input-dir", str(specs))
    assert report.returncode == 0, report.stderr
    assert "skipped" in report.stderr and "broken.json" in report.stderr
    page = specs / "report.html"
    assert sorted(cards(page)) == [("ok", "city"), ("ok", "later"), ("pending", "new")]
    assert page.read_text(encoding="utf-8").count('<img class="frame"') == 4


def test_usage_errors(tmp_path: Path) -> None:
    neither = cli("report")
    assert neither.returncode == 2 and "give either RESULTS" in neither.stderr
    both = cli("report", "x.json", "--input-dir", str(tmp_path))
    assert both.returncode == 2
    missing = cli("report", str(tmp_path / "nope.json"))
    assert missing.returncode == 1 and "nope.json not found; pass the output JSON" in missing.stderr
    not_dir = cli("report", "--input-dir", str(tmp_path / "nope"))
    assert not_dir.returncode == 1 and "is not a folder" in not_dir.stderr
    results = tmp_path / "up.json"
    results.write_text("[]", encoding="utf-8")
    clobber = cli("report", str(results), "-o", str(results))
    assert clobber.returncode == 1 and "would overwrite" in clobber.stderr and results.read_text() == "[]"
