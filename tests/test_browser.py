"""The playground in headless Chromium (Debian's `chromium`, driven by Playwright's Python package).

Skipped only outside CI when the browser is missing; with CI set, a missing browser fails.
Install it with `apt-get install -y chromium` (and `fonts-noto-color-emoji` for emoji glyphs).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from muse import playground
from muse.settings import ORDERS, SCHEMA
from tests.harness import running_app
from tests.harness.chromium import chromium_or_skip, image_at, image_from_src, open_page, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Another pipeline folder to serve instead of the tiny random one: the README's screenshots are taken with
# MUSE_BROWSER_WEIGHTS=weights (the shipped model), so that they show emoji rather than noise.
BROWSER_WEIGHTS = os.environ.get("MUSE_BROWSER_WEIGHTS")

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


@pytest.fixture(scope="module")
def page_url(tiny_weights, tmp_path_factory):
    chromium_or_skip()
    weights = Path(BROWSER_WEIGHTS) if BROWSER_WEIGHTS else tiny_weights
    # every step streamed, as these tests watch them (the default pace, MUSE_STREAM_FPS, sends fewer of the
    # tiny model's far faster steps: tests/test_browser_latency_smoke.py drives the page at that pace)
    with running_app(weights, tmp_path_factory.mktemp("browser-server") / "app.log",
                     env={"MUSE_STREAM_FPS": "0"}) as live:
        yield live.url


@pytest.fixture()
def page(page_url):
    with open_page(page_url) as page:
        yield page


def steps_per_stage(previews: list[dict]) -> int:
    """The run's steps per stage, from a streamed status line ("base 1/4 · ..."): 4 on the tiny model,
    the weights' default on another (MUSE_BROWSER_WEIGHTS)."""
    return next(int(m.group(1)) for p in previews if (m := re.search(r"base \d+/(\d+)", p["status"])))


def test_generate_streams_previews_into_the_page(page, tmp_path):
    # the status line says when the model (loading while the server started) is ready for a first click
    page.wait_for_function("() => (document.querySelector('#status textarea') || {}).placeholder"
                           "?.startsWith('model ready')", timeout=120_000)
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
    n = steps_per_stage(previews)
    assert any(f"base 1/{n}" in p["status"] for p in before_final)
    # the pictures of the decoding arrive right after the result
    page.locator("#timeline img").wait_for(timeout=30_000)
    assert page.locator("#timeline img").count() == 1  # every step of both stages, in one picture
    assert page.locator("#timeline img").evaluate("im => im.naturalWidth") >= n * playground.TIMELINE_SIZE
    for elem in ("#reveal_map img", "#heat_map img", "#schedule_plot img", "#animation img"):
        assert page.locator(elem).count() == 1, elem
    assert page.locator("#files").get_by_text(".gif").count() >= 1
    screenshot(page, tmp_path, "generate.png")
    screenshot(page, tmp_path, "pictures.png", part="#pictures")


def test_empty_prompt_shows_an_error_and_the_page_keeps_working(page, tmp_path):
    page.locator("#generate").click()
    page.get_by_text("Type a prompt first").first.wait_for(timeout=30_000)
    screenshot(page, tmp_path, "empty-prompt.png")
    page.locator("#prompt textarea").fill("red heart")
    page.locator("#generate").click()
    page.wait_for_function(STATUS_DONE, timeout=120_000)


def test_stop_cancels_the_run(page):
    page.get_by_text("Advanced settings").click()
    type_number(page, "timesteps", 64)
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


