"""The playground as Hugging Face hosts it: on ZeroGPU (with a stand-in `spaces` module that behaves like
the real one) and as an MCP server (the text_to_image tool, through the MCP endpoint with the `mcp`
client that gradio[mcp] installs)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from tests.harness import running_app

pytestmark = pytest.mark.slow

# ZeroGPU runs a decorated function in another worker and hands its results back; a generator's items come
# back after it has run (here: all of them after it ended), so whatever it cleaned up on exit is gone by
# the time Gradio reads the last update's files. Every call is recorded, with the duration asked for.
STANDIN = '''
"""Stand-in for Hugging Face's `spaces` package (ZeroGPU), for tests."""
import functools, inspect, json, os, threading

def _record(**row):
    with open(os.environ["SPACES_STANDIN_LOG"], "a") as f:
        f.write(json.dumps(row) + "\\n")

def _in_worker(run):
    box = {}
    def work():
        try:
            box["value"] = run()
        except BaseException as err:
            box["error"] = err
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]

def GPU(fn=None, *, duration=None):
    def decorate(f):
        _record(event="decorated", name=f.__name__, duration=duration)
        if inspect.isgeneratorfunction(f):
            @functools.wraps(f)
            def gen(*args, **kwargs):
                _record(event="gpu", name=f.__name__)
                yield from _in_worker(lambda: list(f(*args, **kwargs)))
            return gen
        @functools.wraps(f)
        def call(*args, **kwargs):
            _record(event="gpu", name=f.__name__)
            return _in_worker(lambda: f(*args, **kwargs))
        return call
    return decorate(fn) if fn is not None else decorate
'''


def _rows(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture(scope="module")
def zerogpu(tiny_weights, tmp_path_factory):
    folder = tmp_path_factory.mktemp("zerogpu")
    (folder / "spaces").mkdir()
    (folder / "spaces" / "__init__.py").write_text(textwrap.dedent(STANDIN))
    calls, server_log = folder / "calls.jsonl", folder / "app.log"
    env = {"PYTHONPATH": str(folder), "SPACES_STANDIN_LOG": str(calls), "MUSE_COMPILE": "1", "MUSE_MCP": "0"}
    with running_app(tiny_weights, server_log, env=env) as live:
        yield live, calls, server_log


def test_zerogpu_loads_the_model_at_start_without_compile_and_sets_a_duration(zerogpu):
    live, calls, server_log = zerogpu
    text = server_log.read_text()
    assert "loaded the model" in text  # before any request: at import
    assert "MUSE_COMPILE is ignored here" in text
    decorated = {row["name"]: row["duration"] for row in _rows(calls) if row["event"] == "decorated"}
    assert {"generate", "inpaint", "superres", "compare", "text_to_image"} <= set(decorated)
    assert all(isinstance(d, int) and 0 < d <= 300 for d in decorated.values()), decorated


def test_zerogpu_files_outlive_the_generator(zerogpu, tmp_path):
    from gradio_client import Client

    live, calls, _ = zerogpu
    client = Client(live.url, verbose=False, download_files=str(tmp_path))
    outputs = client.predict(prompt="red heart", timesteps=2, superres=True, seed=3, randomize_seed=False,
                             api_name="/generate")
    from muse.playground import OUTPUTS

    out = dict(zip(OUTPUTS, outputs))
    assert out["status"].startswith("done"), out["status"]
    pngs = [f for f in out["files"] if f.endswith(".png")]
    assert pngs and Image.open(pngs[0]).size == (64, 64)
    assert any(f.endswith(".gif") and Path(f).stat().st_size > 0 for f in out["files"])


def test_zerogpu_checks_inputs_before_asking_for_a_gpu(zerogpu):
    from gradio_client import Client
    from gradio_client.exceptions import AppError, ValidationError

    live, calls, _ = zerogpu
    client = Client(live.url, verbose=False)
    before = sum(row["event"] == "gpu" for row in _rows(calls))
    for kwargs, message in ((dict(prompt="x", timesteps=0), "timesteps must be"),
                            (dict(prompt="   "), "Type a prompt"),
                            (dict(prompt="x", seed="abc", randomize_seed=False), "seed must be")):
        with pytest.raises((ValidationError, AppError)) as err:
            client.predict(**kwargs, api_name="/generate")
        assert message in str(err.value) and "Traceback" not in str(err.value)
    with pytest.raises((ValidationError, AppError)) as err:
        client.predict(prompt="x", timesteps_b=500, api_name="/compare")
    assert "timesteps" in str(err.value)
    assert sum(row["event"] == "gpu" for row in _rows(calls)) == before  # no GPU was asked for
    client.predict(prompt="red heart", steps=2, api_name="/text_to_image")
    assert sum(row["event"] == "gpu" for row in _rows(calls)) == before + 1


@pytest.fixture(scope="module")
def mcp_server(tiny_weights, tmp_path_factory):
    pytest.importorskip("mcp", reason="the MCP client comes with gradio[mcp] (requirements.txt)")
    with running_app(tiny_weights, tmp_path_factory.mktemp("mcp") / "app.log", env={"MUSE_MCP": "1"}) as live:
        yield live.url + "gradio_api/mcp/"


async def _tools_and_call(url: str, arguments: dict) -> tuple[list, object]:
    import httpx
    from mcp import ClientSession
    from mcp.client import streamable_http

    if hasattr(streamable_http, "streamable_http_client"):  # mcp >= 1.2x; the older name is deprecated there
        http = httpx.AsyncClient(timeout=180)
        connect = streamable_http.streamable_http_client(url, http_client=http)
    else:
        http, connect = httpx.AsyncClient(), streamable_http.streamablehttp_client(url, timeout=180)
    async with http, connect as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = (await session.list_tools()).tools
            result = await session.call_tool("text_to_image", arguments)
            return tools, result


def test_mcp_text_to_image_tool(mcp_server):
    tools, result = asyncio.run(_tools_and_call(mcp_server, {"prompt": "red heart", "seed": 2, "steps": 2}))
    tool = next(t for t in tools if t.name == "text_to_image")
    properties = tool.inputSchema["properties"]
    assert list(properties) == ["prompt", "seed", "steps", "guidance"]
    assert all(properties[name].get("description") for name in properties)  # from the Args: docstring
    assert "emoji" in tool.description
    assert not result.isError, result
    image = next(c for c in result.content if c.type == "image")
    with Image.open(io.BytesIO(base64.b64decode(image.data))) as im:
        assert im.size == (64, 64)


def test_mcp_tool_errors_are_messages(mcp_server):
    _, result = asyncio.run(_tools_and_call(mcp_server, {"prompt": "red heart", "steps": 0}))
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert result.isError and "timesteps must be" in text and "Traceback" not in text
