"""The dashboard follows the node's events: no snapshot, keys read only when shown in full."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from gossip_tui.core.models import NodeId, SocketAddress
from gossip_tui.node import Node, NodeConfig, NodeUpdated, open_node
from gossip_tui.testing import FakeCluster, FakeNode
from gossip_tui.ui import DemoCluster, GossipApp
from gossip_tui.ui.widgets import NodeDetail
from tests.ui.conftest import make_app, populate, wait_ready, wait_until

# Longer than any test: after the first reading, only events can change the screen.
NO_POLL = 3600.0


def _cell(app: GossipApp, node: NodeId, column: str) -> str:
    return app.nodes_table.get_cell(str(node), column).plain


def _me(app: GossipApp, cluster: FakeCluster) -> FakeNode:
    assert app.node is not None
    return cluster.handles[app.node.self_id]


def _detail_value(app: GossipApp, key: str) -> str | None:
    """The value of ``key`` in the detail pane (None when not shown)."""
    shown = app.query_one(NodeDetail).shown_node
    value = shown.key_values.get(key) if shown is not None else None
    return value.value if value is not None else None


def _log_text(app: GossipApp) -> str:
    return "".join(line.text for line in app.event_log.lines)


@pytest.mark.asyncio
async def test_a_peer_key_change_shows_in_the_table_without_a_poll(cluster: FakeCluster) -> None:
    populate(cluster)
    app = make_app(cluster, refresh_interval=NO_POLL, live_sample_interval=NO_POLL)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        me = _me(app, cluster)
        charlie = cluster.peer("charlie")
        assert (_cell(app, charlie, "keys"), _cell(app, charlie, "max_version")) == ("1", "1")
        reads_of_charlie = me.nodes_read.count(charlie)

        cluster.set_peer_key(charlie, "zone", "eu-west-3")  # KeyChanged + NodeUpdated

        await wait_until(pilot, lambda: _cell(app, charlie, "keys") == "2", what="the count")
        assert _cell(app, charlie, "max_version") == "2"
        # Nothing polled: the one reading at start, no snapshot, charlie's keys not read.
        assert me.readings_taken == 1
        assert me.snapshots_taken == 0
        assert me.nodes_read.count(charlie) == reads_of_charlie


@pytest.mark.asyncio
async def test_selecting_a_node_reads_its_keys(cluster: FakeCluster) -> None:
    populate(cluster)
    app = make_app(cluster, refresh_interval=NO_POLL, live_sample_interval=NO_POLL)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        me = _me(app, cluster)
        bravo = cluster.peer("bravo")
        table = app.nodes_table
        await wait_until(pilot, lambda: _detail_value(app, "zone") == "eu-west-1", what="alpha")
        reads_of_bravo = me.nodes_read.count(bravo)

        table.move_cursor(row=table.shown_keys.index(str(bravo)))
        await wait_until(pilot, lambda: _detail_value(app, "role") == "worker", what="bravo")
        assert me.nodes_read.count(bravo) == reads_of_bravo + 1

        # While selected, a change of its keys is read again and shown.
        cluster.set_peer_key(bravo, "role", "indexer")
        await wait_until(pilot, lambda: _detail_value(app, "role") == "indexer", what="new value")
        assert me.nodes_read.count(bravo) == reads_of_bravo + 2
        assert me.snapshots_taken == 0


@pytest.mark.asyncio
async def test_the_log_has_one_line_per_key_change_not_two(cluster: FakeCluster) -> None:
    populate(cluster)
    app = make_app(cluster, refresh_interval=NO_POLL, live_sample_interval=NO_POLL)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        alpha = cluster.peer("alpha")
        cluster.set_peer_key(alpha, "zone", "us-east-1")  # KeyChanged + NodeUpdated
        await wait_until(pilot, lambda: "us-east-1" in _log_text(app), what="the key line")
        assert "updated alpha" not in _log_text(app)

        # A version change with no key change in its batch keeps its own line.
        cluster.emit(NodeUpdated(alpha, 7))
        await wait_until(pilot, lambda: "updated alpha" in _log_text(app), what="its line")
        assert "max_version=7" in _log_text(app)


@pytest.mark.slow
@pytest.mark.asyncio
async def test_real_nodes_a_peer_joins_and_its_key_shows_with_events_alone() -> None:
    opened: list[Node] = []

    @asynccontextmanager
    async def recording_open_node(config: NodeConfig) -> AsyncIterator[Node]:
        async with open_node(config) as node:
            opened.append(node)
            yield node

    config = NodeConfig(
        listen_addr=SocketAddress.parse("127.0.0.1:0"), node_id="ui-events", gossip_interval=0.05
    )
    demo = DemoCluster(1, restart_delay=60.0, rng=random.Random(3))
    # One reading at start (before the peer is known): the peer's row, its join and its
    # keys can only come from events.
    app = GossipApp(
        config, recording_open_node, demo=demo, refresh_interval=NO_POLL, cursor_blink=False
    )
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_until(pilot, lambda: len(opened) == 2, what="the peer to start")
        _me, peer = opened
        await wait_until(
            pilot,
            lambda: (
                str(peer.self_id) in app.nodes_table.shown_keys
                and _cell(app, peer.self_id, "status") == "live"
            ),
            timeout=15,
            what="the peer's row, live",
        )
        keys_before = int(_cell(app, peer.self_id, "keys"))
        peer.set("colour", "teal")
        await wait_until(
            pilot,
            lambda: _cell(app, peer.self_id, "keys") == str(keys_before + 1),
            timeout=15,
            what="the peer's new key counted",
        )
        await pilot.press("q")
