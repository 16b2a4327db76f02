"""Many clients at once, through the library: continuous batching (`muse.batching.Batcher`) against
one request at a time, on the same pipeline in the same run.

    .venv/bin/python benchmarks/concurrency.py                    # the shipped model on CPU, 1 thread
    .venv/bin/python benchmarks/concurrency.py --clients 1 2 4 8 --rounds 3
    .venv/bin/python benchmarks/concurrency.py --device cuda --threads 0

For each number of clients N (--clients), N requests arrive at the same moment, each a different prompt
and seed with the weights' default settings (both stages), streamed as the playground streams them
(`pipe.stream`, previews drawn at every step, unless --no-previews):
- one at a time: they run in arrival order on one thread, as a server with one compute thread runs them;
  a client's time to done counts its wait in line;
- batched: all N go to one `Batcher` at once, each read by a client thread of its own; their forward
  passes share one batch per step.
Each client's time to done (median and slowest over clients, then the median over --rounds) and images
per second (all images over the time the last client waited). The batched requests' final ids are
compared with the one-at-a-time ones of the same seeds (`exact` requests, `agreement` of tokens).
A lone request's time is also split into its forward passes and the rest (sampling, pictures).

The bound batching cannot pass on the device: for each N, the N prompts as one request of N images
(`pipe.stream([N prompts])`, every row in every pass, no waiting, no scheduling): its images per second over
one at a time's is the most any scheduler of N separate requests could reach, and N times its time per image
over a lone request's the least slowest/lone could be.

The clients here are threads calling the library; through gradio_client and headless Chromium the server's
own work (Gradio, encoding pictures, HTTP) comes on top and does not batch.

    .venv/bin/python benchmarks/concurrency.py --through gradio   # the playground, through gradio_client

With `--through gradio` the clients are `gradio_client` clients of two live playgrounds (`python app.py` on
127.0.0.1, the same weights, at the page's pace): one batched (MUSE_MAX_BATCH unset, the device's default)
and one decoding one request at a time (MUSE_MAX_BATCH=1). For each N, N clients call `/generate` at the same
moment, each with a prompt and seed of its own, and read every streamed update; a client's time to done
runs from its submit to its last update. The final images of the two servers are compared pixel for pixel.
The last line reads `concurrency: N clients, images/s batched/one-at-a-time X, slowest/lone Y` for the
largest N, where lone is the time of one client alone (one at a time, N = 1).

    .venv/bin/python benchmarks/concurrency.py --through chromium # the playground, in headless Chromium pages

With `--through chromium` the same two playgrounds are driven as users drive them: N pages of one headless
Chromium (a browser context each, as `benchmarks/browser_latency.py` opens them), each typing a prompt of
its own and clicking Generate, one page after the other (the page draws the seed). A client's time to done
runs from the first page's click to its page being ready (the image drawn and the run's files listed),
by the pages' own clocks. Instead of comparing the two servers' images (their seeds differ), each page is
checked to show only its own run: its seed in every status line, no picture of another page, and its PNG
equal to the library's image for its prompt and seed. The browser's own work shares the machine's cores
with the server: on a small CPU this path measures what users on one machine would see, not the server
alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional
from unittest import mock

if __package__ in (None, ""):  # run as a file: the repository root, for `benchmarks` as a package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import bench_common as bc  # noqa: E402

PROMPTS = ["a smiling face with heart eyes", "sun", "a red apple", "grinning cat", "rocket", "pizza", "snowman",
           "a dog face", "thumbs up", "crying face", "fire", "a green tree", "ghost", "a full moon", "pile of poo",
           "party popper"]



def run_each(client, clients: int) -> None:
    """client(0), ..., client(clients - 1) at once, each on a thread of its own; back when all are done."""
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()



def last_line(data_rows: list, lone: float) -> tuple[float, float]:
    """Print the benchmark's last line for the largest client count; (images/s ratio, slowest / lone)."""
    last = data_rows[-1]
    ratio = last["batched"]["images_per_s"] / last["one_at_a_time"]["images_per_s"]
    slowest = last["batched"]["slowest_s"] / lone
    print(f"concurrency: {last['clients']} clients, images/s batched/one-at-a-time {ratio:.2f}, slowest/lone {slowest:.2f}")
    return ratio, slowest


