"""A real headless Chromium for the web page's tests: Debian's `chromium` and `chromium-driver` (which `.ci/run`
installs) driven by Selenium. Without them a test is skipped on a workstation and fails in CI, where they must be."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SHOTS = os.environ.get("SECONDNATURE_SCREENSHOTS")  # a directory to keep screenshots in (docs/img when refreshing)


def chromium():
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not (binary and driver):
        msg = "no chromium and chromedriver: run ./scripts/system-deps (`.ci/run` does)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900",
                "--disable-extensions", "--no-first-run", "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors (a CSP violation is one)
    return webdriver.Chrome(service=Service(driver), options=opts)


def console_errors(driver) -> list[str]:
    """The page's console errors since the last call: a script that failed, a resource refused."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def shot(driver, tmp_path: Path, name: str, *, full: bool = True) -> Path:
    """Save a PNG of the page (its whole height when `full`), in tmp_path and, when asked, in SHOTS."""
    if full:
        height = driver.execute_script("return Math.min(document.documentElement.scrollHeight, 2400)")
        width = driver.execute_script("return window.innerWidth")
        driver.set_window_size(max(width, 360), height + 120)
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        (Path(SHOTS) / f"{name}.png").write_bytes(path.read_bytes())
    if full:
        driver.set_window_size(1280, 900)
    return path
