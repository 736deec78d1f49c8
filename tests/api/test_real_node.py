"""The HTTP API over the real runtime (one node, UDP and TCP on 127.0.0.1)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from functools import partial
from typing import Any

import pytest
import trio

from gossip_tui.api import serve_http
from gossip_tui.core.models import SocketAddress
from gossip_tui.node import MAX_KEY_VALUE_BYTES, NodeConfig, open_node
from tests.processes import free_port

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _request(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with _OPENER.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


async def _fetch(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, Any]:
    return await trio.to_thread.run_sync(partial(_request, url, method, body))


@pytest.mark.trio
async def test_the_api_over_a_real_node() -> None:
    # Not port 0: the HTTP API takes the gossip port number over TCP, which another
    # process may hold; free_port checks both.
    config = NodeConfig(
        listen_addr=SocketAddress.parse(f"127.0.0.1:{free_port()}"),
        node_id="api-real",
        generation=42,
    )
    async with open_node(config) as node:
        http_addr = await node.start_service(serve_http, node, node.gossip_addr)
        base = f"http://{http_addr}"
        assert http_addr.port == node.gossip_addr.port

        put = await _fetch(f"{base}/keys/color", "PUT", b"red")
        set_kv = await _fetch(f"{base}/set_kv/?key=size&value=L")
        stored = (node.get("color"), node.get("size"))
        _, index = await _fetch(f"{base}/")
        too_large = await _fetch(f"{base}/keys/big", "PUT", b"x" * MAX_KEY_VALUE_BYTES)
        deleted = await _fetch(f"{base}/keys/color", "DELETE")
        after_delete = node.get("color")
        _, nodes = await _fetch(f"{base}/nodes")

    assert put[0] == 200
    assert set_kv == (200, {"status": True})
    assert stored == ("red", "L")
    me = {
        "node_id": "api-real",
        "generation_id": 42,
        "gossip_advertise_addr": str(node.gossip_addr),
    }
    assert index["cluster_id"] == "testing"
    assert index["live_nodes"] == [me]
    assert index["dead_nodes"] == []
    [state] = index["cluster_state"]["node_states"]
    assert state["chitchat_id"] == me
    assert isinstance(state["heartbeat"], int)
    assert state["key_values"]["bind"] == {
        "value": str(node.gossip_addr),
        "version": 1,
        "status": "Set",
    }
    assert state["key_values"]["color"]["status"] == "Set"
    assert too_large[0] == 413
    assert deleted[0] == 200
    assert after_delete is None
    assert nodes["nodes"][0]["liveness"] == "self"
