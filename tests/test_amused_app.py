"""The playground serving aMUSEd (`MUSE_WEIGHTS=<aMUSEd folder> python app.py`), on a tiny random aMUSEd in
diffusers layout made offline (`muse.amused.tiny`): the page adapts to a one-stage model without a critic
(no super-res tab or switch, no critic controls), shows the model's own settings (aMUSEd's sampler preset
and micro-conditioning, with aMUSEd's defaults), and its endpoints take and check them.

The playground's logic is called in this process; the app itself runs as a server (`tests.harness`),
driven through gradio_client and in headless Chromium (marked slow / browser)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

import diffusers  # the [amused] extra: `make setup-dev` installs it
from muse import playground
from muse.amused import AmusedOptions, make_tiny_amused
from muse.amused.load import AMUSED_DEFAULTS
from muse.playground import AMUSED_CONTROLS, CONTROLS, PlaygroundError
from muse.sampler_rules import SAMPLER_RULES
from muse.settings import AMUSED_SCHEMA, SAMPLERS, AmusedSettings, SettingError
from tests.harness import running_app
from tests.harness.chromium import image_at, open_page, screenshot

GRID = 16  # tokens per side; the tiny VQ has 1 px per token: 16 px images
PROMPT = "a watercolor painting of a fox"


@pytest.fixture(scope="module")
def amused_folder(tmp_path_factory) -> Path:
    return make_tiny_amused(tmp_path_factory.mktemp("tiny_amused_app"), grid=GRID)


@pytest.fixture()
def serving(amused_folder, monkeypatch) -> Iterator[Path]:
    """The playground's model set to the tiny aMUSEd (loaded on first use, as the app does)."""
    monkeypatch.setenv("MUSE_WEIGHTS", str(amused_folder))
    yield amused_folder


def quick(**overrides):
    """A request's values: the page's defaults (aMUSEd's), a fixed seed."""
    return {**playground.page_defaults(), "randomize_seed": False, "seed": 5, **overrides}


def final_png(updates) -> np.ndarray:
    png = next(f for f in updates[-1]["files"] if f.endswith(".png"))
    return np.asarray(Image.open(png).convert("RGB"))


# ----- the schema of aMUSEd's own settings --------------------------------------------------------

def test_amuseds_settings_are_one_schema_with_amuseds_defaults():
    assert SAMPLERS == SAMPLER_RULES  # the sampler presets the schema offers are the sampler's rules
    assert tuple(AMUSED_SCHEMA) == AMUSED_CONTROLS
    for spec in AMUSED_SCHEMA.values():
        assert spec.label and spec.help, spec.name
    defaults = AmusedSettings().options()  # as the pipeline's keyword arguments
    assert defaults == {"sampler": "amused", "aesthetic_score": 6.0, "crop_coord": (0, 0), "micro_size": None}
    assert AmusedOptions(**defaults) == AmusedOptions()  # the pipeline's defaults are the schema's
    # the pipeline's options and the page's controls give the same messages
    with pytest.raises(SettingError) as from_pipeline:
        AmusedOptions(aesthetic_score=11)
    with pytest.raises(PlaygroundError) as from_page:
        playground.check_setting("aesthetic_score", 11)
    assert str(from_pipeline.value) == str(from_page.value) == "aesthetic_score must be a number from 0 to 10, got 11."
    with pytest.raises(SettingError, match="crop_coord: crop_left must be a whole number from 0 to 8192, got -2"):
        AmusedOptions(crop_coord=(1, -2))
    with pytest.raises(SettingError, match="micro_width and micro_height go together"):
        AmusedSettings(micro_width=256)


# ----- the page follows the model ----------------------------------------------------------------------

def test_the_page_model_of_amused_has_one_stage_no_critic_and_its_own_settings(serving):
    model = playground.page_model()
    assert (model.family, model.superres, model.critic) == ("amused", False, False)
    assert model.output_size() == GRID
    controls = model.controls()
    assert not {"use_critic", "critic_noise_scale", "superres"} & set(controls)
    assert set(AMUSED_CONTROLS) <= set(controls)
    assert "no super-res stage and no token critic" in model.missing()
    assert "sampler" in model.compare_settings() and "use_critic" not in model.compare_settings()
    # the unmasking orders it can rank by: no critic's
    assert "order" in controls and "order" in model.compare_settings()
    assert model.choices("order") == ("confidence", "halton", "random")
    d = playground.page_defaults()
    assert d["order"] == "confidence" and "use_critic" not in d
    # aMUSEd's defaults: 12 steps, guidance 10, its sampler, aesthetic score 6, told the output size, uncropped
    assert (d["timesteps"], d["cond_scale"], d["topk_filter_thres"]) == (12, 10.0, 0.0)
    assert (d["sampler"], d["aesthetic_score"], d["crop_top"], d["crop_left"]) == ("amused", 6.0, 0, 0)
    assert d["micro_width"] == d["micro_height"] == GRID
    c = playground.compare_defaults()
    # the first comparison: aMUSEd's rules (by confidence) against the Halton order, on our sampler (aMUSEd's own
    # rules rank by confidence alone)
    assert (c["order_a"], c["sampler_a"]) == ("confidence", "amused")
    assert (c["order_b"], c["sampler_b"]) == ("halton", "muse")
    names = list(playground.endpoint_signature(("prompt",)).parameters)
    assert names[:2] == ["prompt", "negative_prompt"] and names[-6:] == list(AMUSED_CONTROLS)
    assert "use_critic" not in names and "superres" not in names


