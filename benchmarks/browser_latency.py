"""The playground as a user sees it: `python app.py` driven in headless Chromium, timed from the click,
against the same requests through the library.

    .venv/bin/python benchmarks/browser_latency.py                        # the shipped model, 5 prompts
    .venv/bin/python benchmarks/browser_latency.py --clients 8            # and 8 browsers at once
    .venv/bin/python benchmarks/browser_latency.py --weights PATH         # another pipeline folder
    .venv/bin/python benchmarks/browser_latency.py --url http://127.0.0.1:7860/   # a server already running

What it measures (every browser time is the page's own clock, `performance.now()`, from the click on
Generate as the page receives it; probes are installed in the page before the click):
- launch (not with --url): from starting `python app.py` to the server answering, to the page loaded
  (opened as soon as the server answers), to the page saying the model is ready (it loads while the
  server starts; a user clicks then) and to the first request done; the first request is reported on
  its own and not counted below.
- per prompt (--prompts, default settings of the page, after --warmup untimed requests in the page and
  in the library):
  first preview drawn (the first new canvas picture loaded), last step drawn (the last canvas picture
  loaded while the status still showed a step, not "done"), done (the status starts with "done") and
  ready (done, and the run's files, its PNG and decoding GIF, listed under Download: the headline
  figure), the final picture drawn,
  the distinct canvas pictures drawn, the step labels the status showed, the steps the run had and how
  many of them were never drawn (coalesced), how many of those the server said it coalesced (its final
  status: "N of M steps shown live", at the app's pace, MUSE_STREAM_FPS), the bytes of every picture
  streamed (/file= URLs, from the page's resource timing), and the GIF's size.
- the library, in this process, for each prompt with the seed the page drew: `pipe(prompt, **settings)`
  (the final image only: the ratio's denominator; its image is compared with the page's PNG) and
  `pipe.stream(prompt, previews=True, ...)` consumed to the end (what the playground computes); and at the
  end, with the server and the browser closed, `pipe(prompt, **settings)` once more ("library alone": the
  idle page and server take some CPU from the library's timing in the same run).
- --clients N: N pages (one browser, a context each, each its own prompt) clicked one after the other;
  the total wall time from the first click to the last ready against N x the median single request, and
  whether every page only ever showed its own run (its seed in every status line, no picture of another
  page, its PNG named by its seed and equal to the library's image for its prompt and seed).

- CPU seconds per request of the app's process, of the browser (Chromium and Playwright's driver) and of
  `pipe(...)`: on a busy machine the wall-clock times mostly wait for a core. --threads N sets torch's
  threads in the library and in the app it starts (default: torch's own choice in the library, as a user
  runs it, and the app's own, one core fewer than the machine's: muse.compute.server_threads). Where the
  two counts differ, the page's image is compared with the library's run on the app's count.

Writes JSON to benchmarks/results/browser_latency.json (--out); the last line is
`ratio browser/library: X`, X = median ready time in the page / median `pipe(...)` time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

if __package__ in (None, ""):  # run as a file: the repository root, for `benchmarks` and `tests` as packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import bench_common as bc  # noqa: E402
from tests.harness.live_app import running_app  # noqa: E402

DEFAULT_PROMPTS = ("red heart", "grinning face", "cat face", "rocket", "pizza")
CLIENT_PROMPTS = ("grinning face", "red heart", "thumbs up sign", "rocket", "pile of poo", "cat face",
                  "smiling face with sunglasses", "fire")
CHROMIUM = os.environ.get("MUSE_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
VIEWPORT = {"width": 1400, "height": 1000}
# Playwright checks for the end of a run this often (not at every animation frame: less CPU taken from the
# page and the server); the times themselves are recorded in the page, so this does not round them.
POLL_MS = 100
LAST_FRAME_WAIT_S = 10.0  # after ready, how long to wait for the final pictures to load

# ----- what runs in the page -------------------------------------------------------------------------
# Times are epoch milliseconds (performance.timeOrigin + performance.now()): one page's clock, and
# comparable across the pages of --clients.

# Installed once per page. From a click on #generate on (window.__bench.reset() forgets the last run):
# every status value set (a hook on the textarea's value setter: Gradio sets it without a DOM mutation),
# every new #canvas img src with the status shown with it, every canvas picture loaded (drawn), when the
# status first starts with "done", and when the run's PNG and GIF (named by the seed in that status) are listed
# under #files.
INSTALL_PROBES = """() => {
  if (window.__bench) return;
  const now = () => performance.timeOrigin + performance.now();
  const bench = window.__bench = {};
  bench.reset = () => {
    Object.assign(bench, {click: null, stale: null, status: [], srcs: [], loads: [], done: null, ready: null,
                          seed: null});
    performance.clearResourceTimings();
  };
  bench.reset();
  performance.setResourceTimingBufferSize(100000);
  const proto = HTMLTextAreaElement.prototype;
  const plain = Object.getOwnPropertyDescriptor(proto, 'value');
  const statusText = () => {
    const box = document.querySelector('#status textarea');
    return box ? plain.get.call(box) : '';
  };
  const filesListed = () => {
    const hrefs = [...document.querySelectorAll('#files a[href]')].map(a => a.getAttribute('href'));
    return ['.png', '.gif'].every(ext => hrefs.some(h => h.endsWith('/muse-' + bench.seed + ext)));
  };
  const check = () => {
    if (bench.click === null) return;
    const t = now();
    const img = document.querySelector('#canvas img');
    const last = bench.srcs[bench.srcs.length - 1];
    if (img && img.src && img.src !== bench.stale && (!last || last.src !== img.src))
      bench.srcs.push({t, src: img.src, status: statusText()});
    if (bench.done !== null && bench.ready === null && filesListed()) bench.ready = t;
  };
  Object.defineProperty(proto, 'value', {configurable: true, enumerable: plain.enumerable,
    get() { return plain.get.call(this); },
    set(v) {
      plain.set.call(this, v);
      if (bench.click === null || !this.closest('#status')) return;
      const text = String(v), seen = bench.status;
      if (!seen.length || seen[seen.length - 1].text !== text) seen.push({t: now(), text});
      if (bench.done === null && text.startsWith('done')) {
        bench.done = now();
        bench.seed = (text.match(/seed (\\d+)/) || [])[1] || '';
      }
      check();
    }});
  document.addEventListener('load', e => {
    const el = e.target;
    if (bench.click !== null && el.tagName === 'IMG' && el.closest('#canvas'))
      bench.loads.push({t: now(), src: el.src});
  }, true);
  document.addEventListener('click', e => {
    if (!e.target.closest || !e.target.closest('#generate')) return;
    bench.click = now();
    const img = document.querySelector('#canvas img');  // the last run's picture, until the first step
    bench.stale = img ? img.src : null;
  }, true);
  new MutationObserver(check).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                      attributeFilter: ['src', 'href']});
}"""
RESET = "() => window.__bench.reset()"
READY = "() => window.__bench.ready !== null"
# the status line's placeholder once the model has loaded and warmed up (muse.playground.endpoints.MODEL_READY)
MODEL_READY = "() => (document.querySelector('#status textarea') || {}).placeholder?.startsWith('model ready')"
# No run pending: the status's progress indicator (Gradio's status tracker) is hidden.
IDLE = "() => !!document.querySelector('#status .wrap.hide')"
# The run's last canvas picture drawn, and every picture on the page loaded (or failed).
ALL_DRAWN = """() => {
  const b = window.__bench, last = b.srcs[b.srcs.length - 1];
  return !!last && b.loads.some(l => l.src === last.src) && [...document.images].every(i => i.complete);
}"""
# The run's record, the pictures fetched from /file= URLs since the reset, and the #files links.
RECORD = """() => {
  const b = window.__bench;
  const files = performance.getEntriesByType('resource').filter(e => e.name.includes('/file='))
      .map(e => ({url: e.name, t: performance.timeOrigin + e.responseEnd, bytes: e.encodedBodySize}));
  const links = [...document.querySelectorAll('#files a[href]')].map(a => a.href);
  return {click: b.click, status: b.status, srcs: b.srcs, loads: b.loads, done: b.done, ready: b.ready,
          seed: b.seed, files, links};
}"""

STEP_LABEL = re.compile(r"\b([A-Za-z][\w-]*) (\d+)/(\d+)\b")
SERVER_DONE = re.compile(r"^done in ([\d.]+) s")
SERVER_LIVE = re.compile(r"\b(\d+) of (\d+) steps shown live\b")  # the server coalesced the other steps


# ----- results ------------------------------------------------------------------------------------------

@dataclass
class PageRun:
    """One request in the page, seconds from the click (None: never happened)."""

    prompt: str
    seed: int
    click_epoch: float  # when the page received the click (epoch seconds, the page's clock)
    first_preview_s: Optional[float]
    last_step_s: Optional[float]  # the last canvas picture drawn while the status showed a step
    done_s: float  # the status starts with "done"
    ready_s: float  # done, and the run's PNG and GIF listed for download
    final_drawn_s: Optional[float]  # the canvas picture shown with "done" first loaded (inline, before its file)
    last_picture_s: Optional[float]  # the last picture of any kind (/file= URL) loaded: the final figures
    server_s: Optional[float]  # the server's own "done in X s" (one decimal)
    streamed: Optional[int]  # the steps the server sent ("N of M steps shown live"; None: it sent every step)
    frames: int  # distinct canvas pictures drawn (loaded); the result, inline then as its file, counts once
    pictures_set: int  # distinct canvas pictures the page was given (one replaced before it loaded is not drawn)
    step_labels: int  # distinct step labels the status showed
    status_lines: list[tuple[float, str]] = field(repr=False)  # (seconds from the click, text)
    frames_s: list[float] = field(repr=False)  # when each canvas picture was drawn
    canvas_srcs: list[str] = field(repr=False)  # every canvas picture given, drawn or not
    canvas_bytes: list[int] = field(repr=False)  # each drawn canvas picture
    files_bytes: int = 0  # every /file= picture the page fetched for this run
    files_fetched: int = 0
    gif_bytes: Optional[int] = None
    server_cpu_s: Optional[float] = None  # CPU seconds the app's process spent from before the click to ready
    browser_cpu_s: Optional[float] = None  # the same for Chromium and Playwright's driver
    png: Optional[bytes] = field(default=None, repr=False)


@dataclass
class LibraryRun:
    """The same request through the library, in this process."""

    final_s: float  # pipe(prompt, **settings): the final image only
    final_cpu_s: float  # its CPU seconds (this process, every thread)
    stream_s: float  # pipe.stream(prompt, previews=True, **settings) consumed
    steps: int  # steps of every stage the run had
    same_image: Optional[bool]  # the page's PNG equals pipe(...)'s image


# ----- the server and the browser --------------------------------------------------------------------

@dataclass
class Server:
    url: str
    started: Optional[float] = None  # time.time() when `python app.py` was started (None: --url)
    up: Optional[float] = None  # when it first answered
    log_path: Optional[Path] = None
    pid: Optional[int] = None  # the app's process (None: --url)


@contextlib.contextmanager
def launched_app(weights: Optional[str], log_path: Path, timeout: float,
                 threads: Optional[int] = None) -> Iterator[Server]:
    """`python app.py` on a free 127.0.0.1 port (tests.harness.running_app), timed from the process start
    to its first answer (asked every 50 ms); stopped on exit. `threads`: torch's threads in it
    (OMP_NUM_THREADS)."""
    env = {"OMP_NUM_THREADS": str(threads), "MUSE_THREADS": str(threads)} if threads is not None else {}
    with running_app(Path(weights) if weights is not None else None, log_path, timeout, env=env,
                     poll_s=0.05) as live:
        yield Server(live.url, live.started, live.up, live.log_path, live.pid)


def open_page(browser, url: str, errors: list[str]):
    """A new page (its own browser context) on the playground, loaded, probes installed; JavaScript
    errors go to `errors`."""
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(url, wait_until="load")
    page.wait_for_selector("#prompt textarea", timeout=120_000)
    page.evaluate(INSTALL_PROBES)
    return page


# ----- one request in the page -------------------------------------------------------------------------

def click_generate(page, prompt: str) -> None:
    """Forget the last run, type `prompt` and click Generate, once the last run has closed: Gradio ignores a
    click on Generate while its event is pending, which it is for a moment after its last update."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(IDLE, timeout=LAST_FRAME_WAIT_S * 1000, polling=POLL_MS)
    page.evaluate(RESET)
    page.locator("#prompt textarea").fill(prompt)
    page.locator("#generate").click()


