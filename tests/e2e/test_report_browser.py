"""The review page in a real headless Chromium: the shipped examples, hostile text, 1,000 shots."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cosmos_workflow.report import write_report, write_report_for_file
from cosmos_workflow.specs.results import UpsampleRecord
from tests.browser import browser, console_errors  # noqa: F401  (fixture)
from tests.report_batch import make_batch

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = '<script>window.__pwned = "script"</script><img src=x onerror="window.__pwned = \'img\'">'

# Scrolls to the bottom one screen per animation frame, so every lazy image gets its turn.
SCROLL_THROUGH = """
const done = arguments[arguments.length - 1];
function step() {
  const before = window.scrollY;
  window.scrollBy(0, window.innerHeight);
  if (window.scrollY === before) { window.scrollTo(0, 0); done(true); } else requestAnimationFrame(step);
}
step();
"""
IMAGES_DECODED = """
const imgs = Array.from(document.querySelectorAll("img"));
return imgs.length > 0 && imgs.every((img) => img.complete && img.naturalWidth > 0) ? imgs.length : 0;
"""


def open_page(driver: WebDriver, page: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    console_errors(driver)  # drain what earlier pages logged
    driver.get(page.resolve().as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))


def all_images_decoded(driver: WebDriver, timeout: float = 120) -> int:
    """Scroll through the page, then wait until every ``<img>`` has decoded; their number."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.set_script_timeout(timeout)
    driver.execute_async_script(SCROLL_THROUGH)
    count: int = WebDriverWait(driver, timeout).until(lambda d: d.execute_script(IMAGES_DECODED))
    return count


def visible_names(driver: WebDriver) -> list[str]:
    script = "return Array.from(document.querySelectorAll('.card:not([hidden]) .name'), (e) => e.textContent)"
    names: list[str] = driver.execute_script(script)
    return names


def choose(driver: WebDriver, select_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, select_id)).select_by_value(value)


def type_search(driver: WebDriver, text: str, expected: int) -> list[str]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    box = driver.find_element(By.ID, "search")
    box.clear()
    if text:
        box.send_keys(text)
    else:  # clear() sends no input event
        driver.execute_script("arguments[0].dispatchEvent(new Event('input'))", box)
    WebDriverWait(driver, 10).until(lambda d: len(visible_names(d)) == expected)
    return visible_names(driver)


def save_screenshot(driver: WebDriver, path: Path) -> None:
    assert driver.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


@pytest.fixture(scope="module")
def examples_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped examples run through the fake engine by the CLI, then ``report`` by the CLI."""
    work = tmp_path_factory.mktemp("examples")
    shutil.copytree(ROOT / "examples", work / "examples", ignore=shutil.ignore_patterns("*.py"))
    output = work / "out" / "upsampled.json"

    def cli(*args: str) -> None:
        command = [sys.executable, "-m", "cosmos_workflow", *args]
        done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr

    cli("upsample-prompts", "examples/prompts.json", "-o", str(output), "--engine", "fake")
    cli("report", str(output))
    return output.with_suffix(".html")


def test_examples_page(browser: WebDriver, examples_page: Path, tmp_path: Path) -> None:  # noqa: F811
    open_page(browser, examples_page)
    names = ["cityscape_prompt", "nature_prompt", "street_portrait", "text_only_prompt"]
    assert visible_names(browser) == names
    assert all_images_decoded(browser) == 6  # two frames for each video, none for the text-only prompt
    captions = browser.execute_script(
        "return Array.from(document.querySelectorAll('figcaption'), (e) => e.textContent)"
    )
    assert captions[:2] == ["frame 0 · 480×272 sent", "frame 1 · 480×272 sent"]
    assert captions[4:] == ["frame 0 · 272×480 sent", "frame 1 · 272×480 sent"]  # the portrait video, upright
    save_screenshot(browser, tmp_path / "examples.png")

    choose(browser, "status-filter", "text_only")
    assert visible_names(browser) == ["text_only_prompt"]
    choose(browser, "status-filter", "")
    assert type_search(browser, "FOREST", 1) == ["nature_prompt"]  # searches prompts, any case
    assert type_search(browser, "", 4) == names
    choose(browser, "sort", "tokens-asc")
    assert visible_names(browser)[0] == "text_only_prompt"
    choose(browser, "sort", "name")
    assert visible_names(browser) == sorted(names)
    assert console_errors(browser) == []


def hostile_record(**changes: object) -> UpsampleRecord:
    fields: dict[str, object] = {
        "name": f"evil {HOSTILE}",
        "original_prompt": f"a prompt {HOSTILE}",
        "upsampled_prompt": f"an answer {HOSTILE}",
        "status": "fallback",  # a failure that wrote a prompt: both the answer and the error show
        "error": f"failed {HOSTILE}",
        "warning": f"careful {HOSTILE}",
        "plan_changes": [HOSTILE],
        "key": "0" * 32,
    }
    return UpsampleRecord.model_validate(fields | changes)


def test_script_in_a_prompt_shows_as_text_and_never_runs(
    browser: WebDriver,  # noqa: F811
    tmp_path: Path,
) -> None:
    page = write_report([hostile_record(), hostile_record(name="plain", status="ok")], tmp_path / "evil.html")
    open_page(browser, page)
    assert browser.execute_script("return window.__pwned === undefined")
    texts = browser.execute_script(
        "return Array.from(document.querySelectorAll('.card .prompt, .card .name'), (e) => e.textContent)"
    )
    assert f"a prompt {HOSTILE}" in texts and f"an answer {HOSTILE}" in texts and f"evil {HOSTILE}" in texts
    assert browser.execute_script("return document.querySelectorAll('script').length") == 1
    assert browser.execute_script("return document.querySelectorAll('main img').length") == 0
    assert type_search(browser, "<script>", 2) == [f"evil {HOSTILE}", "plain"]
    save_screenshot(browser, tmp_path / "evil.png")
    assert console_errors(browser) == []


def test_the_policy_blocks_a_script_that_got_into_the_page(
    browser: WebDriver,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Second line of defence: markup smuggled past escaping still cannot run."""
    page = write_report([hostile_record(status="ok")], tmp_path / "page.html")
    html = page.read_text(encoding="utf-8")
    page.write_text(html.replace("<main", f"{HOSTILE}<main", 1), encoding="utf-8")
    open_page(browser, page)
    assert browser.execute_script("return window.__pwned === undefined")
    blocked = " ".join(entry["message"] for entry in console_errors(browser))
    assert "Content Security Policy" in blocked


@pytest.mark.slow
def test_a_thousand_shots(browser: WebDriver, tmp_path: Path) -> None:  # noqa: F811
    results = make_batch(tmp_path / "batch", 1000)
    records = json.loads(results.read_text(encoding="utf-8"))
    with_frames = sum(1 for r in records if r["frame_indices"])
    page = write_report_for_file(results)
    open_page(browser, page)
    assert browser.execute_script("return document.querySelectorAll('.card').length") == 1000
    assert browser.execute_script("return document.querySelectorAll('img[src]').length") < 100  # lazy
    save_screenshot(browser, tmp_path / "batch.png")
    assert all_images_decoded(browser, timeout=300) == 2 * with_frames
    choose(browser, "status-filter", "error")
    errors = [r["name"] for r in records if r["status"] == "error"]
    assert visible_names(browser) == errors and len(errors) == 25
    choose(browser, "status-filter", "")
    assert type_search(browser, "shot_0123", 1) == ["shot_0123"]
    assert console_errors(browser) == []
