"""Debian's headless Chromium for the browser tests: where it is, or a skip (a failure in CI)."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

CHROMIUM = os.environ.get("MUSE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def chromium_or_skip() -> str:
    """The browser's path; outside CI a missing browser skips the test, with CI set it fails it."""
    if Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    message = f"headless Chromium not found at {CHROMIUM} (apt-get install -y chromium)"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must run the browser test")
    pytest.skip(message)


SCREENSHOT_DIR = os.environ.get("MUSE_SCREENSHOTS")  # keep the screenshots somewhere to look at them
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]


@contextlib.contextmanager
def open_page(url: str) -> Iterator[Any]:
    """The playground at `url` in headless Chromium (1400x1000), loaded up to its prompt box; a JavaScript
    error on the page fails the test when it ends."""
    from playwright.sync_api import sync_playwright

    executable = chromium_or_skip()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(url, wait_until="load")
            page.wait_for_selector("#prompt textarea", timeout=60_000)
            yield page
            assert not errors, f"JavaScript errors on the page: {errors}"
        finally:
            browser.close()


def screenshot(page: Any, tmp_path: Path, name: str, part: str = "") -> Path:
    """The whole page, or only the element `part` (a selector), as `name` under MUSE_SCREENSHOTS."""
    folder = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if part:
        page.locator(part).screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def image_at(page: Any, selector: str) -> Any:
    """The picture an <img> shows (a PIL image, RGB)."""
    return image_from_src(page, page.locator(selector).get_attribute("src"))


def image_from_src(page: Any, src: str) -> Any:
    """The picture at an <img> src (a PIL image, RGB): fetched as the browser would, or decoded from its
    data URL (the playground sends a streamed step's pictures inline)."""
    import base64
    import io

    from PIL import Image

    if src.startswith("data:"):
        body = base64.b64decode(src.split(",", 1)[1])
    else:
        body = page.request.get(src).body()
    return Image.open(io.BytesIO(body)).convert("RGB")