def medians(runs: list) -> dict[str, float]:
    """The medians over rounds of `summarise`'s figures."""
    return {k: bc.median([summarise(x)[k] for x in runs]) for k in ("median_s", "slowest_s", "images_per_s")}


def add_row(rows: list, data_rows: list, clients: int, seq: dict, bat: dict) -> None:
    """One client count's medians, one at a time (`seq`) and batched (`bat`), as a printed row and a JSON row."""
    data_rows.append({"clients": clients, "one_at_a_time": seq, "batched": bat})
    rows.append([clients, f"{seq['median_s']:.2f}", f"{seq['slowest_s']:.2f}", f"{seq['images_per_s']:.2f}",
                 f"{bat['median_s']:.2f}", f"{bat['slowest_s']:.2f}", f"{bat['images_per_s']:.2f}",
                 f"{bat['images_per_s'] / seq['images_per_s']:.2f}"])

def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = bc.model_parser(__doc__, runs=1)
    p.set_defaults(threads=1)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8], help="numbers of clients at once")
    p.add_argument("--rounds", type=int, default=1, help="repetitions of every measurement (medians reported)")
    p.add_argument("--max-batch", type=int, help="the batcher's maximum images at once (default: the device's)")
    p.add_argument("--no-previews", dest="previews", action="store_false",
                   help="decode without step pictures (the model's share alone)")
    p.add_argument("--through", choices=("library", "gradio", "chromium"), default="library",
                   help="the clients: threads calling the library, gradio_client clients of the playground, "
                        "or pages of the playground in headless Chromium")
    p.add_argument("--chromium", help="--through chromium: the headless Chromium binary (default: MUSE_CHROMIUM, "
                                      "else /usr/bin/chromium)")
    p.add_argument("--json", type=Path, help="default: benchmarks/results/concurrency_<through>_<device>.json")
    args = bc.parse_model_args(p, argv)
    if args.threads == 0:
        args.threads = None  # torch's choice
    if args.json is None:
        args.json = bc.RESULTS_DIR / f"concurrency_{args.through}_{args.device.split(':')[0]}.json"
    if min(args.clients) < 1 or args.rounds < 1:
        p.error("--clients must be >= 1 and --rounds >= 1")
    return args


def _request(pipe, index: int, previews: bool):
    """Client `index`'s request: (final ids, images made)."""
    final = None
    for final in pipe.stream(PROMPTS[index % len(PROMPTS)], seed=index, previews=previews):
        pass
    return final.ids, len(final.canvas)


def one_at_a_time(pipe, clients: int, previews: bool, device: str) -> list[tuple[float, Any, int]]:
    """Each client's (time to done, final ids, images), all arriving at once and served in order."""
    start, out = time.perf_counter(), []
    for i in range(clients):
        ids, images = _request(pipe, i, previews)
        bc.sync(device)
        out.append((time.perf_counter() - start, ids, images))
    return out


def batched(pipe, batcher, clients: int, previews: bool, device: str) -> list[tuple[float, Any, int]]:
    """Each client's (time to done, final ids, images), all started at once through `batcher`, each read
    by its own thread."""
    out: list = [None] * clients
    start = time.perf_counter()
    jobs = [batcher.stream(pipe.stream, PROMPTS[i % len(PROMPTS)], seed=i, previews=previews) for i in range(clients)]

    def read(i: int) -> None:
        final = None
        for final in jobs[i]:
            pass
        bc.sync(device)
        out[i] = (time.perf_counter() - start, final.ids, len(final.canvas))

    run_each(read, clients)
    return out


def one_request_of(pipe, clients: int, previews: bool, device: str, runs: int = 3) -> float:
    """Seconds (median of `runs`) for the first `clients` prompts as one request of that many images: every
    row in every pass, the most batching can share."""
    times = []
    for r in range(runs):
        start = time.perf_counter()
        for _ in pipe.stream([PROMPTS[i % len(PROMPTS)] for i in range(clients)], seed=r, previews=previews):
            pass
        bc.sync(device)
        times.append(time.perf_counter() - start)
    return bc.median(times)


