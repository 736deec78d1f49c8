"""What a headless node has imported once it gossips (and, with HTTP, listens), before any
request: a module that a start needs not (the application before its first connection,
hypercorn, cattrs, json without HTTP, the client, the dashboard) must not come back.

A node's start-up CPU is nearly all imports (scripts/bench/startup.py counts it), so these
guards count what is loaded instead of timing anything: a fresh interpreter runs
``gossip-tui --headless`` through the command line's own path and lists ``sys.modules``
when the node is ready.
"""

from __future__ import annotations

import pytest

from tests.processes import run_probe

# The command line's own path (cli.main, the quick parser, the headless runtime), with the
# runtime told to list the modules once the node is up (and serving, with HTTP) and then
# to stop as on SIGTERM.
_PROBE = """
import os, signal, socket, sys
from functools import partial

import trio

import gossip_tui._headless as headless
from gossip_tui import cli

def ask_health(addr):
    # A bare socket: http.client, in the node's interpreter, would be counted as the node's.
    request = b"GET /health HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n"
    with socket.create_connection((addr.host, addr.port), timeout=30) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer

async def report(node):
    if os.environ.get("PROBE_ASK_HEALTH"):
        await trio.to_thread.run_sync(ask_health, node.http_addr)
    loaded = sorted(sys.modules)
    print("\\n".join(loaded), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

run = headless.serve_headless
headless.serve_headless = partial(run, on_ready=report)
raise SystemExit(cli.main(sys.argv[1:]))
"""

_NODE_ARGS = ("--headless", "--listen-addr", "127.0.0.1:0", "--node-id", "probe")

# Never loaded by a start, with or without HTTP: the dashboard, typer (the quick parser
# does without it), the client commands (http.client and email), the TOML reader (no
# config file), sealing and OpenSSL's AEAD (no key), the structuring converter (cattrs:
# only requests and the dashboard), hypercorn and h11 (the first connection imports them),
# the test kit.
_NEVER_AT_START = (
    "textual",
    "rich",
    "typer",
    "gossip_tui.ui",
    "gossip_tui.client",
    "gossip_tui.testing",
    "http.client",
    "email",
    "tomllib",
    "cryptography",
    "gossip_tui.node._crypto",
    "cattrs",
    "hypercorn",
    "h11",
    "h2",
    "wsproto",
    # The application's module, and what it brings: built on the first connection.
    "gossip_tui.api._app",
    "gossip_tui.api._records",
    "gossip_tui.api._openapi",
    "gossip_tui.api._metrics",
)

# Without HTTP, nothing of the API, nor json (only --log-format json, --state-dir and the
# API use it).
_NEVER_WITHOUT_HTTP = ("gossip_tui.api", "gossip_tui._http_settings", "json")

# How many of the package's own modules a ready node has loaded: a module that a start
# begins to import (or a new one on its path) fails here and has to be shown to be needed.
_OWN_MODULES = {"no-http": 42, "http": 47}


# What the first request (GET /health, as every cluster harness asks each node) loads on
# top: hypercorn, h11 and the application, but not cattrs (the records of the other
# routes), the other routes' modules, nor what hypercorn imports for HTTP/2 and websockets
# (gossip_tui.api._server stands in for them).
_NEVER_FOR_HEALTH = (
    "cattrs",
    "gossip_tui.node._records",
    "gossip_tui.api._records",
    "gossip_tui.api._openapi",
    "gossip_tui.api._metrics",
    "gossip_tui.api._events",
    "h2.connection",
    "h2.events",
    "hpack",
    "hyperframe",
    "wsproto",
    "hypercorn.protocol.h2",
    "hypercorn.protocol.ws_stream",
    "logging.config",
    "multiprocessing",
    "tomllib",
    "typer",
    "textual",
    "gossip_tui.client",
    "http.client",
    "email",
)


def _loaded(*extra: str, ask_health: bool = False) -> list[str]:
    env = {"PROBE_ASK_HEALTH": "1"} if ask_health else {}
    lines = run_probe(_PROBE, *_NODE_ARGS, *extra, env=env)
    assert "gossip_tui.node" in lines  # the probe did run a node
    return lines


def _heavy(loaded: list[str], names: tuple[str, ...]) -> list[str]:
    return [m for m in loaded if any(m == n or m.startswith(n + ".") for n in names)]


@pytest.mark.parametrize("mode", ["no-http", "http"])
def test_a_ready_headless_node_has_imported_nothing_it_does_without(mode: str) -> None:
    loaded = _loaded("--no-http") if mode == "no-http" else _loaded()

    never = _NEVER_AT_START + (_NEVER_WITHOUT_HTTP if mode == "no-http" else ())
    assert _heavy(loaded, never) == []
    own = [m for m in loaded if m == "gossip_tui" or m.startswith("gossip_tui.")]
    assert len(own) <= _OWN_MODULES[mode], own
    if mode == "http":
        assert "gossip_tui.api._server" in loaded  # it does listen


def test_the_first_health_request_loads_only_what_it_answers_with() -> None:
    loaded = _loaded(ask_health=True)

    assert _heavy(loaded, _NEVER_FOR_HEALTH) == []
    assert {"hypercorn.trio.run", "h11", "gossip_tui.api._app"} <= set(loaded)  # it did serve