def type_number(page, elem_id: str, value: float, tries: int = 5) -> None:
    """Type `value` into a slider's number box as a user does, and wait until the slider holds it, so that a
    click that follows reads it (a click too soon would decode the default). A box typed into while the page
    is still settling can lose the value, as it would for a user, who types it again: so does this."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = page.locator(f"#{elem_id} input[type=number]")
    held = f"() => document.querySelector('#{elem_id} input[type=range]')?.value === '{value}'"
    for _ in range(tries):
        box.fill(str(value))
        box.press("Enter")
        box.blur()
        try:
            page.wait_for_function(held, timeout=5_000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError(f"#{elem_id} did not take {value} after {tries} tries: "
                         f"{page.locator(f'#{elem_id} input[type=range]').input_value()}")


def options(page, elem_id: str) -> list[str]:
    """The choices a dropdown of the page offers, as its open list shows them."""
    page.locator(f"#{elem_id} input").click()
    items = page.locator(f"#{elem_id} [role=option]")
    items.first.wait_for(timeout=10_000)
    labels = [item.get_attribute("aria-label") for item in items.all()]
    page.locator(f"#{elem_id} input").blur()
    return labels


def choose(page, elem_id: str, value: str) -> None:
    """Pick `value` in a dropdown of the page, as a user does: open it, click the choice. (The box shows the
    choice once it has left the box: what was typed into it is not a choice.)"""
    box = page.locator(f"#{elem_id} input")
    box.click()
    page.locator(f"#{elem_id} [role=option][aria-label='{value}']").click(timeout=10_000)
    box.blur()
    page.wait_for_function(f"() => document.querySelector('#{elem_id} input').value === '{value}'", timeout=10_000)


def noise_disabled(page, elem_id: str, disabled: bool) -> None:
    page.wait_for_function(f"() => document.querySelector('#{elem_id} input[type=number]').disabled === "
                           f"{str(disabled).lower()}", timeout=10_000)


def test_the_order_is_offered_and_critic_noise_is_live_only_when_the_critic_ranks(page):
    """The unmasking order's dropdown offers every order of a model with a critic. Critic noise perturbs the
    critic's scores: under another order it does nothing, and the page says so by disabling the slider until
    the critic's order is chosen."""
    page.get_by_text("Advanced settings").click()
    noise = page.locator("#critic_noise input[type=number]")
    help_text = SCHEMA["critic_noise_scale"].help  # the slider's info is the schema's help, which says so
    assert "acts only when the critic ranks" in help_text
    page.locator("#critic_noise").get_by_text(help_text).wait_for(timeout=10_000)  # (the section opening)
    assert page.locator("#critic_noise").get_by_text(help_text).count() == 1
    assert page.get_by_label("Use the token critic").count() == 0  # the order replaced the checkbox
    assert options(page, "order") == list(ORDERS)
    start = page.locator("#order input").input_value()  # what the weights' defaults rank by
    noise_disabled(page, "critic_noise", start != "critic")
    for order in ("halton", "critic", "random", "confidence", "critic"):
        choose(page, "order", order)
        noise_disabled(page, "critic_noise", order != "critic")
        assert noise.is_disabled() == (order != "critic")


# Records every value an output textbox shows (polled: Gradio sets textarea values without DOM mutations).
WATCH_TEXT = """(ids) => {
  window.__seen = {};
  for (const id of ids) window.__seen[id] = [];
  window.__poll = setInterval(() => {
    for (const id of ids) {
      const box = document.querySelector('#' + id + ' textarea');
      const seen = window.__seen[id];
      if (box && box.value && seen[seen.length - 1] !== box.value) seen.push(box.value);
    }
  }, 30);
}"""


def set_step(page, k: int) -> None:
    type_number(page, "scrub", k)