def forward_share(pipe, previews: bool, device: str, runs: int = 3) -> dict[str, float]:
    """A lone request's seconds in its forward passes and in the rest, medians of `runs`."""
    from muse.batching import TransformerCall

    spent = [0.0]
    alone = TransformerCall.alone

    def timed(call):
        t0 = time.perf_counter()
        out = alone(call)
        bc.sync(device)
        spent[0] += time.perf_counter() - t0
        return out

    totals, forwards = [], []
    TransformerCall.alone = timed
    try:
        for i in range(runs):
            spent[0] = 0.0
            t0 = time.perf_counter()
            _request(pipe, i, previews)
            totals.append(time.perf_counter() - t0)
            forwards.append(spent[0])
    finally:
        TransformerCall.alone = alone
    total, forward = bc.median(totals), bc.median(forwards)
    return {"total_s": total, "forwards_s": forward, "rest_s": total - forward}


def summarise(results: list[tuple[float, Any, int]]) -> dict[str, float]:
    times = [t for t, _, _ in results]
    return {"median_s": bc.median(times), "slowest_s": max(times), "images_per_s": sum(n for *_, n in results) / max(times)}


def _gradio_clients(url: str, clients: int) -> list[tuple[float, bytes, int]]:
    """N gradio_client clients calling /generate at the same moment: each one's (time to done, final image's
    pixels, images)."""
    from gradio_client import Client
    from PIL import Image

    from muse.playground import OUTPUTS

    # ssl_verify=False: over plain HTTP to 127.0.0.1 no certificate is ever checked, but gradio_client
    # otherwise builds a verifying SSL context, loading the CA bundle, for every file it downloads (about 90 ms
    # of CPU each, some 10 files a request): on the server's own two cores that costs more than the server.
    users = [Client(url, verbose=False, analytics_enabled=False, ssl_verify=False) for _ in range(clients)]
    gate = threading.Barrier(clients)
    out: list = [None] * clients

    def user(i: int) -> None:
        gate.wait()
        t0 = time.perf_counter()
        job = users[i].submit(prompt=PROMPTS[i % len(PROMPTS)], seed=i, randomize_seed=False, api_name="/generate")
        while not job.done():
            time.sleep(0.005)
        job.result()  # the server's error, if any
        took = time.perf_counter() - t0
        final = dict(zip(OUTPUTS, job.outputs()[-1]))
        png = next(f for f in final["files"] if f.endswith(".png"))
        with Image.open(png) as im:
            out[i] = (took, im.convert("RGB").tobytes(), 1)

    run_each(user, clients)
    return out


class _Chromium:
    """N pages of one headless Chromium on a playground at once (see the module docstring): `__call__` gives
    each client's (time to done from the first click, its page's run, images), `own_runs` how many of the
    runs showed only their own run."""

    def __init__(self, stack, args: argparse.Namespace, weights: Optional[Path]) -> None:
        from playwright.sync_api import sync_playwright

        from benchmarks import browser_latency as bl

        self.bl, self.timeout_s, self.errors = bl, 120.0, []
        pw = stack.enter_context(sync_playwright())
        self.browser = pw.chromium.launch(executable_path=args.chromium or bl.CHROMIUM, headless=True,
                                          args=bl.CHROMIUM_ARGS)
        stack.callback(self.browser.close)
        # the servers' model, for the pages' images (after the timing); the page's defaults are its defaults
        self.pipe = bc.load_pipeline(str(weights) if weights else None, None, "cpu")
        if weights:  # restored when the stack closes
            stack.enter_context(mock.patch.dict(os.environ, {"MUSE_WEIGHTS": str(weights)}))

    def __call__(self, url: str, clients: int) -> list[tuple[float, Any, int]]:
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(clients)]
        pages = [self.bl.open_page(self.browser, url, self.errors) for _ in range(clients)]
        try:
            for page, prompt in zip(pages, prompts):
                self.bl.click_generate(page, prompt)
            runs = [self.bl.collect(page, prompt, self.timeout_s * clients) for page, prompt in zip(pages, prompts)]
        finally:
            for page in pages:
                page.context.close()
        first = min(run.click_epoch for run in runs)
        return [(run.click_epoch + run.ready_s - first, run, 1) for run in runs]

    def own_runs(self, results: list[tuple[float, Any, int]], app_threads: int) -> int:
        runs = [run for _, run, _ in results]
        return sum(self.bl.client_check(run, [r for r in runs if r is not run], self.pipe, app_threads)["own_run_only"]
                   for run in runs)


