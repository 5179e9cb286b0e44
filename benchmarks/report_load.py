"""How fast the review page of a large batch builds and opens in headless Chromium.

Run from the repository root (needs Debian's chromium + chromium-driver and selenium)::

    .venv/bin/python benchmarks/report_load.py            # 1,000 shots, 5 loads
    .venv/bin/python benchmarks/report_load.py --shots 200 --loads 3

It generates the batch of ``tests/report_batch.py`` (textured videos, so every thumbnail is near
its 20 KB limit: the largest page such a batch makes), builds the page with
``cosmos_workflow.report.write_report_for_file`` (timed), then opens it ``--loads`` times in a fresh
navigation and reads the browser's own clocks, from navigation start:

* first paint: ``first-contentful-paint``;
* parsed: ``domContentLoadedEventEnd``;
* ready: the page's script has indexed the cards (``performance.mark("report-ready")``);
* loaded: ``loadEventEnd`` (the visible thumbnails decoded).

Prints a markdown table of the median and the worst load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cosmos_workflow.report import write_report_for_file
from tests.browser import start_chromium
from tests.report_batch import make_batch

CLOCKS = """
const nav = performance.getEntriesByType("navigation")[0];
const mark = (name) => (performance.getEntriesByName(name)[0] || {startTime: NaN}).startTime;
return [mark("first-contentful-paint"), nav.domContentLoadedEventEnd, mark("report-ready"), nav.loadEventEnd,
        document.querySelectorAll(".card").length, document.querySelectorAll("img[src]").length];
"""
NAMES = ("first paint", "parsed", "ready", "loaded")


def load_times(page: Path, loads: int) -> list[list[float]]:
    driver = start_chromium()
    try:
        rows = []
        for _ in range(loads):
            driver.get("about:blank")
            driver.get(page.resolve().as_uri())  # returns after the load event
            *clocks, cards, images = driver.execute_script(CLOCKS)
            rows.append([c / 1000 for c in clocks])
        print(f"cards {cards}, thumbnails decoded at load {images}", file=sys.stderr)
        return rows
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=1000)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        results = make_batch(Path(folder), args.shots)
        started = time.perf_counter()
        page = write_report_for_file(results)
        built = time.perf_counter() - started
        size = page.stat().st_size
        rows = load_times(page, args.loads)
    print(f"{args.shots} shots: page {size / 1e6:.1f} MB, built in {built:.1f} s\n")
    print("| clock (s from navigation start) | median | worst |")
    print("|---|---|---|")
    for name, values in zip(NAMES, zip(*rows, strict=True), strict=True):
        print(f"| {name} | {statistics.median(values):.2f} | {max(values):.2f} |")


if __name__ == "__main__":
    main()