def collect(page, prompt: str, timeout_s: float) -> PageRun:
    """Wait until the clicked run is ready (and its pictures loaded, briefly), then read it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.wait_for_function(READY, timeout=timeout_s * 1000, polling=POLL_MS)
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(ALL_DRAWN, timeout=LAST_FRAME_WAIT_S * 1000, polling=POLL_MS)
    record = page.evaluate(RECORD)
    run = page_run(prompt, record)
    for link in record["links"]:
        if link.endswith(f"/muse-{run.seed}.png"):
            run.png = page.request.get(link).body()
        elif link.endswith(f"/muse-{run.seed}.gif"):
            run.gif_bytes = len(page.request.get(link).body())
    return run


def cpu_seconds(server_pid: Optional[int]) -> dict[str, float]:
    """CPU seconds (user + system) so far of this process's descendants: the app's process ("server") and
    all the others, Chromium's processes and Playwright's driver ("browser")."""
    import psutil

    out = {"server": 0.0, "browser": 0.0}
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            out["server" if proc.pid == server_pid else "browser"] += times.user + times.system
    return out


def request_in_page(page, prompt: str, timeout_s: float, server_pid: Optional[int] = None) -> PageRun:
    """One request from the click to ready, with the CPU time the server and the browser spent on it.
    On a busy machine the CPU seconds say more than the wall-clock times, which wait for the CPU."""
    before = cpu_seconds(server_pid)
    click_generate(page, prompt)
    run = collect(page, prompt, timeout_s)
    after = cpu_seconds(server_pid)
    run.server_cpu_s = after["server"] - before["server"] if server_pid is not None else None
    run.browser_cpu_s = after["browser"] - before["browser"]
    return run


def page_run(prompt: str, record: dict[str, Any]) -> PageRun:
    """The figures of one run from the page's record (epoch ms) as seconds from the click."""
    click = record["click"]

    def since(t: Optional[float]) -> Optional[float]:
        return None if t is None else (t - click) / 1000

    status_at = {s["src"]: s["status"] for s in record["srcs"]}  # the status shown with each picture
    drawn: dict[str, float] = {}
    for load in record["loads"]:
        if load["src"] in status_at:
            drawn.setdefault(load["src"], load["t"])
    step_drawn = [t for src, t in drawn.items() if not status_at[src].startswith("done")]
    # the result comes twice, inline and then as its file (the same picture): one frame, first drawn inline
    results = [src for src in drawn if status_at[src].startswith("done")]
    for later in results[1:]:
        del drawn[later]
    final_src = results[0] if results else None
    sizes = {f["url"]: f["bytes"] for f in record["files"]}
    lines = [s["text"] for s in record["status"]]
    server = SERVER_DONE.match(lines[-1]) if lines else None
    frames_s = [since(t) for t in drawn.values()]
    return PageRun(
        prompt=prompt, seed=int(record["seed"]), click_epoch=click / 1000,
        first_preview_s=since(min(drawn.values())) if drawn else None,
        last_step_s=since(max(step_drawn)) if step_drawn else None,
        done_s=since(record["done"]), ready_s=since(record["ready"]),
        final_drawn_s=since(drawn.get(final_src)) if final_src else None,
        last_picture_s=since(max(f["t"] for f in record["files"])) if record["files"] else None,
        server_s=float(server.group(1)) if server else None,
        streamed=int(live.group(1)) if (live := SERVER_LIVE.search(lines[-1]) if lines else None) else None,
        frames=len(drawn), pictures_set=len(status_at) - max(0, sum(t.startswith("done") for t in status_at.values()) - 1),
        step_labels=len({m.group(0) for line in lines for m in STEP_LABEL.finditer(line)}),
        status_lines=[(since(s["t"]), s["text"]) for s in record["status"]], frames_s=frames_s,
        canvas_srcs=list(status_at),
        canvas_bytes=[sizes.get(src) or data_url_bytes(src) for src in drawn],
        files_bytes=sum(f["bytes"] for f in record["files"]), files_fetched=len(record["files"]))


