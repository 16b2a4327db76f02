"""Drivers of the playground as a public server, through gradio_client and its raw HTTP API: fuzzed
requests, concurrent streaming clients, a full queue, cancellation, memory. They measure and report;
tests/test_robustness.py asserts on them (tiny model) and benchmarks/robustness.py reports them
(shipped model).

Outcomes of a fuzzed request:
  ok          a result: status "done ...", a PNG canvas
  clear       a gr.Error message written for the user
  refused_by_gradio  file data of the wrong shape (a number where an upload belongs), refused by Gradio
              itself before any handler runs, with pydantic's message (the app uses public APIs only)
  queue_full  Gradio's "Queue is full" (only under load)
  failure     anything else: a traceback or Python detail in the message, the generic "Server error"
              of an unexpected exception, Gradio's message-less error, a dropped connection
"""

from __future__ import annotations

import math
import random
import re
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from muse.playground import OUTPUTS

from .live_app import rss_mb

ENDPOINTS = ("/generate", "/inpaint", "/superres")
# A quick, valid request of each endpoint; fuzzing mutates one to three of its parameters.
BASE = dict(prompt="red heart", negative_prompt="", timesteps=2, cond_scale=3.0, temperature=1.0,
            critic_noise_scale=1.0, topk_filter_thres=0.9, order="confidence", schedule="cosine", superres=False,
            guidance_schedule="fading",
            seed=1, randomize_seed=False, num_images=1, previews=True)
UNCLEAR = re.compile(r"Traceback|File \"|line \d+, in |Server error|has not enabled verbose error reporting"
                     r"|Exception\b|Error\(|NoneType|object has no attribute")


# ----- request material ------------------------------------------------------------------------

# An API client gets the outputs by position, in the app's OUTPUTS order: read them by name.
CANVAS, STATUS = OUTPUTS.index("canvas"), OUTPUTS.index("status")

