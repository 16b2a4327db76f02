"""The playground as a server: `python app.py` on 127.0.0.1, driven through gradio_client.

Results are read by output name: the elem_id of each output component, from the server's config."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pytest
from PIL import Image

from muse.playground import OUTPUTS
from tests.harness import running_app  # shared with benchmarks/robustness.py

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server") / "app.log"


@pytest.fixture(scope="module")
def server(tiny_weights, server_log) -> Iterator[str]:
    with running_app(tiny_weights, server_log, env={"MUSE_STREAM_FPS": "0"}) as live:  # every step streamed
        yield live.url


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    from gradio_client import Client

    return Client(server, verbose=False, analytics_enabled=False,
                  download_files=str(tmp_path_factory.mktemp("downloads")))


QUICK = dict(timesteps=4, seed=5, randomize_seed=False)
ENDPOINTS = ("generate", "inpaint", "superres")


def output_names(client, api_name: str) -> list[str]:
    """The names of an endpoint's outputs, in the order its results come: the elem_ids of its output
    components, from the server's config."""
    elem_ids = {c["id"]: c.get("props", {}).get("elem_id") for c in client.config["components"]}
    dependency = next(d for d in client.config["dependencies"] if d.get("api_name") == api_name)
    return [elem_ids[i] for i in dependency["outputs"]]


def named(client, results: Sequence[Any], api_name: str = "generate") -> dict[str, Any]:
    """An endpoint's results by output name."""
    return dict(zip(output_names(client, api_name), results))


def assert_final_image(outputs: dict[str, Any], size=256):
    assert outputs["status"].startswith("done"), outputs["status"]
    with Image.open(outputs["canvas"]) as im:
        assert im.format == "PNG" and im.size == (size, size)
    assert any(f.endswith(".png") for f in outputs["files"])


def normal_request_works(client):
    out = named(client, client.predict(prompt="red heart", timesteps=2, superres=False, api_name="/generate"))
    assert out["status"].startswith("done")


def image_file(tmp_path, name, image: Image.Image):
    from gradio_client import handle_file

    path = tmp_path / name
    image.save(path)
    return handle_file(str(path))


def editor(background, mask=None):
    return {"background": background, "layers": [mask] if mask is not None else [], "composite": None, "id": None}


def test_api_names_and_parameters(client):
    info = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/generate", "/inpaint", "/superres"} <= set(info)
    names = [p["parameter_name"] for p in info["/generate"]["parameters"]]
    assert names[:10] == ["prompt", "negative_prompt", "timesteps", "cond_scale", "temperature",
                          "critic_noise_scale", "topk_filter_thres", "order", "schedule", "superres"]
    assert {"seed", "randomize_seed", "num_images", "previews"} <= set(names) and "use_critic" not in names
    order = info["/generate"]["parameters"][names.index("order")]
    assert all(f"'{o}'" in order["python_type"]["type"] for o in ("confidence", "critic", "halton", "random"))
    # the unmasking order replaced use_critic: gradio_client refuses a keyword the API does not list
    with pytest.raises(TypeError, match="use_critic"):
        client.predict(prompt="red heart", use_critic=True, api_name="/generate")
    assert [p["parameter_name"] for p in info["/inpaint"]["parameters"]][:2] == ["image", "prompt"]


def test_every_endpoint_returns_the_named_outputs(client):
    for api_name in ENDPOINTS:
        assert sorted(output_names(client, api_name)) == sorted(OUTPUTS), api_name