def data_url_bytes(src: str) -> int:
    """The bytes of a picture sent inline (a base64 data URL; the app streams step pictures so), else 0."""
    if not src.startswith("data:"):
        return 0
    data = src.split(",", 1)[1]
    return len(data) * 3 // 4 - data.count("=", len(data) - 2)


# ----- the same request through the library --------------------------------------------------------

def request_settings(prompt: str, seed: int) -> dict[str, Any]:
    """The keyword arguments the app's Generate passes the pipeline for the page's default settings and
    this seed (the playground's own request check)."""
    from muse import playground

    values = {**playground.page_defaults(), "randomize_seed": False, "seed": seed}
    request = playground.check_request(prompt, values)
    return {"negative_prompt": request.negative_prompt, **request.values}


def request_in_library(pipe, prompt: str, seed: int, page_png: Optional[bytes],
                       app_threads: Optional[int] = None) -> LibraryRun:
    """`pipe(...)` and `pipe.stream(..., previews=True)` for the page's request, timed; the image compared
    with the page's PNG. The app decodes on `app_threads` torch threads (muse.compute.server_threads); where
    that count is not the library's and the images differ, the comparison is with the library run again on
    the app's count: bfloat16 sums split over another number of threads may round differently and flip a
    sampled token, so only the same count is the same computation."""
    import numpy as np
    import torch
    from PIL import Image

    kwargs = request_settings(prompt, seed)
    t0, cpu0 = time.perf_counter(), time.process_time()
    images = pipe(prompt, **kwargs)
    final_s, final_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    t0 = time.perf_counter()
    steps = sum(1 for _ in pipe.stream(prompt, previews=True, **kwargs))
    stream_s = time.perf_counter() - t0
    same = None
    if page_png is not None and len(images) == 1:
        shown = np.asarray(Image.open(io.BytesIO(page_png)).convert("RGB"))
        same = bool(np.array_equal(shown, np.asarray(images[0].convert("RGB"))))
        threads = torch.get_num_threads()
        if not same and app_threads is not None and app_threads != threads:
            torch.set_num_threads(app_threads)
            try:
                same = bool(np.array_equal(shown, np.asarray(pipe(prompt, **kwargs)[0].convert("RGB"))))
            finally:
                torch.set_num_threads(threads)
    return LibraryRun(final_s, final_cpu_s, stream_s, steps, same)


