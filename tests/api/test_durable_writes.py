"""A 2xx from a write route means the node made the change durable first."""

from __future__ import annotations

import errno
from pathlib import Path

import attrs
import pytest
import trio

from gossip_tui.api import make_app
from gossip_tui.core.models import SocketAddress
from gossip_tui.node import KeysNotSaved, NodeConfig, open_node
from gossip_tui.node._local_store import load_local_keys
from gossip_tui.testing import MemoryNetwork

from .asgi_client import acall, call
from .helpers import api_node

JSON = [("content-type", "application/json")]

WRITES = [
    ("PUT", "/keys/k", "", b"v"),
    ("PUT", "/keys/k", "ttl=true", b"v"),
    ("DELETE", "/keys/k", "", b""),
    ("DELETE", "/keys/k", "after_ttl=true", b""),
    ("GET", "/set_kv/", "key=k&value=v", b""),
    ("GET", "/set_kv", "key=k&value=v", b""),
    ("GET", "/mark_for_deletion/", "key=k", b""),
    ("GET", "/mark_for_deletion", "key=k", b""),
]


@pytest.mark.parametrize(("method", "path", "query", "body"), WRITES)
def test_every_write_route_answers_once_the_change_is_durable(
    method: str, path: str, query: str, body: bytes
) -> None:
    node = api_node()
    node.set("k", "old")
    reply = call(make_app(node), method, path, query=query, body=body)
    assert reply.status == 200, reply.body
    assert node.saved == node.member.key_values
    assert node.member.max_version == 2  # the write was applied, and then flushed


@pytest.mark.parametrize(("method", "path", "query", "body"), WRITES)
def test_a_change_not_saved_is_503(method: str, path: str, query: str, body: bytes) -> None:
    node = api_node()
    node.set("k", "old")
    node.flush_error = KeysNotSaved(errno.ENOSPC, "could not save: No space left on device")
    reply = call(make_app(node), method, path, query=query, body=body)
    assert reply.status == 503
    assert "not saved" in reply.json()["error"]
    assert "No space left" in reply.json()["error"]


def test_reads_do_not_wait_for_a_save() -> None:
    node = api_node()
    node.set("k", "v")
    node.flush_error = KeysNotSaved(errno.EIO, "the disk is gone")
    app = make_app(node)
    for path in ("/", "/keys", "/keys/k", "/nodes", "/health", "/metrics"):
        assert call(app, "GET", path).status == 200, path
    assert call(app, "HEAD", "/keys/k").status == 200


def test_a_refused_write_does_not_flush() -> None:
    node = api_node()
    node.flush_error = KeysNotSaved(errno.EIO, "the disk is gone")
    app = make_app(node)
    assert call(app, "DELETE", "/keys/absent").status == 404
    assert call(app, "PUT", "/keys/k", body=b"{", headers=JSON).status == 400


@pytest.mark.trio
async def test_over_a_real_node_the_key_is_on_disk_when_the_reply_comes(tmp_path: Path) -> None:
    config = NodeConfig(
        listen_addr=SocketAddress.parse("127.0.0.1:0"), node_id="durable", state_dir=tmp_path
    )
    async with open_node(config, transport=MemoryNetwork(seed=51).transport()) as node:
        app = make_app(node)

        async def put(i: int) -> None:
            reply = await acall(app, "PUT", f"/keys/k{i}", body=str(i).encode())
            assert reply is not None and reply.status == 200
            assert load_local_keys(tmp_path)[f"k{i}"] == str(i)

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(put, i)
        reply = await acall(app, "DELETE", "/keys/k3")
        assert reply is not None and reply.status == 200
        assert "k3" not in load_local_keys(tmp_path)
        reply = await acall(app, "GET", "/set_kv/", query="key=k3&value=back")
        assert reply is not None and reply.status == 200
        assert load_local_keys(tmp_path)["k3"] == "back"
        reply = await acall(app, "GET", "/mark_for_deletion/", query="key=k3")
        assert reply is not None and reply.status == 200
        assert "k3" not in load_local_keys(tmp_path)


@pytest.mark.trio
async def test_over_a_real_node_a_failed_save_is_503(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the state directory should be")
    config = attrs.evolve(
        NodeConfig(listen_addr=SocketAddress.parse("127.0.0.1:0")), state_dir=blocked
    )
    async with open_node(config, transport=MemoryNetwork(seed=52).transport()) as node:
        reply = await acall(make_app(node), "PUT", "/keys/k", body=b"v")
        assert reply is not None and reply.status == 503, reply
        assert node.get("k") == "v"  # applied and gossiped, only not durable