def test_scrubbing_to_a_step_shows_that_steps_images_and_play_animates(page, tmp_path):
    import numpy as np

    page.locator("#prompt textarea").fill("grinning face")
    page.evaluate(WATCH_CANVAS)
    page.locator("#generate").click()
    page.wait_for_function(STATUS_DONE, timeout=120_000)
    page.locator("#timeline img").wait_for(timeout=30_000)  # the run is whole (its pictures came after "done")
    previews = page.evaluate("window.__previews")
    n = steps_per_stage(previews)
    # (the page may have been sent only some steps live: the base stage's last always goes)
    streamed = next(p for p in previews if p["status"].startswith(f"base {n}/{n}"))
    final_src = page.locator("#canvas img").get_attribute("src")
    set_step(page, n)
    page.wait_for_function(f"() => document.querySelector('#step_info textarea').value.startsWith('base {n}/{n}')",
                           timeout=30_000)
    page.wait_for_function(f"() => document.querySelector('#canvas img').src !== {final_src!r}", timeout=30_000)
    # the same picture as the one streamed at that step, replayed from the run (not decoded again)
    assert np.array_equal(np.asarray(image_at(page, "#canvas img")),
                          np.asarray(image_from_src(page, streamed["src"])))
    assert page.locator("#status textarea").input_value().startswith("done")  # the run's status stays
    screenshot(page, tmp_path, "scrub.png")
    screenshot(page, tmp_path, "scrub-outputs.png", part="#outputs")

    # the legend of the step's tokens names a quantity, and every step's values lie in its 0-1 range
    critic_on = BROWSER_WEIGHTS is None  # the tiny model's defaults have the critic on; the shipped one's off
    for k in range(1, 2 * n + 1):
        set_step(page, k)
        page.wait_for_function(f"() => document.querySelector('#scrub input[type=number]').value === '{k}' && "
                               "document.querySelector('#step_info textarea').value.includes(' fixed now')",
                               timeout=30_000)
        page.wait_for_timeout(300)
        info = page.locator("#step_info textarea").input_value()
        if k not in (n, 2 * n) and critic_on:
            assert "critic P(right) " in info, info  # the critic is on by default: it ranked the tokens
            low, high = (float(x) for x in info.split("critic P(right) ")[1].split(" ")[0].split("-"))
        elif k not in (n, 2 * n):  # the model's own probability ranked them
            low, high = (float(x) for x in info.split("model p ")[1].split(" ")[0].split("-"))
        else:  # a stage's last step fixes the rest unranked, with no critic pass: the model's own probability
            assert "the last step fixes every remaining token" in info, info
            low, high = (float(x) for x in info.split("model p ")[1].split(" ")[0].split("-"))
        assert 0 <= low <= high <= 1, info

    # play from step 1 at the fastest speed: the slider walks the steps and stops at the last
    set_step(page, 1)
    page.wait_for_function(f"() => document.querySelector('#step_info textarea').value.startsWith('base 1/{n}')",
                           timeout=30_000)
    type_number(page, "speed", 0.2)
    page.evaluate(WATCH_TEXT, ["step_info"])
    page.locator("#play").click()
    page.wait_for_function(f"() => document.querySelector('#step_info textarea').value.startsWith('superres {n}/{n}')",
                           timeout=60_000)
    page.wait_for_function("() => document.querySelector('#play').innerText.includes('Play')", timeout=30_000)
    # (the 30 ms poll may not have read the last step yet)
    page.wait_for_function(f"() => (window.__seen['step_info'] || []).at(-1)?.startsWith('superres {n}/{n}')",
                           timeout=10_000)
    seen = [s.split(" · ")[0] for s in page.evaluate("window.__seen['step_info']")]
    assert seen[-1] == f"superres {n}/{n}" and len(set(seen)) >= 4, seen


def test_side_by_side_streams_two_columns(page, tmp_path):
    page.locator("#compare_prompt textarea").fill("red heart")
    page.evaluate(WATCH_TEXT, ["status_a", "status_b"])
    page.locator("#compare").click()
    page.wait_for_function("() => (document.querySelector('#compare_info textarea') || {}).value?.startsWith('done')",
                           timeout=180_000)
    # the 30 ms poll may not yet have read the columns' final status, which came in the same update
    page.wait_for_function("() => ['status_a', 'status_b'].every(c => (window.__seen[c] || []).at(-1)?.startsWith('done'))",
                           timeout=10_000)
    seen = page.evaluate("window.__seen")
    for column in ("status_a", "status_b"):
        steps = seen[column]
        # polled: a step or two may pass between polls, but the column streamed its steps before the result
        assert len(steps) >= 3 and steps[0].startswith("base ") and steps[-1].startswith("done"), steps
    assert page.locator("#canvas_a img").count() == page.locator("#canvas_b img").count() == 1
    assert page.locator("#difference img").count() == 1
    assert "tokens fixed in both differ" in page.locator("#compare_info textarea").input_value()
    page.locator("#compare_section").scroll_into_view_if_needed()
    screenshot(page, tmp_path, "side-by-side.png", part="#compare_section")