def test_generate_streams_every_step(client):
    import base64
    import io

    job = client.submit(prompt="grinning face", **QUICK, api_name="/generate")
    updates = [named(client, update) for update in job]
    statuses = [u["status"] for u in updates]
    assert len(statuses) >= QUICK["timesteps"]
    assert statuses[0].startswith("base 1/4") and "superres 2/4" in " ".join(statuses)
    # a streamed step's pictures come inline, as PNG data URLs of the streamed size; the results as files
    step = next(u for u in updates if u["status"].startswith("superres 2/4"))
    for name in ("canvas", "prediction", "step_tokens"):
        url = step[name]["url"]
        assert url.startswith("data:image/png;base64,"), name
        with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as im:
            assert im.format == "PNG" and im.width >= 128
    final = named(client, job.outputs()[-1])
    assert_final_image(final)
    assert final["seed"] == 5
    assert any(f.endswith(".gif") for f in final["files"])
    with Image.open(final["timeline"]) as sheet:  # one picture of every step
        assert sheet.format == "PNG" and sheet.width > sheet.height


def test_inpaint_with_image_and_mask(client, tmp_path):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8))
    mask = Image.new("L", (80, 80), 0)
    mask.paste(255, (0, 0, 40, 80))
    job = client.submit(image=editor(image_file(tmp_path, "img.png", image), image_file(tmp_path, "mask.png", mask)),
                        prompt="red heart", **QUICK, api_name="/inpaint")
    statuses = [named(client, update, "inpaint")["status"] for update in job]
    assert len(statuses) == 8 + 1 and "of 128 tokens fixed" in statuses[-1]  # (the result comes twice)
    final = named(client, job.outputs()[-1], "inpaint")
    assert_final_image(final)
    assert final["before_after"] is not None


def test_superres(client, tmp_path):
    low = Image.new("RGB", (24, 24), (200, 40, 40))
    out = named(client, client.predict(image_file(tmp_path, "low.png", low), prompt="red heart", **QUICK,
                                       api_name="/superres"), "superres")
    assert_final_image(out)
    assert "superres 4/4" in out["status"]


def big_image():
    return Image.new("RGB", (6000, 6000), (30, 160, 90))