# ----- the parts of a run ---------------------------------------------------------------------------

def measure_launch(server: Server, page_loaded: float, model_ready: float, first: PageRun) -> dict[str, Any]:
    """Seconds from starting `python app.py`: server answering, page loaded, the page saying the model is
    ready, first request ready."""
    return {"server_up_s": server.up - server.started, "page_loaded_s": page_loaded - server.started,
            "model_ready_s": model_ready - server.started,
            "first_click_s": first.click_epoch - server.started,
            "first_done_s": first.click_epoch - server.started + first.ready_s,
            "first_request_click_to_done_s": first.ready_s, "first_request_first_preview_s": first.first_preview_s,
            "first_request_server_cpu_s": first.server_cpu_s}


def row(run: PageRun, lib: LibraryRun) -> dict[str, Any]:
    """One prompt's figures, as the JSON keeps them."""
    out = {k: v for k, v in asdict(run).items() if k not in ("png", "canvas_srcs")}
    out.update({"library_s": lib.final_s, "library_cpu_s": lib.final_cpu_s, "library_stream_s": lib.stream_s,
                "steps": lib.steps,
                # never drawn: coalesced by the server (reported in its status) or by the page (not reported)
                "coalesced": max(0, lib.steps - run.frames),
                "coalesced_reported": 0 if run.streamed is None else lib.steps - run.streamed,
                "same_image_as_library": lib.same_image,
                "canvas_bytes_total": sum(run.canvas_bytes)})
    return out


