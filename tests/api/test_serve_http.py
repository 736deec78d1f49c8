"""serve_http over real TCP on 127.0.0.1, with a stdlib client in a worker thread."""

from __future__ import annotations

import errno
import json
import logging
import socket
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from gossip_tui.api import serve_http
from gossip_tui.core.models import SocketAddress

from .helpers import api_node

ANY_PORT = SocketAddress.parse("127.0.0.1:0")
# No proxy, whatever the environment says: these requests must stay on the loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _request(
    url: str, method: str = "GET", body: bytes | None = None, content_type: str | None = None
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, data=body, method=method)
    if content_type is not None:
        request.add_header("Content-Type", content_type)
    try:
        with _OPENER.open(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), json.loads(error.read())


async def _fetch(url: str, *args: Any) -> tuple[int, dict[str, str], Any]:
    return await trio.to_thread.run_sync(partial(_request, url, *args))


@pytest.mark.trio
async def test_serves_the_api_over_tcp() -> None:
    node = api_node()
    async with trio.open_nursery() as nursery:
        addr = await nursery.start(serve_http, node, ANY_PORT)
        assert isinstance(addr, SocketAddress)
        assert addr.host == "127.0.0.1"
        assert addr.port != 0
        base = f"http://{addr}"

        status, _, health = await _fetch(f"{base}/health")
        put = await _fetch(f"{base}/keys/color", "PUT", b'{"value": "red"}', "application/json")
        set_kv = await _fetch(f"{base}/set_kv/?key=size&value=L")
        _, _, index = await _fetch(f"{base}/")
        missing = await _fetch(f"{base}/keys/nope")
        wrong_method = await _fetch(f"{base}/health", "POST", b"")

        nursery.cancel_scope.cancel()

    assert status == 200
    assert health["status"] == "ok"
    assert put[0] == 200
    assert set_kv[2] == {"status": True}
    own = index["cluster_state"]["node_states"][0]
    assert set(own["key_values"]) == {"color", "size"}
    assert missing[0] == 404
    assert missing[2] == {"error": "no key 'nope'"}
    assert wrong_method[0] == 405
    assert wrong_method[1]["allow"] == "GET, HEAD"


@pytest.mark.trio
async def test_stops_listening_when_cancelled() -> None:
    async with trio.open_nursery() as nursery:
        addr = await nursery.start(serve_http, api_node(), ANY_PORT)
        nursery.cancel_scope.cancel()

    with pytest.raises(OSError), socket.create_connection((addr.host, addr.port), timeout=5):
        pass


@pytest.mark.trio
async def test_a_busy_port_raises_eaddrinuse_before_starting() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]

        with pytest.raises(OSError) as raised:
            await serve_http(api_node(), SocketAddress.parse(f"127.0.0.1:{port}"))

    assert raised.value.errno == errno.EADDRINUSE


_FD_DIR = Path("/proc/self/fd")


@pytest.mark.skipif(not _FD_DIR.is_dir(), reason="needs /proc to count open descriptors")
@pytest.mark.trio
async def test_cancelled_before_it_started_leaves_no_socket_open() -> None:
    before = len(list(_FD_DIR.iterdir()))

    for _ in range(3):
        with trio.CancelScope() as scope:
            scope.cancel()  # takes effect at serve_http's first checkpoint, after binding
            async with trio.open_nursery() as nursery:
                await nursery.start(serve_http, api_node(), ANY_PORT)

    assert len(list(_FD_DIR.iterdir())) == before


@pytest.mark.trio
async def test_the_server_says_where_it_runs_once_as_it_starts_listening(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # hypercorn's "Running on" line, said by serve_http as the socket starts listening
    # (hypercorn itself starts on the first connection, and does not say it again).
    caplog.set_level(logging.INFO, logger="gossip_tui.api.http")
    async with trio.open_nursery() as nursery:
        addr = await nursery.start(serve_http, api_node(), ANY_PORT)
        said = [r.getMessage() for r in caplog.records if r.name == "gossip_tui.api.http"]
        assert said == [f"Running on http://{addr} (CTRL + C to quit)"]
        for _ in range(2):
            status, _, _ = await _fetch(f"http://{addr}/health")
            assert status == 200
        nursery.cancel_scope.cancel()
    said = [r.getMessage() for r in caplog.records if r.name == "gossip_tui.api.http"]
    assert said == [f"Running on http://{addr} (CTRL + C to quit)"]
