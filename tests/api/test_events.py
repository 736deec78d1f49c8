"""GET /events: NDJSON lines of the node's events, filtered by prefix, ended cleanly."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

import pytest
import trio

from gossip_tui.api import make_app, serve_http
from gossip_tui.client import NodeClient
from gossip_tui.core.engine import LEAVING_KEY
from gossip_tui.core.models import NodeId, SocketAddress
from gossip_tui.node import KeyChanged, NodeConfig, NodeJoined, open_node
from gossip_tui.testing import FakeNode

from .asgi_client import Reply, acall
from .helpers import api_node

PEER = NodeId("peer", 1, SocketAddress.parse("127.0.0.1:10001"))


async def _stream(node: FakeNode, query: str, feed: Callable[[], None]) -> Reply:
    """Run GET /events on ``node`` in-process, call ``feed`` once subscribed."""
    result: list[Reply | None] = []

    async def request() -> None:
        result.append(await acall(make_app(node), "GET", "/events", query=query))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(request)
        with trio.fail_after(5):
            while not node.events._subscribers:
                await trio.sleep(0)
        feed()
    reply = result[0]
    assert reply is not None
    return reply


def _lines(reply: Reply) -> list[dict[str, Any]]:
    return [json.loads(line) for line in reply.body.splitlines() if line.strip()]


@pytest.mark.trio
async def test_streams_events_then_ends_when_the_node_closes() -> None:
    node = api_node()

    def feed() -> None:
        node.events.publish(NodeJoined(PEER))
        node.events.publish(KeyChanged(PEER, "app/color", "red", 3))
        node.events.publish(KeyChanged(PEER, "other", "x", 4))
        node.events.close()

    reply = await _stream(node, "prefix=app/", feed)

    assert reply.status == 200
    assert reply.headers["content-type"].startswith("application/x-ndjson")
    assert "content-length" not in reply.headers
    peer = {"node_id": "peer", "generation_id": 1, "gossip_advertise_addr": "127.0.0.1:10001"}
    subscribed, joined, changed, end = _lines(reply)
    assert subscribed["type"] == "subscribed"
    assert subscribed["prefix"] == "app/"
    assert subscribed["chitchat_id"]["node_id"] == "node-0"
    assert joined == {"type": "node_joined", "node": peer}
    assert changed == {
        "type": "key_changed",
        "node": peer,
        "key": "app/color",
        "value": "red",
        "version": 3,
    }
    assert end == {"type": "end", "reason": "node closed"}


@pytest.mark.trio
async def test_ends_when_the_node_announces_its_leave_whatever_the_prefix() -> None:
    node = api_node()

    def feed() -> None:
        node.events.publish(KeyChanged(node.self_id, LEAVING_KEY, "1", 9))

    reply = await _stream(node, "prefix=app/", feed)

    assert [line["type"] for line in _lines(reply)] == ["subscribed", "end"]
    assert _lines(reply)[-1]["reason"] == "node leaving"


@pytest.mark.trio
async def test_a_client_that_goes_away_frees_its_subscription() -> None:
    node = api_node()
    gone = trio.Event()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if not sent:  # the request first, then (once the stream began) the disconnect
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if len(sent) == 2:  # the start and the subscribed line
            gone.set()

    scope = {"type": "http", "method": "GET", "path": "/events", "headers": []}
    with trio.fail_after(5):
        await make_app(node)(scope, receive, send)
    node.events.publish(NodeJoined(PEER))  # forgets the closed subscription

    assert node.events._subscribers == []
    assert sent[0]["status"] == 200


# --------------------------------------------------------------------------- real nodes


def _config(name: str, seeds: tuple[str, ...] = ()) -> NodeConfig:
    return NodeConfig(
        listen_addr=SocketAddress.parse("127.0.0.1:0"),
        node_id=name,
        seeds=seeds,
        gossip_interval=0.05,
    )


def _reader(client: NodeClient, prefix: str, lines: list[dict[str, Any]]) -> threading.Thread:
    def read() -> None:
        for event in client.events(prefix):
            lines.append(event)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


async def _until(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    with trio.move_on_after(timeout):
        while not condition():
            await trio.sleep(0.02)  # polling, with a deadline
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.trio
async def test_sees_a_key_set_on_another_node_and_its_leave() -> None:
    lines: list[dict[str, Any]] = []
    async with open_node(_config("a")) as a:
        http = await a.start_service(partial(serve_http), a, SocketAddress.parse("127.0.0.1:0"))
        reader = _reader(NodeClient(http), "app/", lines)
        await _until(lambda: any(line["type"] == "subscribed" for line in lines), "subscribed")
        async with AsyncExitStack() as stack:
            b = await stack.enter_async_context(open_node(_config("b", (str(a.gossip_addr),))))
            b.set("app/color", "blue")
            b.set("skipped", "x")  # not under the prefix

            def b_key_seen() -> bool:
                return any(
                    line["type"] == "key_changed" and line["node"]["node_id"] == "b"
                    for line in lines
                )

            await _until(b_key_seen, "b's key on a's stream")
            # Only a node a has announced live can be announced gone.
            await _until(
                lambda: any(
                    line["type"] == "node_joined" and line["node"]["node_id"] == "b"
                    for line in lines
                ),
                "b joined on a's stream",
            )
            # b announces its leave to the peers it judges live: a must be one.
            await _until(lambda: a.self_id in b.live_nodes(), "a live at b")
        # b has left (announced on close): a declares it gone at once.
        await _until(
            lambda: any(
                line["type"] == "node_left" and line["node"]["node_id"] == "b" for line in lines
            ),
            "b's leave on a's stream",
        )
    # a closed: the stream ends with a last line, the reader's loop with it.
    await trio.to_thread.run_sync(partial(reader.join, 10))
    assert not reader.is_alive()
    types = [line["type"] for line in lines]
    assert "node_joined" in types
    assert not any(line.get("key") == "skipped" for line in lines)
    changed = next(line for line in lines if line.get("key") == "app/color")
    assert changed["value"] == "blue"
    assert lines[-1]["type"] == "end"
