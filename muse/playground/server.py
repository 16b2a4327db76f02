"""Serving the page: on Hugging Face's ZeroGPU or not, logging, the model loaded (at import on ZeroGPU, else in
the background while the server starts), torch's threads, the queue, the MCP server, and Gradio's launch."""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import Any, Callable

import gradio as gr

from ..compute import COMPUTE, server_threads
from .errors import PlaygroundError
from .model import MODEL, batcher, max_batch
from .pictures import warm_up
from .transport import slow_queue_poll

try:
    import spaces
except ImportError:  # not on Hugging Face's ZeroGPU
    spaces = None

log = logging.getLogger("muse.app")
ZERO_GPU = spaces is not None
GPU_SECONDS = int(os.environ.get("MUSE_GPU_SECONDS", "60"))  # the most a decoding handler holds a GPU on ZeroGPU
# System fonts: the page must not fetch web fonts (it runs offline and in CI).
THEME = dict(primary_hue="orange", secondary_hue="amber", font=["ui-sans-serif", "system-ui", "sans-serif"],
             font_mono=["ui-monospace", "monospace"])
MAX_FILE_SIZE = "50mb"
QUEUE_SIZE = int(os.environ.get("MUSE_QUEUE_SIZE", "16"))  # requests waiting at most; past it "Queue is full"
# Gradio runs each streaming handler on a thread of its pool (40 threads), which the quick page events share.
MAX_CONCURRENT = 32


def decode_concurrency() -> int:
    """Decoding events Gradio runs at once: the batcher's maximum batch (`model.max_batch`, MUSE_MAX_BATCH;
    a request is at least one image), so that every request the batcher can take reaches it, at most
    MAX_CONCURRENT. MUSE_MAX_BATCH=1 runs them one at a time. A bad MUSE_MAX_BATCH stops the server with its
    message."""
    try:
        return min(max_batch(), MAX_CONCURRENT)
    except ValueError as err:
        raise SystemExit(str(err)) from None


def configure_queue(demo: gr.Blocks) -> gr.Blocks:
    """`demo` with its queue: `decode_concurrency()` workers for the events that decode (they share one
    batcher), and a bounded line (QUEUE_SIZE)."""
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=decode_concurrency())
    slow_queue_poll(demo)
    return demo


def gpu_decorator(module: Any) -> Callable[[Callable], Callable]:
    """How a handler that decodes is wrapped: `module.GPU(duration=GPU_SECONDS)` (Hugging Face's `spaces`: a
    GPU asked for per call), or not at all without one."""
    if module is None:
        return lambda fn: fn
    return module.GPU(duration=GPU_SECONDS)


gpu = gpu_decorator(spaces)


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request otherwise


def load_on_zero_gpu() -> None:
    """On ZeroGPU, load the model now: ZeroGPU wants it in memory before any GPU call, and torch.compile does
    not run there. Elsewhere nothing: `launch` loads it in the background."""
    if not ZERO_GPU:
        return
    configure_logging()
    MODEL.allow_compile = False
    try:
        MODEL.get()
    except PlaygroundError as err:
        log.warning("the model did not load at start: %s", err)  # each request shows the message


def mcp_enabled() -> bool:
    """The MCP server is on unless MUSE_MCP=0, where Gradio's MCP extra (gradio[mcp]) is installed."""
    if os.environ.get("MUSE_MCP", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if importlib.util.find_spec("mcp") is None:
        log.warning("MCP is off: install gradio[mcp] (requirements.txt has it) to serve the text_to_image tool")
        return False
    return True


def launch(demo: gr.Blocks, css: str = "") -> None:
    """Serve `demo` with its stylesheet `css` (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT), the model loading
    meanwhile."""
    configure_logging()
    if not ZERO_GPU:  # (on ZeroGPU it loaded at import)
        try:
            threads = server_threads()  # one core left to the server and a local browser: see muse.compute
        except ValueError as err:
            raise SystemExit(str(err)) from None
        COMPUTE.set_threads(threads)
        log.info("decoding on %d torch thread%s (MUSE_THREADS sets it)", threads, "" if threads == 1 else "s")
        try:
            images = batcher().max_batch  # its passes run on COMPUTE, with the threads just set
        except ValueError as err:
            raise SystemExit(str(err)) from None
        log.info("decoding up to %d image%s at once (MUSE_MAX_BATCH sets it)", images, "" if images == 1 else "s")
        MODEL.load_in_background(warm_up)  # the page opens meanwhile; a first request waits for it
    # show_error: the handlers raise only messages written for the user (UserError); what Gradio itself
    # refuses before a handler runs (an API client's malformed file data) shows its own message.
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), show_error=True,
                max_file_size=MAX_FILE_SIZE, footer_links=["api", "gradio"], mcp_server=mcp_enabled(),
                theme=gr.themes.Soft(**THEME), css=css)