COLUMNS_DONE = "() => ['status_a', 'status_b'].every(c => (window.__seen[c] || []).at(-1)?.startsWith('done'))"


def test_halton_side_by_side_against_confidence(page, tmp_path):
    """Side by side with the Halton order in one column: both columns decode one prompt from one seed to an
    image, and the Halton column says what ranked its tokens."""
    import numpy as np

    page.locator("#compare_prompt textarea").fill("grinning face")
    assert options(page, "order_a") == options(page, "order_b") == list(ORDERS)
    choose(page, "order_a", "halton")
    choose(page, "order_b", "confidence")
    noise_disabled(page, "critic_noise_scale_a", True)  # neither column's critic ranks: its noise does nothing
    noise_disabled(page, "critic_noise_scale_b", True)
    page.evaluate(WATCH_TEXT, ["status_a", "status_b"])
    page.locator("#compare").click()
    page.wait_for_function("() => (document.querySelector('#compare_info textarea') || {}).value?.startsWith('done')",
                           timeout=180_000)
    page.wait_for_function(COLUMNS_DONE, timeout=10_000)  # (polled: the columns' last status may come after)
    seen = page.evaluate("window.__seen")
    assert all("Halton order" in status for status in seen["status_a"]), seen["status_a"]
    assert all("ranked by confidence" in status for status in seen["status_b"]), seen["status_b"]
    assert seen["status_a"][0].startswith("base ") and len(seen["status_a"]) >= 3
    a, b = image_at(page, "#canvas_a img"), image_at(page, "#canvas_b img")
    assert a.size == b.size and min(a.size) >= playground.DISPLAY_SIZE
    for image in (a, b):  # a picture, not a blank
        assert len(np.unique(np.asarray(image).reshape(-1, 3), axis=0)) > 1
    assert not np.array_equal(np.asarray(a), np.asarray(b))  # one seed, two orders, two images
    assert page.locator("#difference img").count() == 1
    assert "tokens fixed in both differ" in page.locator("#compare_info textarea").input_value()
    page.locator("#compare_section").scroll_into_view_if_needed()
    screenshot(page, tmp_path, "side-by-side-halton.png", part="#compare_section")


def test_a_short_brush_stroke_masks_a_small_region(page, tmp_path):
    import numpy as np
    from PIL import Image

    image = tmp_path / "gradient.png"
    ramp = np.linspace(0, 255, 64, dtype=np.uint8)
    Image.fromarray(np.stack([np.tile(ramp, (64, 1)), np.tile(ramp[:, None], (1, 64)),
                              np.full((64, 64), 90, np.uint8)], -1)).save(image)
    page.get_by_role("tab", name="Inpaint").click()
    # Gradio's editor sets up its drawing canvas after the tab shows; an upload before that is lost
    page.locator("#editor canvas").first.wait_for(state="visible", timeout=30_000)
    page.wait_for_timeout(2000)
    with page.expect_file_chooser() as chooser:
        page.locator("#editor").get_by_text("Upload an image").click()
    chooser.value.set_files(str(image))
    page.locator("#editor").get_by_text("Upload an image").wait_for(state="hidden", timeout=30_000)
    page.wait_for_timeout(1000)
    box = page.locator("#editor canvas").first.bounding_box()
    x, y = box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.35
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(1, 6):  # a short stroke: about a tenth of the image across
        page.mouse.move(x + i * box["width"] / 50, y)
    page.mouse.up()
    page.wait_for_timeout(500)
    screenshot(page, tmp_path, "inpaint-stroke.png")
    page.locator("#inpaint_prompt textarea").fill("red heart")
    page.locator("#inpaint").click()
    page.wait_for_function(STATUS_DONE, timeout=120_000)
    status = page.locator("#status textarea").input_value()
    share = int(status.split("mask covers ")[1].split("%")[0])
    assert 0 < share <= 6, status  # the brush is an eighth of the width: a short stroke is a small patch
    screenshot(page, tmp_path, "inpaint.png", part="#main")