def half_mask(size=(64, 64)):
    m = Image.new("L", size, 0)
    m.paste(255, (0, 0, size[0] // 2, size[1]))
    return m


# (endpoint, kwargs maker, expected error substring or None for a sane result)
BAD = {
    "empty prompt": ("/generate", lambda tmp: dict(prompt="  "), "Type a prompt"),
    "timesteps 0": ("/generate", lambda tmp: dict(prompt="x", timesteps=0), "timesteps must be"),
    "timesteps 10000": ("/generate", lambda tmp: dict(prompt="x", timesteps=10_000), "timesteps must be"),
    "cond_scale 1e9": ("/generate", lambda tmp: dict(prompt="x", cond_scale=1e9), "cond_scale must be"),
    "bad schedule": ("/generate", lambda tmp: dict(prompt="x", schedule="zigzag"), "schedule must be"),
    "seed text": ("/generate", lambda tmp: dict(prompt="x", seed="abc", randomize_seed=False), "seed must be"),
    "6000x6000 superres": ("/superres", lambda tmp: dict(image=image_file(tmp, "big.png", big_image()),
                                                          prompt="x"), None),
    "6000x6000 inpaint": ("/inpaint", lambda tmp: dict(
        image=editor(image_file(tmp, "big.png", big_image()), image_file(tmp, "m.png", half_mask((6000, 6000)))),
        prompt="x"), None),
    "grayscale": ("/superres", lambda tmp: dict(image=image_file(tmp, "g.png", Image.new("L", (40, 30), 90)),
                                                 prompt="x"), None),
    "RGBA": ("/inpaint", lambda tmp: dict(
        image=editor(image_file(tmp, "a.png", Image.new("RGBA", (64, 64), (255, 0, 0, 80))),
                     image_file(tmp, "m.png", half_mask())), prompt="x"), None),
    "16-bit": ("/superres", lambda tmp: dict(image=image_file(
        tmp, "d.png", Image.fromarray(np.full((20, 20), 50_000, np.uint16))), prompt="x"), None),
    "all-black mask": ("/inpaint", lambda tmp: dict(
        image=editor(image_file(tmp, "i.png", Image.new("RGB", (64, 64), "blue")),
                     image_file(tmp, "m.png", Image.new("L", (64, 64), 0))), prompt="x"), "mask is empty"),
    "all-white mask": ("/inpaint", lambda tmp: dict(
        image=editor(image_file(tmp, "i.png", Image.new("RGB", (64, 64), "blue")),
                     image_file(tmp, "m.png", Image.new("L", (64, 64), 255))), prompt="x"), None),
    "no mask": ("/inpaint", lambda tmp: dict(
        image=editor(image_file(tmp, "i.png", Image.new("RGB", (64, 64), "blue"))), prompt="x"), "no mask layer"),
    "not an image (superres)": ("/superres", lambda tmp: dict(image=text_file(tmp), prompt="x"),
                                "not a readable image"),
    "not an image (inpaint)": ("/inpaint", lambda tmp: dict(
        image=editor(text_file(tmp), image_file(tmp, "m.png", half_mask())), prompt="x"), "not a readable image"),
}


def text_file(tmp):
    from gradio_client import handle_file

    path = tmp / "notes.png"
    path.write_text("this is not an image")
    return handle_file(str(path))


@pytest.mark.parametrize("case", list(BAD))
def test_bad_inputs_get_a_clear_error_or_a_sane_result(client, tmp_path, case):
    from gradio_client.exceptions import AppError

    api, make, message = BAD[case]
    kwargs = {**QUICK, "timesteps": 2, **make(tmp_path)}
    if message is None:
        out = named(client, client.predict(**kwargs, api_name=api), api.strip("/"))
        assert_final_image(out)
        if case == "all-white mask":
            assert "256 of 256 tokens fixed" in out["status"]  # the whole image regenerated
    else:
        with pytest.raises(AppError) as err:
            client.predict(**kwargs, api_name=api)
        text = str(err.value)
        assert message in text and "Traceback" not in text and 'File "' not in text
    normal_request_works(client)  # and the server keeps serving


def test_stop_cancels_a_running_request(client):
    job = client.submit(prompt="rocket", timesteps=64, seed=1, randomize_seed=False, api_name="/generate")
    deadline = time.monotonic() + 60
    while job.status().code.name not in ("ITERATING", "PROCESSING") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.cancel()
    normal_request_works(client)


def test_side_by_side_endpoint(client):
    """/compare streams two columns with the Python API's parameter names (a suffix per column); its
    settings are checked by the schema like the other endpoints'."""
    from gradio_client.exceptions import AppError

    info = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/compare"]
    names = [p["parameter_name"] for p in info["parameters"]]
    assert names[0] == "prompt" and {"timesteps_a", "order_b", "schedule_a", "cond_scale_b", "temperature_a",
                                     "critic_noise_scale_b", "seed", "randomize_seed"} <= set(names)
    job = client.submit(prompt="red heart", seed=3, randomize_seed=False, timesteps_a=2, timesteps_b=3,
                        superres=False, api_name="/compare")
    updates = [named(client, u, "compare") for u in job]
    final = named(client, job.outputs()[-1], "compare")
    assert len(job.outputs()) == 3 and updates
    assert final["status_a"].startswith("done") and final["status_b"].startswith("done · base 3/3")
    assert "Halton order" in final["status_b"]  # column B's default: what the order changes
    assert final["compare_info"].startswith("done") and "tokens fixed in both differ" in final["compare_info"]
    for name in ("canvas_a", "canvas_b", "difference"):
        with Image.open(final[name]) as im:
            assert im.format == "PNG"
    with pytest.raises(AppError) as err:
        client.predict(prompt="red heart", timesteps_b=500, api_name="/compare")
    assert "timesteps" in str(err.value) and "Traceback" not in str(err.value)


def test_no_request_crashed_the_handlers(client, server_log):
    """Every bad input above was caught by validation: nothing reached the 'unexpected error' path."""
    normal_request_works(client)
    assert "request failed" not in server_log.read_text(errors="replace")