def test_a_muse_model_keeps_every_control(tiny_weights, monkeypatch):
    monkeypatch.setenv("MUSE_WEIGHTS", str(tiny_weights))
    model = playground.page_model()
    assert (model.family, model.superres, model.critic, model.options) == ("muse", True, True, ())
    assert model.controls() == CONTROLS and model.request_settings() == playground.REQUEST_SETTINGS
    assert model.missing() == ""


def test_a_hub_id_not_in_the_cache_is_shown_at_its_published_size(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MUSE_WEIGHTS", "amused/amused-512")
    model = playground.page_model()
    assert (model.family, model.superres, model.critic, model.output_size()) == ("amused", False, False, 512)
    assert playground.display_size() == 512  # shown at its own size, not shrunk to 256
    assert playground.page_defaults()["micro_width"] == 512
    monkeypatch.setenv("MUSE_WEIGHTS", "amused/amused-256")
    assert playground.page_model().output_size() == 256 and playground.display_size() == playground.DISPLAY_SIZE


# ----- requests through the playground's logic --------------------------------------------------------

def test_text_to_image_streams_and_the_defaults_give_diffusers_image(serving, amused_folder):
    updates = list(playground.generate(PROMPT, quick()))
    # every step (the playground's own default: no pace), then the result again with the decoding's pictures
    assert [u["status"].split(" · ")[0] for u in updates[:-2]] == [f"base {k}/12" for k in range(1, 12)]
    assert updates[-1]["status"].startswith("done") and "base 12/12" in updates[-1]["status"]
    assert updates[-1]["canvas"].size == (playground.DISPLAY_SIZE,) * 2
    assert updates[0]["canvas"].size == (playground.STREAM_SIZE,) * 2
    assert updates[-1]["before_after"] is None  # one stage: no base result to compare with
    ours = final_png(updates)
    assert ours.shape == (GRID, GRID, 3)  # the download is at the model's own size
    # the page's defaults are aMUSEd's: the same image as diffusers' AmusedPipeline with the same seed
    ref = diffusers.AmusedPipeline.from_pretrained(str(amused_folder), use_safetensors=True)
    ref.set_progress_bar_config(disable=True)
    theirs = ref(PROMPT, generator=torch.Generator().manual_seed(5)).images[0]
    assert np.array_equal(ours, np.asarray(theirs))


def test_the_sampler_preset_and_micro_conditioning_reach_the_model(serving):
    base = final_png(list(playground.generate(PROMPT, quick(timesteps=4, previews=False))))
    again = final_png(list(playground.generate(PROMPT, quick(timesteps=4, previews=False))))
    ours = final_png(list(playground.generate(PROMPT, quick(timesteps=4, previews=False, sampler="muse"))))
    told = final_png(list(playground.generate(PROMPT, quick(timesteps=4, previews=False, micro_width=512,
                                                            micro_height=512, aesthetic_score=2))))
    assert np.array_equal(base, again)
    assert not np.array_equal(base, ours) and not np.array_equal(base, told)
    # our sampler takes the other orders
    halton = list(playground.generate(PROMPT, quick(timesteps=4, previews=False, sampler="muse", order="halton")))
    assert all("Halton order" in u["status"] for u in halton) and not np.array_equal(final_png(halton), ours)


@pytest.mark.parametrize("bad, message", [
    (dict(aesthetic_score=11), "aesthetic_score must be a number from 0 to 10, got 11."),
    (dict(aesthetic_score="high"), "aesthetic_score must be a number from 0 to 10, got 'high'."),
    (dict(sampler="ddim"), "sampler must be one of muse, amused; got 'ddim'."),
    (dict(crop_top=-1), "crop_top must be a whole number from 0 to 8192, got -1."),
    (dict(micro_width=2.5), "micro_width must be a whole number from 0 to 8192, got 2.5."),
    (dict(micro_height=None), "micro_width and micro_height go together"),
    (dict(order="critic"), "order must be one of confidence, halton, random (this model has no token critic); "
                           "got 'critic'."),
    (dict(order="halton"), "order must be confidence under aMUSEd's own sampler rules (sampler amused); choose "
                           "sampler muse for the halton order."),
])
def test_bad_amused_settings_get_a_named_error(serving, bad, message):
    with pytest.raises(PlaygroundError) as err:
        list(playground.generate(PROMPT, quick(**bad)))
    assert str(err.value).startswith(message)


def test_inpaint_and_side_by_side_on_amused(serving):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (GRID, GRID, 3), dtype=np.uint8))
    mask = Image.new("L", (GRID, GRID), 0)
    mask.paste(255, (0, 0, GRID // 2, GRID))
    updates = list(playground.inpaint({"background": image, "layers": [mask]}, PROMPT, quick(timesteps=3)))
    assert updates[-1]["status"].startswith("done") and "mask covers 50%" in updates[-1]["status"]
    values = {**playground.compare_defaults(), "timesteps_a": 2, "timesteps_b": 2, "randomize_seed": False}
    final = list(playground.compare(PROMPT, values))[-1]
    assert final["status_a"].startswith("done") and final["status_b"].startswith("done")
    assert "ranked by confidence" in final["status_a"] and "Halton order" in final["status_b"]
    assert "tokens fixed in both differ" in final["compare_info"]
    with pytest.raises(PlaygroundError, match="order must be confidence under aMUSEd's own sampler rules"):
        list(playground.compare(PROMPT, {**values, "sampler_b": "amused"}))


# ----- the app as a server: gradio_client --------------------------------------------------------------

@pytest.fixture(scope="module")
def server_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("amused_server") / "app.log"


@pytest.fixture(scope="module")
def server(amused_folder, server_log) -> Iterator[str]:
    with running_app(amused_folder, server_log, env={"MUSE_STREAM_FPS": "0"}) as live:  # every step streamed
        yield live.url


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    from gradio_client import Client

    return Client(server, verbose=False, analytics_enabled=False,
                  download_files=str(tmp_path_factory.mktemp("amused_downloads")))


def named(client, results, api_name: str = "generate") -> dict:
    from tests.test_app_server import output_names

    return dict(zip(output_names(client, api_name), results))


@pytest.mark.slow
def test_api_takes_amuseds_settings_and_not_the_absent_stages(client):
    info = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/generate", "/inpaint", "/compare", "/text_to_image"} <= set(info)
    assert "/superres" not in info  # one stage: nothing to upscale with
    for api_name in ("/generate", "/inpaint"):
        params = {p["parameter_name"]: p for p in info[api_name]["parameters"]}
        assert set(AMUSED_CONTROLS) <= set(params), api_name
        assert not {"use_critic", "critic_noise_scale", "superres"} & set(params), api_name
        assert params["aesthetic_score"]["parameter_default"] == 6.0
        assert params["micro_width"]["parameter_default"] == params["micro_height"]["parameter_default"] == GRID
        assert params["timesteps"]["parameter_default"] == AMUSED_DEFAULTS["timesteps"]
    compare = [p["parameter_name"] for p in info["/compare"]["parameters"]]
    assert {"sampler_a", "sampler_b", "aesthetic_score", "order_a", "order_b"} <= set(compare)
    assert "use_critic_a" not in compare
    # the orders offered: no critic's (the page's dropdown, as the API describes its values)
    order = next(p for p in info["/generate"]["parameters"] if p["parameter_name"] == "order")
    assert order["parameter_default"] == "confidence"
    assert all(f"'{o}'" in order["python_type"]["type"] for o in ("confidence", "halton", "random"))
    assert "'critic'" not in order["python_type"]["type"]


@pytest.mark.slow
def test_generate_through_the_api_streams_every_step_and_takes_the_options(client):
    job = client.submit(prompt=PROMPT, timesteps=4, seed=3, randomize_seed=False, api_name="/generate")
    statuses = [named(client, update)["status"] for update in job]
    assert [s.split(" · ")[0] for s in statuses[:3]] == ["base 1/4", "base 2/4", "base 3/4"]
    final = named(client, job.outputs()[-1])
    assert final["status"].startswith("done") and "base 4/4" in final["status"]
    with Image.open(final["canvas"]) as im:
        assert im.size == (playground.DISPLAY_SIZE,) * 2
    png = next(f for f in final["files"] if f.endswith(".png"))

    def image(**options):
        out = named(client, client.predict(prompt=PROMPT, timesteps=4, seed=3, randomize_seed=False, previews=False,
                                           api_name="/generate", **options))
        return np.asarray(Image.open(next(f for f in out["files"] if f.endswith(".png"))).convert("RGB"))

    default = np.asarray(Image.open(png).convert("RGB"))
    assert default.shape == (GRID, GRID, 3)
    assert np.array_equal(image(), default)
    assert not np.array_equal(image(sampler="muse"), default)
    assert not np.array_equal(image(aesthetic_score=2, micro_width=512, micro_height=512), default)


@pytest.mark.slow
@pytest.mark.parametrize("bad, message", [
    (dict(aesthetic_score=11), "aesthetic_score must be a number from 0 to 10"),
    (dict(sampler="ddim"), "sampler must be one of muse, amused"),
    (dict(crop_left=9000), "crop_left must be a whole number from 0 to 8192"),
    (dict(micro_width="wide"), "micro_width must be a whole number"),
])
def test_bad_settings_through_the_api_get_a_clear_message(client, bad, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as err:
        client.predict(prompt=PROMPT, timesteps=2, **bad, api_name="/generate")
    text = str(err.value)
    assert message in text and "Traceback" not in text and 'File "' not in text


@pytest.mark.slow
def test_the_server_logged_no_unexpected_failure(client, server_log):
    out = named(client, client.predict(prompt=PROMPT, timesteps=2, api_name="/generate"))
    assert out["status"].startswith("done")
    assert "request failed" not in server_log.read_text(errors="replace")


# ----- the page in headless Chromium -------------------------------------------------------------------

@pytest.fixture()
def page(server):
    with open_page(server) as page:
        yield page


@pytest.mark.slow
@pytest.mark.browser
def test_the_page_hides_what_amused_lacks_and_shows_its_micro_conditioning(page, tmp_path):
    note = page.locator("#model_note")
    assert "no super-res stage and no token critic" in note.inner_text()
    assert "aMUSEd" in page.locator("#header").inner_text() and "OpenRAIL++-M" in page.locator("#header").inner_text()
    assert page.get_by_role("tab", name="Super-res").count() == 0
    assert page.get_by_role("tab", name="Inpaint").count() == 1
    page.get_by_text("Advanced settings").click()
    page.locator("#timesteps").wait_for(state="visible", timeout=10_000)
    for absent in ("#use_critic", "#critic_noise", "#superres_switch"):
        assert page.locator(absent).count() == 0, absent
    assert page.get_by_label("Super-res stage").count() == 0
    assert page.get_by_label("Use the token critic").count() == 0
    assert page.locator("#order input").first.input_value() == "confidence"  # the unmasking order, by confidence
    # aMUSEd's settings, at aMUSEd's defaults (its 12 steps; told the output size, uncropped, score 6)
    assert page.locator("#timesteps input[type=number]").input_value() == "12"
    values = {name: page.locator(f"#{name} input").first.input_value()
              for name in ("aesthetic_score", "micro_width", "micro_height", "crop_top", "crop_left", "sampler")}
    assert values == {"aesthetic_score": "6", "micro_width": str(GRID), "micro_height": str(GRID), "crop_top": "0",
                      "crop_left": "0", "sampler": "amused"}, values
    group = page.locator("#micro_conditioning")
    for label in ("Micro-conditioning", "Aesthetic score", "Original width", "Original height", "Crop top", "Crop left"):
        assert group.get_by_text(label, exact=True).first.is_visible(), label
    screenshot(page, tmp_path, "amused-settings.png")


@pytest.mark.slow
@pytest.mark.browser
def test_text_to_image_streams_its_steps_and_shows_the_final_image(page, tmp_path):
    from tests.test_browser import STATUS_DONE, WATCH_CANVAS

    page.locator("#prompt textarea").fill(PROMPT)
    page.evaluate(WATCH_CANVAS)
    page.locator("#generate").click()
    page.wait_for_function(STATUS_DONE, timeout=120_000)
    page.wait_for_function("() => window.__previews.length && "
                           "window.__previews[window.__previews.length - 1].status.startsWith('done')",
                           timeout=30_000)
    previews = page.evaluate("window.__previews")
    before_final = [p for p in previews if not p["status"].startswith("done")]
    assert len(before_final) >= 2, previews  # the canvas changed while decoding (12 steps)
    assert any(p["status"].startswith("base 1/12") for p in before_final), previews
    assert previews[-1]["src"] not in {p["src"] for p in before_final}
    final = image_at(page, "#canvas img")
    assert final.size == (playground.DISPLAY_SIZE,) * 2  # the final image, at the display size
    assert len(np.unique(np.asarray(final).reshape(-1, 3), axis=0)) > 1  # a picture, not a blank
    page.locator("#timeline img").wait_for(timeout=30_000)  # (the pictures come right after the result)
    assert page.locator("#timeline img").count() == 1  # the 12 steps in one picture
    assert page.locator("#files").get_by_text(".png").count() >= 1
    screenshot(page, tmp_path, "amused-generate.png")