def make_files(folder: Path) -> dict[str, Path]:
    """Image files good and bad, written once: what a public upload box receives."""
    import struct
    import zlib

    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files: dict[str, Path] = {}

    def save(name: str, image: Image.Image, **kwargs: Any) -> None:
        image.save(folder / name, **kwargs)
        files[name] = folder / name

    save("rgb.png", Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)))
    save("rgba.png", Image.new("RGBA", (40, 40), (200, 20, 20, 90)))
    save("gray.png", Image.new("L", (33, 17), 120))
    save("palette.gif", Image.new("P", (24, 24), 3))
    save("deep.png", Image.fromarray(np.full((20, 20), 50_000, np.uint16)))
    save("photo.jpg", Image.fromarray(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)), quality=80)
    save("tiny.png", Image.new("RGB", (1, 1), "white"))
    save("wide.png", Image.new("RGB", (2000, 3), "green"))
    save("big.png", Image.new("RGB", (5000, 5000), (30, 160, 90)))
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "blue", "yellow")]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=40, loop=0)
    files["anim.gif"] = folder / "anim.gif"
    save("mask.png", Image.fromarray(np.where(np.arange(48)[None, :] < 24, 255, 0).astype(np.uint8).repeat(48, 0)))
    save("mask_other_shape.png", Image.new("L", (48, 20), 255))
    save("mask_black.png", Image.new("L", (48, 48), 0))
    good = (folder / "rgb.png").read_bytes()
    for name, data in {"truncated.png": good[: len(good) // 3], "empty.png": b"", "text.png": b"hello, world\n",
                       "random.bin": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
                       "fake.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
                       "pickle.png": b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00."}.items():
        (folder / name).write_bytes(data)
        files[name] = folder / name
    # A header that claims 20000 x 20000 pixels: must be refused before decoding.
    bomb = bytearray(good[:33])
    bomb[16:24] = struct.pack(">II", 20_000, 20_000)
    bomb[29:33] = struct.pack(">I", zlib.crc32(bytes(bomb[12:29])))
    (folder / "bomb.png").write_bytes(bytes(bomb) + good[33:])
    files["bomb.png"] = folder / "bomb.png"
    return files


def _weird_values(rng: random.Random) -> list[Any]:
    return [None, "", " ", True, False, 0, -1, 1, 2**31, 2**63, -(2**70), 10**30, 0.5, -0.0, 1e308, -1e-308,
            float("nan"), float("inf"), float("-inf"), "NaN", "Infinity", "1e999", "12", "3.5", "abc", "true",
            "🚀" * rng.randint(1, 50), "\x00\x01\x02", "<script>alert(1)</script>", "'; DROP TABLE x; --",
            "x" * rng.choice([1000, 100_000]), [], [1, 2], {}, {"a": 1}, [None], {"path": "/etc/passwd"}]


@dataclass
class Case:
    endpoint: str
    kwargs: dict[str, Any]
    label: str


def fuzz_cases(n: int, files: dict[str, Path], seed: int = 0) -> list[Case]:
    """n requests: mostly a valid quick request with one to three parameters replaced by a random
    malformed or unusual value (so each reaches its own check), and some fully random ones."""
    from gradio_client import handle_file

    rng = random.Random(seed)
    images = sorted(name for name in files if not name.startswith("mask"))
    masks = sorted(name for name in files if name.startswith("mask")) + ["rgba.png", "text.png", "truncated.png"]

    def upload(name: str) -> Any:
        return handle_file(str(files[name]))

    def editor() -> Any:
        roll = rng.random()
        if roll < 0.6:
            layers = [upload(rng.choice(masks)) for _ in range(rng.choice([0, 1, 1, 1, 2]))]
            return {"background": upload(rng.choice(images)), "layers": layers, "composite": None, "id": None}
        if roll < 0.75:
            return {"background": None, "layers": [], "composite": upload(rng.choice(images)), "id": None}
        if roll < 0.85:
            return {"background": upload("rgb.png"), "layers": rng.choice([None, "x", [None], [{}]]),
                    "composite": None, "id": rng.choice([None, "no-such-blob"])}
        return rng.choice(_weird_values(rng) + [upload("rgb.png")])

    cases = []
    for i in range(n):
        endpoint = ENDPOINTS[i % 3]
        kwargs = dict(BASE)
        if endpoint == "/inpaint":
            kwargs["image"] = {"background": upload("rgb.png"), "layers": [upload("mask.png")], "composite": None,
                               "id": None}
        elif endpoint == "/superres":
            kwargs.pop("superres")
            kwargs["image"] = upload(rng.choice(images))
        names = sorted(kwargs)
        if rng.random() < 0.1:  # fully random: every parameter drawn
            changed = names
        else:
            changed = rng.sample(names, rng.randint(1, 3))
        for name in changed:
            if name == "image":
                kwargs[name] = editor() if endpoint == "/inpaint" else rng.choice(
                    [upload(rng.choice(images))] * 4 + _weird_values(rng))
            elif rng.random() < 0.25 and name in ("timesteps", "num_images", "seed", "cond_scale", "order"):
                kwargs[name] = rng.choice({"timesteps": [1, 3, 64, 65], "num_images": [1, 4, 5],
                                           "seed": [0, 2**32 - 1, 2**32], "cond_scale": [0, 1, 10, 10.01],
                                           "order": ["critic", "halton", "random", "Halton"]}[name])
            else:
                kwargs[name] = rng.choice(_weird_values(rng))
        if kwargs.get("timesteps") == 64 and kwargs.get("num_images") not in (None, 1):
            kwargs["num_images"] = 1  # keep the valid-but-slow corner quick enough
        cases.append(Case(endpoint, kwargs, f"{endpoint} {','.join(changed)}"))
    return cases


# ----- running requests --------------------------------------------------------------------------

def classify(call: Callable[[], Any]) -> tuple[str, str]:
    """Run one request; (outcome, detail) as in the module docstring."""
    from gradio_client.exceptions import AppError

    try:
        out = call()
    except AppError as err:
        text = str(err)
        if REFUSED_MESSAGE.match(text):
            return "refused_by_gradio", text[:200]
        if not text.strip() or UNCLEAR.search(text):
            return "failure", text[:300]
        return "clear", text[:200]
    except Exception as err:  # noqa: BLE001 - every other way a request can end is a finding
        text = f"{type(err).__name__}: {err}"
        if "Queue is full" in text:
            return "queue_full", text[:200]
        return "failure", text[:300]
    status = out[STATUS] if isinstance(out, (list, tuple)) and len(out) > STATUS else None
    if not (isinstance(status, str) and status.startswith("done")):
        return "failure", f"no final image: status {status!r}"
    from PIL import Image

    with Image.open(out[CANVAS]) as image:
        if image.format != "PNG" or min(image.size) < 1:
            return "failure", f"canvas is not a PNG: {image.format} {image.size}"
    return "ok", status[:120]


# Gradio checks an upload's file data against the component's model before any handler runs; a payload of
# another shape is refused there with pydantic's message, and Gradio logs its own traceback for it.
REFUSED_MESSAGE = re.compile(r"\d+ validation errors? for (ImageData|EditorData|FileData)\b")
PAYLOAD_REFUSED = re.compile(r"^pydantic_core\._pydantic_core\.ValidationError: \d+ validation errors? for "
                             r"(ImageData|EditorData|FileData)$", re.M)


def _tracebacks(log: str) -> dict[str, int]:
    """Tracebacks in the server log: Gradio's refusals of malformed file data, and every other one."""
    total, refused = log.count("Traceback"), len(PAYLOAD_REFUSED.findall(log))
    return {"server_tracebacks": total - refused, "payloads_refused_by_gradio": refused}


def _non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def raw_generate(url: str, kwargs: dict[str, Any], order: list[str]) -> Any:
    """/generate over Gradio's plain HTTP API with the JSON written by hand, so NaN and Infinity reach
    the server as the literal tokens a raw client can send (gradio_client refuses to encode them).
    Returns the final outputs or raises AppError with the server's message."""
    import json
    import urllib.request

    from gradio_client.exceptions import AppError

    body = json.dumps({"data": [kwargs.get(name) for name in order]}, allow_nan=True).encode()
    post = urllib.request.Request(f"{url}gradio_api/call/generate", data=body,
                                  headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(post, timeout=60) as response:
        event_id = json.loads(response.read())["event_id"]
    event, last = None, None
    with urllib.request.urlopen(f"{url}gradio_api/call/generate/{event_id}", timeout=300) as stream:
        for line in stream.read().decode().splitlines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                last = line.split(":", 1)[1].strip()
    if event == "error":
        message = json.loads(last) if last and last != "null" else ""
        raise AppError(message if isinstance(message, str) else json.dumps(message))
    if event != "complete":
        raise RuntimeError(f"stream ended with {event!r}")
    outputs = json.loads(last)
    canvas = outputs[CANVAS]
    outputs[CANVAS] = canvas.get("path") if isinstance(canvas, dict) else canvas
    return outputs


def normal_request(client: Any) -> str:
    out = client.predict(prompt="red heart", timesteps=2, superres=False, seed=3, randomize_seed=False,
                         api_name="/generate")
    return out[STATUS]


def run_fuzz(url: str, cases: list[Case], log_path: Optional[Path] = None) -> dict[str, Any]:
    """Send every case, one after another; then a normal request must still work."""
    from gradio_client import Client

    client = Client(url, verbose=False, analytics_enabled=False)
    order = [p["parameter_name"] for p in
             client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate"]["parameters"]]
    counts: dict[str, int] = {"ok": 0, "clear": 0, "refused_by_gradio": 0, "queue_full": 0, "failure": 0}
    failures, messages = [], {}
    raw = 0
    started = time.perf_counter()
    for case in cases:
        if any(_non_finite(v) for v in case.kwargs.values()):  # NaN / Infinity: over raw HTTP
            raw += 1
            kwargs = {k: v for k, v in case.kwargs.items() if k != "image"}
            outcome, detail = classify(lambda: raw_generate(url, kwargs, order))
        else:
            outcome, detail = classify(lambda: client.predict(**case.kwargs, api_name=case.endpoint))
        counts[outcome] += 1
        if outcome == "failure":
            failures.append({"case": case.label, "detail": detail})
        elif outcome == "clear":
            messages[detail] = messages.get(detail, 0) + 1
    after = normal_request(client)
    log = log_path.read_text(errors="replace") if log_path else ""
    return {"requests": len(cases), **counts, "sent_as_raw_json_with_nan_or_infinity": raw,
            "failures": failures[:50], "seconds": time.perf_counter() - started,
            "normal_request_after": after, **_tracebacks(log),
            "unexpected_errors_logged": log.count("request failed"),
            "distinct_error_messages": len(messages),
            "top_error_messages": sorted(messages.items(), key=lambda kv: -kv[1])[:12]}


def _median_of(rows: list[dict[str, Any]], key: str) -> Optional[float]:
    """The median of `key` over `rows`, None when there are none (a part where nothing completed)."""
    return float(statistics.median(r[key] for r in rows)) if rows else None


def _png_pixels(path: str) -> bytes:
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB").tobytes()


def run_load(url: str, pid: int, clients: int = 8, timesteps: int = 8, superres: bool = True) -> dict[str, Any]:
    """`clients` users at once, each streaming its own prompt and seed. Each client's images must be
    those its request gives alone (no mixing), every streamed status must carry its own seed, and the
    server's memory must come back after the load."""
    from gradio_client import Client

    prompts = ["grinning face", "red heart", "rocket", "cat face", "fire", "thumbs up sign", "pile of poo",
               "smiling face with sunglasses"]
    requests = [dict(prompt=prompts[i % len(prompts)], seed=1000 + i, randomize_seed=False, timesteps=timesteps,
                     superres=superres, previews=True, order="confidence") for i in range(clients)]
    solo_client = Client(url, verbose=False, analytics_enabled=False)
    solo = [_png_pixels(solo_client.predict(**r, api_name="/generate")[0]) for r in requests]
    time.sleep(1.0)
    before = rss_mb(pid)
    peak = [before]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak.append(rss_mb(pid))
            time.sleep(0.05)

    users = [Client(url, verbose=False, analytics_enabled=False) for _ in requests]
    gate = threading.Barrier(clients)

    def user(i: int) -> dict[str, Any]:
        gate.wait()
        t0 = time.perf_counter()
        job = users[i].submit(**requests[i], api_name="/generate")
        statuses, first = [], None
        try:
            # Polled, not `for update in job`: gradio_client's iterator never ends when the job fails
            # (e.g. "Queue is full"), it waits for a FINISHED status that never comes.
            while True:
                outputs, done = job.outputs(), job.done()
                if outputs and first is None:
                    first = time.perf_counter() - t0
                statuses = [o[2] for o in outputs]
                if done:
                    break
                time.sleep(0.005)
            job.result()  # raises the server's error, if any
            final = job.outputs()[-1]
        except Exception as err:  # noqa: BLE001
            text = f"{type(err).__name__}: {err}"
            return {"outcome": "queue_full" if "Queue is full" in text else "failure", "detail": text[:200]}
        own = f"seed {requests[i]['seed']}"
        return {"outcome": "ok", "updates": len(statuses), "first_update_s": first,
                "total_s": time.perf_counter() - t0,
                "own_seed_in_every_update": all(own in s for s in statuses if s),
                "same_image_as_alone": _png_pixels(final[0]) == solo[i]}

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(user, range(clients)))
    wall = time.perf_counter() - started
    stop.set()
    watcher.join()
    time.sleep(3.0)  # let the server finish its bookkeeping (file moves, queue updates)
    after = rss_mb(pid)
    done = [r for r in results if r["outcome"] == "ok"]
    return {"clients": clients, "completed": len(done),
            "queue_full": sum(r["outcome"] == "queue_full" for r in results),
            "failures": [r for r in results if r["outcome"] == "failure"],
            "all_own_images": all(r["same_image_as_alone"] for r in done),
            "all_own_status": all(r["own_seed_in_every_update"] for r in done),
            "wall_s": wall, "median_first_update_s": _median_of(done, "first_update_s"),
            "max_total_s": max((r["total_s"] for r in done), default=None),
            "rss_mb_before": before, "rss_mb_peak": max(peak), "rss_mb_after": after,
            "rss_after_over_before": after / before, "timesteps": timesteps, "superres": superres}


STOPPED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) muse\.app INFO request stopped after "
                     r"(\w+) (\d+)/(\d+) .*\((\d+\.\d+) s\)$", re.M)


def _stops(log_path: Path) -> list[tuple[float, int, float]]:
    """(epoch seconds, step, seconds the run had taken) of each 'request stopped' line of the app log."""
    from datetime import datetime

    out = []
    for stamp, _stage, step, _total, took in STOPPED.findall(log_path.read_text(errors="replace")):
        when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()  # the log's local time
        out.append((when, int(step), float(took)))
    return out


def run_cancel(url: str, log_path: Path, repeats: int = 5, wait_updates: int = 4) -> dict[str, Any]:
    """Start a long generation, cancel it after a few streamed steps; measure when the server stopped
    decoding (its log line, against the moment cancel was sent) in seconds and in decoding steps of
    that run, and how soon the next user's request streamed its first step."""
    from gradio_client import Client

    client = Client(url, verbose=False, analytics_enabled=False)
    normal_request(client)  # warm
    rows = []
    for r in range(repeats):
        job = client.submit(prompt="rocket", timesteps=64, superres=False, seed=r, randomize_seed=False,
                            previews=True, order="confidence", api_name="/generate")
        while len(job.outputs()) < wait_updates:
            if job.done():
                raise RuntimeError("the long request ended before it could be cancelled")
            time.sleep(0.005)
        seen = len(job.outputs())
        sent, sent_perf = time.time(), time.perf_counter()
        job.cancel()  # returns once the server has taken the cancel
        acked = time.time()
        nxt = client.submit(prompt="red heart", timesteps=2, superres=False, seed=1, randomize_seed=False,
                            api_name="/generate")
        while not nxt.outputs() and not nxt.done():
            time.sleep(0.002)
        first = time.perf_counter() - sent_perf
        nxt.result()
        time.sleep(0.3)
        stops = _stops(log_path)
        if len(stops) <= r:
            rows.append({"stopped_in_log": False})
            continue
        when, step, took = stops[r]
        step_s = took / max(step, 1)
        rows.append({"stopped_in_log": True, "server_step_at_stop": step, "server_step_s": step_s,
                     "stop_after_cancel_s": when - sent, "stop_after_cancel_steps": (when - sent) / step_s,
                     "cancel_call_s": acked - sent, "stop_after_ack_s": when - acked,
                     "stop_after_ack_steps": (when - acked) / step_s,
                     "next_request_first_update_s": first, "updates_after_cancel": len(job.outputs()) - seen})
    done = [r for r in rows if r["stopped_in_log"]]
    return {"repeats": repeats, "rows": rows, "all_stopped_in_log": len(done) == repeats,
            "median_stop_after_cancel_s": _median_of(done, "stop_after_cancel_s"),
            "max_stop_after_cancel_s": max((r["stop_after_cancel_s"] for r in done), default=None),
            "max_stop_after_cancel_steps": max((r["stop_after_cancel_steps"] for r in done), default=None),
            "median_cancel_call_s": _median_of(done, "cancel_call_s"),
            "max_stop_after_ack_steps": max((r["stop_after_ack_steps"] for r in done), default=None),
            "median_server_step_s": _median_of(done, "server_step_s"),
            "median_next_request_first_update_s": _median_of(done, "next_request_first_update_s")}


# ----- many mixed requests: does memory stay flat? -----------------------------------------------------

SOAK_KINDS = ("generate", "generate", "generate", "inpaint", "superres", "compare", "cancelled", "invalid")


def soak_cases(n: int, files: dict[str, Path], seed: int = 0) -> list[tuple[str, str, dict[str, Any]]]:
    """n (kind, endpoint, kwargs) of what a public Space serves: text to image under every order, with and
    without super-res and previews, one or two images; inpainting; super-res of an upload; side by side;
    runs cancelled after their first update; and requests refused by their checks."""
    from gradio_client import handle_file

    rng = random.Random(seed)
    cases = []
    for i in range(n):
        kind = SOAK_KINDS[rng.randrange(len(SOAK_KINDS))]
        quick = dict(seed=i, randomize_seed=False, timesteps=rng.choice([2, 4, 8]),
                     order=rng.choice(["confidence", "halton", "random", "critic"]), previews=rng.random() < 0.7)
        if kind == "generate":
            cases.append((kind, "/generate", dict(prompt=rng.choice(["red heart", "rocket", "cat face", "a sunny day"]),
                                                  superres=rng.random() < 0.5, num_images=rng.choice([1, 1, 2]),
                                                  **quick)))
        elif kind == "inpaint":
            editor = {"background": handle_file(str(files["rgb.png"])), "layers": [handle_file(str(files["mask.png"]))],
                      "composite": None, "id": None}
            cases.append((kind, "/inpaint", dict(image=editor, prompt="fire", superres=False, **quick)))
        elif kind == "superres":
            image = handle_file(str(files[rng.choice(["rgb.png", "rgba.png", "gray.png", "photo.jpg"])]))
            cases.append((kind, "/superres", dict(image=image, prompt="snowman", **quick)))
        elif kind == "compare":
            cases.append((kind, "/compare", dict(prompt="ghost", seed=i)))
        elif kind == "cancelled":
            cases.append((kind, "/generate", dict(prompt="penguin", superres=True, **{**quick, "timesteps": 24})))
        else:  # refused by its checks: no prompt, or a setting out of range
            bad = rng.choice([{"prompt": ""}, {"timesteps": 0}, {"cond_scale": -1.0}])
            cases.append((kind, "/generate", {**quick, "prompt": "rocket", **bad}))
    return cases


def _soak_one(client: Any, kind: str, endpoint: str, kwargs: dict[str, Any]) -> str:
    """One soak request: 'ok', 'clear' (refused with a message), 'cancelled' or 'failure: ...'."""
    if kind == "cancelled":
        job = client.submit(**kwargs, api_name=endpoint)
        while not job.outputs() and not job.done():
            time.sleep(0.005)
        job.cancel()
        return "cancelled"
    if endpoint == "/compare":  # valid, with outputs of its own: done when it ends without an error
        try:
            client.predict(**kwargs, api_name=endpoint)
            return "ok"
        except Exception as err:  # noqa: BLE001 - any error of a valid request is a finding
            return f"failure: {type(err).__name__}: {str(err)[:200]}"
    outcome, detail = classify(lambda: client.predict(**kwargs, api_name=endpoint))
    return outcome if outcome in ("ok", "clear") else f"failure: {detail}"


def run_soak(url: str, pid: int, files: dict[str, Path], requests: int = 200, clients: int = 4,
             warmup: float = 0.5, seed: int = 0) -> dict[str, Any]:
    """`requests` mixed requests (`soak_cases`) from `clients` users at once, the server's resident memory
    read after every tenth of them. Memory is flat when what it holds after the warm-up share (`warmup`:
    past the replay store's runs and the allocator's first growth; on the tiny model the server's memory
    levels off after about 120 such requests) is what it holds at the end."""
    from gradio_client import Client

    cases = soak_cases(requests, files, seed)
    users = [Client(url, verbose=False, analytics_enabled=False) for _ in range(clients)]
    lock, done, outcomes, samples = threading.Lock(), [0], [], [(0, rss_mb(pid))]
    every = max(1, requests // 10)
    started = time.perf_counter()

    def user(i: int) -> None:
        for kind, endpoint, kwargs in cases[i::clients]:
            outcome = _soak_one(users[i], kind, endpoint, kwargs)
            with lock:
                outcomes.append((kind, outcome))
                done[0] += 1
                if done[0] % every == 0:
                    samples.append((done[0], rss_mb(pid)))

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(user, range(clients)))
    time.sleep(3.0)  # the server's bookkeeping after the last request
    samples.append((requests, rss_mb(pid)))
    warm = min((s for s in samples if s[0] >= warmup * requests), key=lambda s: s[0])
    after = [s for s in samples if s[0] >= warm[0]]
    xs, ys = [s[0] for s in after], [s[1] for s in after]
    slope = statistics.linear_regression(xs, ys).slope * 100 if len(set(xs)) > 1 else 0.0
    counts: dict[str, int] = {}
    for _, outcome in outcomes:
        key = outcome.split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    return {"requests": requests, "clients": clients, "kinds": {k: sum(c == k for c, _ in outcomes) for k in
                                                                  sorted(set(SOAK_KINDS))},
            "outcomes": counts, "failures": [o for _, o in outcomes if o.startswith("failure")][:20],
            "seconds": time.perf_counter() - started, "rss_mb_samples": samples,
            "rss_mb_start": samples[0][1], "rss_mb_warm": warm[1], "rss_mb_end": samples[-1][1],
            "rss_mb_peak": max(s[1] for s in samples), "end_over_warm": samples[-1][1] / warm[1],
            "mb_per_100_requests_after_warmup": slope, "warm_after_requests": warm[0]}