def medians(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median of every numeric figure over the prompts (a figure missing in a row is left out)."""
    keys = ("first_preview_s", "last_step_s", "done_s", "ready_s", "final_drawn_s", "last_picture_s", "server_s",
            "frames",
            "pictures_set", "step_labels", "steps", "coalesced", "coalesced_reported", "library_s", "library_stream_s",
            "canvas_bytes_total",
            "files_bytes", "files_fetched", "gif_bytes", "server_cpu_s", "browser_cpu_s", "library_cpu_s")
    out: dict[str, Any] = {}
    for key in keys:
        values = [r[key] for r in rows if r.get(key) is not None]
        if values:
            out[key] = bc.median(values)
    per_frame = [b for r in rows for b in r["canvas_bytes"]]
    if per_frame:
        out["canvas_bytes_per_frame"] = bc.median(per_frame)
    return out


def measure_clients(browser, url: str, pipe, n: int, single_s: float, timeout_s: float, errors: list[str],
                    server_pid: Optional[int] = None, app_threads: Optional[int] = None) -> dict[str, Any]:
    """N pages at once, each its own prompt: total wall time, and whether each showed only its own run."""
    prompts = [CLIENT_PROMPTS[i % len(CLIENT_PROMPTS)] for i in range(n)]
    pages = [open_page(browser, url, errors) for _ in range(n)]
    before = cpu_seconds(server_pid)
    for page, prompt in zip(pages, prompts):
        click_generate(page, prompt)
    runs = [collect(page, prompt, timeout_s * n) for page, prompt in zip(pages, prompts)]
    cpu = {k: v - before[k] for k, v in cpu_seconds(server_pid).items()}
    total_s = max(r.click_epoch + r.ready_s for r in runs) - min(r.click_epoch for r in runs)
    clients = [client_check(run, others=[r for r in runs if r is not run], pipe=pipe, app_threads=app_threads)
               for run in runs]
    for page in pages:
        page.context.close()
    return {"clients": n, "total_s": total_s, "single_median_s": single_s, "n_x_single_s": n * single_s,
            "total_over_n_x_single": total_s / (n * single_s),
            "server_cpu_s": cpu["server"] if server_pid is not None else None, "browser_cpu_s": cpu["browser"],
            "all_own_runs_only": all(c["own_run_only"] for c in clients), "per_client": clients}


def client_check(run: PageRun, others: Sequence[PageRun], pipe, app_threads: Optional[int] = None) -> dict[str, Any]:
    """Did this page show only its own run: its seed in every status line, none of the others' pictures,
    its PNG the library's image for its prompt and seed."""
    own_seed = all(f"seed {run.seed}" in line for _, line in run.status_lines)
    foreign = set(run.canvas_srcs) & {src for other in others for src in other.canvas_srcs}
    lib = request_in_library(pipe, run.prompt, run.seed, run.png, app_threads)
    return {"prompt": run.prompt, "seed": run.seed, "ready_s": run.ready_s, "first_preview_s": run.first_preview_s,
            "frames": run.frames, "status_lines": len(run.status_lines), "own_seed_in_every_status": own_seed,
            "pictures_of_other_pages": len(foreign), "same_image_as_library": lib.same_image,
            "own_run_only": own_seed and not foreign and lib.same_image is not False}


# ----- the command ------------------------------------------------------------------------------------

def code_version() -> dict[str, Any]:
    """The commit measured and the files changed from it (the app and the library), when in a git checkout."""
    def git(*cmd: str) -> str:
        return subprocess.run(["git", *cmd], cwd=bc.REPO_ROOT, capture_output=True, text=True, check=True).stdout

    try:
        changed = [line[3:] for line in git("status", "--porcelain", "--", "app.py", "muse").splitlines()]
        return {"commit": git("rev-parse", "HEAD").strip(), "changed": changed}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "changed": None}


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--weights", help="pipeline folder or Hub repo id (default: MUSE_WEIGHTS, else the shipped "
                                     "weights/); the app and the library both use it")
    p.add_argument("--url", help="an already running playground to drive instead of starting one (no launch "
                                 "figures; --weights must name its model)")
    p.add_argument("--prompts", nargs="+", default=list(DEFAULT_PROMPTS))
    p.add_argument("--warmup", type=int, default=1, help="untimed requests before the prompts (after the "
                                                         "launch's first request)")
    p.add_argument("--clients", type=int, default=0, help="also N browsers at once (0: skip)")
    p.add_argument("--threads", type=int, help="torch threads of the library here and of the app it starts "
                                               "(default: torch's own choice in both, as a user runs it)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds a request may take in the page")
    p.add_argument("--chromium", default=CHROMIUM, help="headless Chromium binary (MUSE_CHROMIUM)")
    p.add_argument("--out", type=Path, default=bc.RESULTS_DIR / "browser_latency.json")
    args = p.parse_args(argv)
    if args.warmup < 0 or args.clients < 0 or not args.prompts or (args.threads is not None and args.threads < 1):
        p.error("--warmup and --clients must be >= 0, --threads >= 1, and --prompts not empty")
    args.weights = args.weights or os.environ.get("MUSE_WEIGHTS") or None
    if args.weights:
        os.environ["MUSE_WEIGHTS"] = args.weights  # the page's defaults are those of these weights
    return args


