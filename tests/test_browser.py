"""The playground in headless Chromium (Debian's `chromium`, driven by Playwright's Python package).

Skipped only outside CI when the browser is missing; with CI set, a missing browser fails.
Install it with `apt-get install -y chromium` (and `fonts-noto-color-emoji` for emoji glyphs).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from muse.settings import SCHEMA
from tests.harness import running_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("MUSE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT_DIR = os.environ.get("MUSE_SCREENSHOTS")  # keep the screenshots somewhere to look at them

# Records every new src of the canvas image, with the step label shown at that moment.
WATCH_CANVAS = """() => {
  window.__previews = [];
  const record = () => {
    const img = document.querySelector('#canvas img');
    const status = document.querySelector('#status textarea');
    const seen = window.__previews;
    if (img && img.src && (seen.length === 0 || seen[seen.length - 1].src !== img.src))
      seen.push({src: img.src, status: status ? status.value : ''});
  };
  new MutationObserver(record).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                       attributeFilter: ['src']});
}"""
STATUS_DONE = "() => (document.querySelector('#status textarea') || {}).value?.startsWith('done')"


def chromium_or_skip() -> str:
    if Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    message = f"headless Chromium not found at {CHROMIUM} (apt-get install -y chromium)"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must run the browser test")
    pytest.skip(message)


@pytest.fixture(scope="module")
def page_url(tiny_weights, tmp_path_factory):
    chromium_or_skip()
    with running_app(tiny_weights, tmp_path_factory.mktemp("browser-server") / "app.log") as live:
        yield live.url


@pytest.fixture()
def page(page_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_or_skip(), headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(page_url, wait_until="load")
            page.wait_for_selector("#prompt textarea", timeout=60_000)
            yield page
            assert not errors, f"JavaScript errors on the page: {errors}"
        finally:
            browser.close()


def screenshot(page, tmp_path: Path, name: str) -> Path:
    folder = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def test_generate_streams_previews_into_the_page(page, tmp_path):
    page.locator("#prompt textarea").fill("grinning face")
    page.evaluate(WATCH_CANVAS)
    page.locator("#generate").click()
    page.wait_for_function(STATUS_DONE, timeout=120_000)
    page.wait_for_function("() => window.__previews.length && "
                           "window.__previews[window.__previews.length - 1].status.startsWith('done')",
                           timeout=30_000)
    previews = page.evaluate("window.__previews")
    before_final = [p for p in previews if not p["status"].startswith("done")]
    # the canvas changed at least twice before the final image (4 steps x 2 stages here)
    assert len(before_final) >= 2, previews
    assert len({p["src"] for p in before_final}) == len(before_final)
    assert previews[-1]["src"] not in {p["src"] for p in before_final}
    assert any("base 1/4" in p["status"] for p in before_final)
    # the pictures of the decoding arrived
    assert page.locator("#timeline img").count() == 8
    for elem in ("#reveal_map img", "#heat_map img", "#schedule_plot img", "#animation img"):
        assert page.locator(elem).count() == 1, elem
    assert page.locator("#files").get_by_text(".gif").count() >= 1
    screenshot(page, tmp_path, "generate.png")


def test_empty_prompt_shows_an_error_and_the_page_keeps_working(page, tmp_path):
    page.locator("#generate").click()
    page.get_by_text("Type a prompt first").first.wait_for(timeout=30_000)
    screenshot(page, tmp_path, "empty-prompt.png")
    page.locator("#prompt textarea").fill("red heart")
    page.locator("#generate").click()
    page.wait_for_function(STATUS_DONE, timeout=120_000)


def test_stop_cancels_the_run(page):
    page.get_by_text("Advanced settings").click()
    steps = page.locator("#timesteps input[type=number]")
    steps.fill("64")
    steps.press("Enter")
    page.locator("#prompt textarea").fill("rocket")
    page.locator("#generate").click()
    page.wait_for_function("() => (document.querySelector('#status textarea') || {}).value?.includes('/64')",
                           timeout=60_000)
    page.locator("#stop").click()
    page.wait_for_timeout(3000)
    label = page.locator("#status textarea").input_value()
    assert not label.startswith("done"), label
    page.wait_for_timeout(1000)
    assert page.locator("#status textarea").input_value() == label  # nothing streams after Stop


def test_critic_noise_is_live_only_with_the_critic_on(page):
    """Critic noise perturbs the critic's scores: with the critic off it does nothing, and the page says
    so by disabling the slider until the critic is ticked."""
    page.get_by_text("Advanced settings").click()
    box = page.locator("#use_critic input[type=checkbox]")
    noise = page.locator("#critic_noise input[type=number]")
    help_text = SCHEMA["critic_noise_scale"].help  # the slider's info is the schema's help, which says so
    assert "acts only with the critic on" in help_text
    assert page.locator("#critic_noise").get_by_text(help_text).count() == 1
    for _ in range(2):
        on = box.is_checked()
        page.wait_for_function(f"() => document.querySelector('#critic_noise input[type=number]').disabled === {str(not on).lower()}",
                               timeout=10_000)
        assert noise.is_disabled() == (not on)
        box.click()
