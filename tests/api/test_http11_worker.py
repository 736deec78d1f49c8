"""The API's hypercorn worker is imported without HTTP/2, websockets or multiprocessing (they
cost every HTTP node ~40 ms of start), and still answers as hypercorn does with them.

Each test runs in a fresh interpreter: in this one another test may already have imported
hypercorn whole, and then nothing is deferred.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.processes import run_probe

# Serves the API of a fake node, sends each request in argv on its own connection, and
# prints one JSON line: the replies, and which deferred modules were loaded before the
# first request and after the last.
_SERVE_AND_ASK = """
import json, os, socket, sys
import trio
from gossip_tui.api import _server, serve_http
from gossip_tui.core.models import SocketAddress
from tests.api.helpers import api_node

# The h2 package alone is a version string: its modules are what HTTP/2 costs.
WATCHED = ("wsproto", "h2.", "hpack", "hyperframe", "priority", "multiprocessing")
# hypercorn's own modules that serving HTTP/1.1 does without.
WATCHED_HYPERCORN = ("hypercorn.typing", "hypercorn.statsd", "hypercorn.trio.statsd")

def loaded():
    return sorted({n.split(".")[0] for n in sys.modules if n.startswith(WATCHED)})

def loaded_of_hypercorn():
    return sorted(n for n in sys.modules if n in WATCHED_HYPERCORN)

def exchange(port, request):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        sock.settimeout(1)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except TimeoutError:
            pass
        return reply.decode("latin-1")

if os.environ.get("BREAK_A_STAND_IN") == "h2":
    # As a hypercorn release would that takes a name the stand-in does not offer.
    _server._DEFERRED["hypercorn.protocol.h2"] = ()
if os.environ.get("BREAK_A_STAND_IN") == "typing":
    _server._TYPING_NAMES = _server._TYPING_NAMES[1:]

async def main():
    async with trio.open_nursery() as nursery:
        addr = await nursery.start(serve_http, api_node(), SocketAddress.parse("127.0.0.1:0"))
        before = loaded()
        hypercorn_before = "hypercorn" in sys.modules
        replies = []
        for request in sys.argv[1:]:
            replies.append(await trio.to_thread.run_sync(exchange, addr.port, request.encode()))
        nursery.cancel_scope.cancel()
    after = loaded()
    hypercorn_after = loaded_of_hypercorn()
    import multiprocessing.synchronize, logging.config, tomllib
    import hypercorn.typing, hypercorn.trio.statsd
    real = [
        hasattr(multiprocessing.synchronize, "Semaphore"),
        hasattr(logging.config, "DictConfigurator"),
        hasattr(tomllib, "TOMLDecodeError"),
        hasattr(hypercorn.typing, "H2SyncStream"),
        hasattr(hypercorn.trio.statsd, "Base"),
    ]
    print(json.dumps({
        "before": before, "after": after, "replies": replies, "real": real,
        "hypercorn_modules_after": hypercorn_after,
        "hypercorn_before": hypercorn_before, "hypercorn_after": "hypercorn" in sys.modules,
    }))

trio.run(main)
"""

WEBSOCKET = (
    "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
HEALTH = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def _serve_and_ask(*requests: str, break_a_stand_in: str = "") -> dict[str, Any]:
    env = {"BREAK_A_STAND_IN": break_a_stand_in} if break_a_stand_in else {}
    report: dict[str, Any] = json.loads(run_probe(_SERVE_AND_ASK, *requests, env=env)[-1])
    return report


def test_serving_loads_no_http2_websocket_nor_multiprocessing() -> None:
    report = _serve_and_ask(HEALTH)
    assert report["before"] == []
    assert report["after"] == []
    assert report["replies"][0].startswith("HTTP/1.1 200 ")


def test_serving_builds_neither_hypercorn_typing_nor_its_statsd_logger() -> None:
    # Only annotations, casts and a NewType of hypercorn.typing run; the statsd logger is
    # for a statsd host, never given. Both stood in for while hypercorn is imported (the
    # websocket stream, built for a websocket request, imports the real typing module).
    report = _serve_and_ask(HEALTH, HEALTH)
    assert report["hypercorn_modules_after"] == []
    assert [reply.split("\r\n", 1)[0] for reply in report["replies"]] == ["HTTP/1.1 200 "] * 2


def test_hypercorn_is_started_by_the_first_connection_which_is_answered() -> None:
    # The socket listens from the start (the kernel holds a connection in its backlog);
    # hypercorn is imported, and the server started, when the first connection waits.
    report = _serve_and_ask(HEALTH, HEALTH)
    assert report["hypercorn_before"] is False
    assert report["hypercorn_after"] is True
    assert [reply.split("\r\n", 1)[0] for reply in report["replies"]] == ["HTTP/1.1 200 "] * 2


def test_a_websocket_request_is_refused_with_403_as_before() -> None:
    # The websocket stream (and wsproto) is imported for the first websocket request; the
    # app refuses it before accepting, which hypercorn answers with a bare 403.
    report = _serve_and_ask(WEBSOCKET, HEALTH)
    refused, health = report["replies"]
    head = refused.split("\r\n\r\n", 1)[0].lower().split("\r\n")
    assert head[0] == "http/1.1 403 "
    assert {"content-length: 0", "connection: close", "server: hypercorn-h11"} <= set(head)
    assert "wsproto" in report["after"]
    assert health.startswith("HTTP/1.1 200 ")  # the server lives on


def test_the_deferred_modules_are_real_once_imported_after() -> None:
    # The stand-ins are gone from sys.modules once hypercorn is imported: an import of one
    # of those modules afterwards gets the module itself.
    assert _serve_and_ask(HEALTH)["real"] == [True] * 5


@pytest.mark.parametrize("stand_in", ["h2", "typing"])
def test_a_hypercorn_the_stand_ins_do_not_fit_is_imported_whole(stand_in: str) -> None:
    # A later hypercorn may take a name a stand-in lacks: the node then imports hypercorn
    # whole (HTTP/2 and all) and serves as before, instead of failing to serve.
    report = _serve_and_ask(WEBSOCKET, HEALTH, break_a_stand_in=stand_in)
    assert "h2" in report["after"]  # hypercorn is imported once the first connection waits
    assert "hypercorn.typing" in report["hypercorn_modules_after"]
    refused, health = report["replies"]
    assert refused.startswith("HTTP/1.1 403 ")
    assert health.startswith("HTTP/1.1 200 ")
    assert report["real"] == [True] * 5