def print_report(data: dict[str, Any]) -> None:
    """The prompts' table, then launch, medians, sizes and clients in a few lines."""
    def s(v: Optional[float]) -> str:
        return "-" if v is None else f"{v:.2f}"

    print(bc.table(["prompt", "preview s", "last step s", "done s", "ready s", "drawn/set/steps", "labels",
                    "coalesced (reported)", "canvas KB", "files KB", "GIF KB", "library s", "lib stream s",
                    "same image"],
                   [[r["prompt"], s(r["first_preview_s"]), s(r["last_step_s"]), s(r["done_s"]), s(r["ready_s"]),
                     f"{r['frames']}/{r['pictures_set']}/{r['steps']}", r["step_labels"],
                     f"{r['coalesced']} ({r['coalesced_reported']})",
                     f"{r['canvas_bytes_total'] / 1e3:.0f}", f"{r['files_bytes'] / 1e3:.0f}",
                     "-" if r["gif_bytes"] is None else f"{r['gif_bytes'] / 1e3:.0f}", s(r["library_s"]),
                     s(r["library_stream_s"]), r["same_image_as_library"]] for r in data["requests"]]))
    m = data["medians"]
    print(f"medians: first preview {s(m.get('first_preview_s'))} s, last step {s(m.get('last_step_s'))} s, "
          f"done {s(m.get('done_s'))} s, ready {s(m['ready_s'])} s (server's own 'done in' {s(m.get('server_s'))} "
          f"s), every picture loaded {s(m.get('last_picture_s'))} s; {m['frames']:.0f} of {m['steps']:.0f} steps "
          f"drawn, {m['coalesced_reported']:.0f} reported coalesced by the server; "
          f"library {m['library_s']:.3f} s, "
          f"streamed with previews {m['library_stream_s']:.3f} s")
    if m.get("library_alone_s"):
        print(f"library alone (server and browser closed) {m['library_alone_s']:.3f} s: ready / library alone "
              f"{m['ready_s'] / m['library_alone_s']:.2f}")
    print(f"sizes: canvas picture {m.get('canvas_bytes_per_frame', 0) / 1e3:.1f} KB each, "
          f"{m['canvas_bytes_total'] / 1e3:.0f} KB per run; all pictures {m['files_bytes'] / 1e3:.0f} KB in "
          f"{m['files_fetched']:.0f} files per run; GIF {m.get('gif_bytes', 0) / 1e3:.0f} KB")
    if m.get("server_cpu_s") is not None:
        print(f"CPU seconds per request: app server {m['server_cpu_s']:.2f}, browser {m['browser_cpu_s']:.2f}; "
              f"library pipe(...) {m['library_cpu_s']:.2f} (ratio server CPU/library CPU "
              f"{m['server_cpu_s'] / m['library_cpu_s']:.2f})")
    if data.get("launch"):
        lf = data["launch"]
        print(f"launch: server up {lf['server_up_s']:.1f} s, page loaded {lf['page_loaded_s']:.1f} s, model ready "
              f"(the page says) {lf['model_ready_s']:.1f} s, first request done {lf['first_done_s']:.1f} s after "
              f"start ({lf['first_request_click_to_done_s']:.1f} s from its click)")
    if data.get("clients"):
        c = data["clients"]
        print(f"{c['clients']} clients at once: {c['total_s']:.1f} s in all vs {c['clients']} x "
              f"{c['single_median_s']:.2f} s = {c['n_x_single_s']:.1f} s; each page showed only its own run: "
              f"{c['all_own_runs_only']}")
    if data["page_errors"]:
        print(f"JavaScript errors on the page: {data['page_errors']}")


