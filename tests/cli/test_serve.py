"""`gossip-tui serve`: the dashboard in a browser through textual-serve (issue 15)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gossip_tui import _serve, cli
from gossip_tui.core.models import SocketAddress
from tests.processes import REPO, free_port, wait_for

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_serve_runs_the_dashboard_with_the_top_level_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served: list[tuple[str, SocketAddress, bool]] = []

    def serve_dashboard(node_args: list[str], web_addr: SocketAddress, **kw: Any) -> int:
        served.append((_serve.dashboard_command(node_args), web_addr, kw["insecure"]))
        return 0

    monkeypatch.setattr(_serve, "serve_dashboard", serve_dashboard)
    # "serve" as an option's value is not the subcommand.
    args = ["--node-id", "serve", "--listen-addr", "127.0.0.1:0", "serve"]
    assert cli.main([*args, "--web-addr", "127.0.0.1:8123"]) == 0
    ((command, web_addr, insecure),) = served
    assert shlex.split(command) == [
        sys.executable,
        "-m",
        "gossip_tui",
        "--node-id",
        "serve",
        "--listen-addr",
        "127.0.0.1:0",
    ]
    assert (str(web_addr), insecure) == ("127.0.0.1:8123", False)


def test_serve_binds_the_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[SocketAddress] = []
    monkeypatch.setattr(_serve, "serve_dashboard", lambda _a, addr, **_kw: served.append(addr))
    assert cli.main(["serve"]) == 0
    assert served == [SocketAddress.parse("127.0.0.1:8000")]


@pytest.mark.parametrize("addr", ["0.0.0.0:8000", "192.0.2.7:8000"])
def test_serve_refuses_an_address_off_the_loopback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], addr: str
) -> None:
    monkeypatch.setattr(_serve, "_server_class", lambda: pytest.fail("it served"))
    assert cli.main(["serve", "--web-addr", addr]) == 2
    error = _one_line_error(capsys)
    assert error.startswith(f"gossip-tui: error: refusing to serve the dashboard on {addr}")
    assert "--insecure-web" in error


def test_insecure_web_lets_the_operator_expose_it(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, Any]] = []

    class Server:
        def __init__(self, command: str, **options: Any) -> None:
            made.append(options)

        def serve(self) -> None:
            pass

    monkeypatch.setattr(_serve, "_server_class", lambda: Server)
    assert cli.main(["serve", "--web-addr", "0.0.0.0:8000", "--insecure-web"]) == 0
    assert made[0]["host"] == "0.0.0.0"


def test_without_textual_serve_one_line_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "textual_serve", None)
    monkeypatch.setitem(sys.modules, "textual_serve.server", None)
    assert cli.main(["serve"]) == 2
    error = _one_line_error(capsys)
    assert error.startswith("gossip-tui: error: serve needs textual-serve")
    assert "gossip-tui[serve]" in error


def _page(url: str) -> tuple[int, str] | None:
    try:
        with _OPENER.open(url, timeout=5) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except (OSError, urllib.error.URLError):
        return None


@contextlib.contextmanager
def _served(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """``gossip-tui serve`` on 127.0.0.1 (a free port: the page names its own address, so
    not port 0) until its page answers: (the port, the page)."""
    pytest.importorskip("textual_serve", reason="the serve extra is not installed")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSIP_TUI_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gossip_tui",
                "--listen-addr",
                "127.0.0.1:0",
                "serve",
                "--web-addr",
                f"127.0.0.1:{port}",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        pages: list[tuple[int, str]] = []

        def answered() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"serve exited: {log.read_text()}")
            page = _page(url)
            if page is not None:
                pages.append(page)
            return page is not None

        wait_for(answered, 30, "the page")
        status, body = pages[-1]
        assert status == 200
        yield port, body
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_serve_answers_the_page_in_a_browser(tmp_path: Path) -> None:
    with _served(tmp_path) as (port, body):
        assert 'class="textual-terminal"' in body  # textual-serve's page
        assert f"ws://127.0.0.1:{port}/ws" in body  # its websocket, on the same address


# The dashboard's own words, drawn on its first frame (the Local keys pane's title).
_FIRST_FRAME_TEXT = "Local keys"


def test_the_page_websocket_shows_the_dashboard(tmp_path: Path) -> None:
    aiohttp = pytest.importorskip("aiohttp", reason="textual-serve's aiohttp is not installed")
    with _served(tmp_path) as (port, _body):
        # What the page's script does: open /ws with its size in the query, send that
        # size again as a "resize" envelope, then read the app's output as binary frames.
        async def first_frame() -> str:
            url = f"ws://127.0.0.1:{port}/ws?width=100&height=30"
            screen = ""
            async with (
                asyncio.timeout(60),  # the subprocess imports and opens its node first
                aiohttp.ClientSession(trust_env=False) as session,
                session.ws_connect(url) as websocket,
            ):
                await websocket.send_str(json.dumps(["resize", {"width": 100, "height": 30}]))
                await websocket.send_str(json.dumps(["ping", "first"]))
                pong = False
                while not (pong and _FIRST_FRAME_TEXT in screen):
                    message = await websocket.receive()
                    if message.type == aiohttp.WSMsgType.BINARY:
                        screen += message.data.decode("utf-8", "replace")
                    elif message.type == aiohttp.WSMsgType.TEXT:
                        pong |= json.loads(message.data) == ["pong", "first"]
                    else:
                        raise AssertionError(f"the websocket ended: {message.type!r} {screen!r}")
            return screen

        screen = asyncio.run(first_frame())
        assert _FIRST_FRAME_TEXT in screen
        assert "\x1b[" in screen  # drawn as a terminal is: escape sequences