def through_server(args: argparse.Namespace) -> tuple[float, float]:
    """The playground batched against MUSE_MAX_BATCH=1, through gradio_client or in headless Chromium pages
    (see the module docstring)."""
    import contextlib
    import tempfile

    from muse.compute import server_threads
    from tests.harness import running_app

    weights = Path(args.weights) if args.weights else None
    if args.preset:  # a preset's random pipeline, saved for the servers to load
        weights = bc.load_pipeline(None, args.preset, "cpu").save_pretrained(Path(tempfile.mkdtemp()) / "weights")
    logs = Path(tempfile.mkdtemp())
    env = {"MUSE_MCP": "0"}
    if args.threads:
        env["MUSE_THREADS"] = str(args.threads)
    with contextlib.ExitStack() as stack:
        batched_env = {**env, **({"MUSE_MAX_BATCH": str(args.max_batch)} if args.max_batch else {})}
        servers = {"bat": stack.enter_context(running_app(weights, logs / "batched.log", env=batched_env)),
                   "seq": stack.enter_context(running_app(weights, logs / "one.log", env={**env, "MUSE_MAX_BATCH": "1"}))}
        chromium = _Chromium(stack, args, weights) if args.through == "chromium" else None
        call = chromium or _gradio_clients
        for kind, live in servers.items():  # both warm: the model loaded, and a request through each
            for _ in range(max(args.warmup, 1)):
                call(live.url, 1)
        rows, data_rows, lone, exact, requests = [], [], None, 0, 0
        for n in args.clients:
            runs: dict[str, list] = {"seq": [], "bat": []}
            for r in range(args.rounds):
                for kind in ("seq", "bat") if r % 2 == 0 else ("bat", "seq"):
                    runs[kind].append(call(servers[kind].url, n))
            if chromium is not None:
                threads = args.threads or server_threads()
                exact += sum(chromium.own_runs(runs[kind][-1], threads) for kind in ("seq", "bat"))
                requests += 2 * n
            else:
                exact += sum(a[1] == b[1] for a, b in zip(runs["seq"][-1], runs["bat"][-1]))
                requests += n
            seq, bat = medians(runs["seq"]), medians(runs["bat"])
            if n == 1:
                lone = seq["median_s"]
            add_row(rows, data_rows, n, seq, bat)
    if lone is None:
        raise SystemExit("--through gradio needs 1 among --clients (the lone client's time)")
    clients_are = "pages in headless Chromium" if chromium is not None else "gradio_client"
    print(f"model: {bc.model_source(args)}; {bc.cpu_model()}; the playground through {clients_are}, "
          f"MUSE_THREADS {args.threads or 'default'}; batched: MUSE_MAX_BATCH {args.max_batch or 'default'}; "
          f"median of {args.rounds} round(s); load average {bc.machine_info().get('load_average_1_5_15')}")
    print(bc.table(["clients", "1-at-a-time median s", "slowest s", "images/s", "batched median s", "slowest s",
                    "images/s", "images/s ratio"], rows))
    if chromium is not None:
        print(f"pages that showed only their own run, the library's image: {exact} of {requests}; "
              f"page errors: {len(chromium.errors)}")
    else:
        print(f"batched images equal to one at a time: {exact} of {requests} requests")
    if args.json:
        data = {**bc.machine_info(), "benchmark": f"concurrency_{args.through}", "command": bc.command_line(),
                "model": bc.model_source(args), "rounds": args.rounds, "max_batch": args.max_batch,
                "threads": args.threads, "lone_s": lone, "rows": data_rows, "exact_requests": exact,
                "requests": requests, "exact_means": "own run only, the library's image" if chromium is not None
                else "the same pixels as one at a time", "page_errors": chromium.errors if chromium else []}
        print(f"results written to {bc.write_json(args.json, data)}", file=sys.stderr)
    return last_line(data_rows, lone)