@contextlib.contextmanager
def server_for(args: argparse.Namespace, tmp: Path) -> Iterator[Server]:
    if args.url:
        yield Server(args.url)
    else:
        with launched_app(args.weights, tmp / "app.log", timeout=args.timeout, threads=args.threads) as server:
            yield server


def app_torch_threads(args: argparse.Namespace) -> int:
    """The torch threads of the app this benchmark starts: --threads, else the app's own choice."""
    from muse.compute import server_threads

    return args.threads or server_threads()


def measure(args: argparse.Namespace, pipe, errors: list[str]) -> dict[str, Any]:
    """On one server and one headless Chromium: the launch (when it starts the server), --warmup untimed
    requests, the prompts in the page then in the library, and the clients."""
    from playwright.sync_api import sync_playwright

    app_threads = None if args.url else app_torch_threads(args)
    with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="browser-latency-") as tmp:
        browser = pw.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            with server_for(args, Path(tmp)) as server:
                page = open_page(browser, server.url, errors)  # as soon as the server answers
                launch = None
                if server.started is not None:  # the first request after launch: cold, reported on its own
                    loaded = time.time()
                    # a user clicks once the page says the model is ready (it loads while the server starts)
                    page.wait_for_function(MODEL_READY, timeout=args.timeout * 1000, polling=POLL_MS)
                    ready = time.time()
                    first = request_in_page(page, args.prompts[0], args.timeout, server.pid)
                    launch = measure_launch(server, loaded, ready, first)
                for i in range(args.warmup):
                    request_in_page(page, args.prompts[i % len(args.prompts)], args.timeout)
                rows = []
                for prompt in args.prompts:
                    run = request_in_page(page, prompt, args.timeout, server.pid)
                    rows.append(row(run, request_in_library(pipe, prompt, run.seed, run.png, app_threads)))
                single_s = bc.median([r["ready_s"] for r in rows])
                clients = (measure_clients(browser, server.url, pipe, args.clients, single_s, args.timeout, errors,
                                           server.pid, app_threads) if args.clients else None)
        finally:
            browser.close()
    return {"launch": launch, "requests": rows, "medians": medians(rows), "clients": clients}


