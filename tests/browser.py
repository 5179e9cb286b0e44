"""Headless Chromium for page tests: Debian's ``chromium`` and ``chromedriver``, driven by Selenium.

Nothing is downloaded: the browser and driver are the system's (``scripts/ci/chromium.sh`` installs
them in CI). Missing ones skip the test locally and fail it in CI (``COSMOS_CI=1``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

WINDOW = (1280, 900)
BROWSERS = ("chromium", "chromium-browser")


def _missing(reason: str) -> None:
    if os.environ.get("COSMOS_CI") == "1":
        pytest.fail(f"{reason}; CI must install it (bash scripts/ci/chromium.sh)")
    pytest.skip(f"{reason} (apt-get install chromium chromium-driver; pip install selenium)")


def start_chromium(window: tuple[int, int] = WINDOW) -> WebDriver:
    """A headless Chromium that keeps its console log (``driver.get_log("browser")``)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed")
    binary = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        _missing("chromium or chromedriver is not installed")
    assert binary is not None and driver_path is not None
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={window[0]},{window[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: WebDriver) -> list[dict[str, Any]]:
    """Console messages at SEVERE level since the last call (the log is drained on reading)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]  # type: ignore[no-untyped-call]
