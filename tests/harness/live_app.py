"""The playground as a live server: `python app.py` on a free 127.0.0.1 port, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LiveApp:
    url: str
    pid: int
    log_path: Path
    started: float = 0.0  # time.time() when `python app.py` was started
    up: float = 0.0  # when it first answered


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(proc: subprocess.Popen, url: str, log_path: Path, timeout: float, poll_s: float = 0.5) -> None:
    """Return once `url` answers 200 (asked every `poll_s`); raise with the log's tail if the app exits or
    stays silent."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"app.py did not answer on {url}:\n{log_path.read_text()[-3000:]}")
        time.sleep(poll_s)


@contextlib.contextmanager
def running_app(weights: Optional[Path], log_path: Path, timeout: float = 180.0,
                env: Optional[dict[str, str]] = None, python: Optional[Path] = None,
                cwd: Optional[Path] = None, poll_s: float = 0.5) -> Iterator[LiveApp]:
    """Start `python app.py` on a free 127.0.0.1 port (MUSE_WEIGHTS=weights; None = the shipped model),
    wait until it answers (asked every `poll_s`: a benchmark timing the launch asks often), yield it,
    and stop it. `python` and `cwd` default to this interpreter and this checkout (another venv and a
    copied folder: the Space test)."""
    port = free_port()
    full_env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
                "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    if weights is not None:
        full_env["MUSE_WEIGHTS"] = str(weights)
    url = f"http://127.0.0.1:{port}/"
    with open(log_path, "wb") as log:
        started = time.time()
        proc = subprocess.Popen([str(python or sys.executable), "app.py"], cwd=cwd or REPO_ROOT, env=full_env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_up(proc, url, log_path, timeout, poll_s)
            yield LiveApp(url=url, pid=proc.pid, log_path=log_path, started=started, up=time.time())
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