def main(argv: Optional[list[str]] = None) -> float:
    args = parse_args(argv)
    machine_at_start = bc.machine_info()
    threads = bc.set_threads(args.threads)
    t0 = time.perf_counter()
    pipe = bc.load_pipeline(args.weights, None, "cpu")
    library_load_s = time.perf_counter() - t0
    for i in range(args.warmup):  # the library's warm-up, as the page's: its first call is cold
        prompt = args.prompts[i % len(args.prompts)]
        pipe(prompt, **request_settings(prompt, i))
    errors: list[str] = []
    figures = measure(args, pipe, errors)
    # The same requests through the library again, with the server and the browser gone: an idle page (its
    # GIF playing) and an idle server still take some CPU from the library's timing in the same run.
    for r in figures["requests"]:
        t0 = time.perf_counter()
        pipe(r["prompt"], **request_settings(r["prompt"], r["seed"]))
        r["library_alone_s"] = time.perf_counter() - t0
    m = figures["medians"]
    m["library_alone_s"] = bc.median([r["library_alone_s"] for r in figures["requests"]])
    ratio = m["ready_s"] / m["library_s"]
    data = {"benchmark": "browser_latency", "command": bc.command_line(), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "code": code_version(), "machine_at_start": machine_at_start, "machine": bc.machine_info(),
            "versions": bc.versions(), "weights": args.weights or "shipped weights/", "url": args.url,
            "settings": {k: v for k, v in request_settings("x", 0).items() if k != "seed"},
            "seed": "drawn by the page (randomize seed is on by default); the library reuses it",
            "library_threads": threads, "app_threads": "unknown (--url)" if args.url else app_torch_threads(args),
            "stream_fps": os.environ.get("MUSE_STREAM_FPS", "the app's default (muse.playground.stream.DEFAULT_STREAM_FPS)"),
            "prompts": args.prompts, "warmup": args.warmup, "library_load_s": library_load_s, **figures,
            "page_errors": errors, "ratio_browser_over_library": ratio,
            "ratio_browser_over_library_alone": m["ready_s"] / m["library_alone_s"],
            "targets": {"ratio_browser_over_library": 2.0, "first_preview_s": 0.3,
                        "coalesced": "every step drawn, or reported as coalesced: coalesced == coalesced_reported",
                        "first_request_after_launch_s": 1.5}}
    print_report(data)
    print(f"results written to {bc.write_json(args.out, data)}", file=sys.stderr)
    print(f"ratio browser/library: {ratio:.2f}")
    return ratio


if __name__ == "__main__":
    main()