def main(argv: Optional[list[str]] = None) -> tuple[float, float]:
    args = parse_args(argv)
    if args.through in ("gradio", "chromium"):
        return through_server(args)
    threads = bc.set_threads(args.threads)
    import torch

    from muse.batching import Batcher

    pipe = bc.load_pipeline(args.weights, args.preset, args.device, compile=args.compile)
    for i in range(args.warmup):
        _request(pipe, 100 + i, args.previews)
    share = forward_share(pipe, args.previews, args.device)
    batcher = Batcher(args.max_batch, threads=threads)
    _request(pipe, 0, args.previews)  # warm
    batcher.submit(_request, pipe, 0, args.previews).result()  # the batcher's threads started

    rows, data_rows = [], []
    exact = agree = tokens = 0
    lone = None
    for n in args.clients:
        seq_runs, bat_runs = [], []
        for r in range(args.rounds):
            # alternating order (ABBA) so that a drift of the machine's load hits both equally
            for kind in ("seq", "bat") if r % 2 == 0 else ("bat", "seq"):
                if kind == "seq":
                    seq_runs.append(one_at_a_time(pipe, n, args.previews, args.device))
                else:
                    bat_runs.append(batched(pipe, batcher, n, args.previews, args.device))
        for a, b in zip(seq_runs[-1], bat_runs[-1]):
            same = a[1].eq(b[1])
            exact += bool(same.all())
            agree, tokens = agree + int(same.sum()), tokens + same.numel()
        seq, bat = medians(seq_runs), medians(bat_runs)
        if n == 1:
            lone = seq["median_s"]
        add_row(rows, data_rows, n, seq, bat)
        data_rows[-1]["one_request_of_n_s"] = one_request_of(pipe, n, args.previews, args.device)
    stats = batcher.stats
    batcher.close()
    if lone is None:
        lone = forward_share(pipe, args.previews, args.device, runs=1)["total_s"]

    print(f"model: {bc.model_source(args)}; {bc.cpu_model() if args.device == 'cpu' else args.device}, "
          f"{threads} threads; previews {'on' if args.previews else 'off'}; max batch {batcher.max_batch} images; "
          f"median of {args.rounds} round(s); load average {bc.machine_info().get('load_average_1_5_15')}")
    print(bc.table(["clients", "1-at-a-time median s", "slowest s", "images/s", "batched median s", "slowest s",
                    "images/s", "images/s ratio"], rows))
    print(f"a lone request: {share['total_s']:.2f} s, of which forward passes {share['forwards_s']:.2f} s "
          f"({share['forwards_s'] / share['total_s']:.0%}), the rest (sampling, pictures) {share['rest_s']:.2f} s")
    for row in data_rows:  # the bound (module docstring)
        n, whole = row["clients"], row["one_request_of_n_s"]
        print(f"{n} prompts as one request: {whole:.2f} s; the most batching can give: images/s "
              f"{row['one_at_a_time']['slowest_s'] / whole:.2f}x one at a time, slowest/lone {whole / lone:.2f}")
    print(f"batched ids equal to one at a time: {exact} of {sum(args.clients)} requests, "
          f"{agree / tokens:.2%} of tokens; {stats.passes} passes served {stats.calls} forwards "
          f"({stats.shared} shared, at most {stats.most_calls} at once)")
    if args.json:
        data = {**bc.results_header("concurrency_library", args, pipe, threads), "previews": args.previews,
                "rounds": args.rounds, "max_batch": batcher.max_batch, "lone_s": lone, "lone_request": share,
                "rows": data_rows, "exact_requests": exact, "requests": sum(args.clients),
                "token_agreement": agree / tokens, "passes": stats.passes, "forwards": stats.calls,
                "shared_passes": stats.shared, "torch_threads": torch.get_num_threads()}
        print(f"results written to {bc.write_json(args.json, data)}", file=sys.stderr)
    return last_line(data_rows, lone)


if __name__ == "__main__":
    main()
