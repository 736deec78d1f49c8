"""The dashboard on the real node runtime (UDP and TCP on 127.0.0.1 only)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import outcome
import pytest
import trio

from gossip_tui.core.failure_detector import FailureDetectorConfig
from gossip_tui.core.models import SocketAddress
from gossip_tui.node import Node, NodeConfig, open_node
from gossip_tui.ui import DemoCluster, GossipApp
from gossip_tui.ui.app import serve_node_http
from gossip_tui.ui.demo_workers import WorkerDemoCluster
from gossip_tui.ui.screens import KeyFormScreen
from tests.processes import free_port
from tests.ui.conftest import open_screen, wait_ready, wait_until

LOCAL = SocketAddress.parse("127.0.0.1:0")


def _statuses(app: GossipApp) -> dict[str, str]:
    table = app.nodes_table
    return {key: table.get_cell(key, "status").plain for key in table.shown_keys}


@pytest.mark.asyncio
async def test_dashboard_on_a_real_node_with_its_http_api() -> None:
    # Its HTTP API takes the gossip port number over TCP: a port free for both.
    both_free = SocketAddress.parse(f"127.0.0.1:{free_port()}")
    config = NodeConfig(listen_addr=both_free, node_id="ui-real", gossip_interval=0.1)
    app = GossipApp(config, open_node, http=serve_node_http, cursor_blink=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        node = app.node
        assert node is not None
        log = "".join(line.text for line in app.event_log.lines)
        assert f"HTTP API on http://{node.gossip_addr}/" in log

        await open_screen(pilot, KeyFormScreen, "s")
        await pilot.press(*"color", "enter", *"blue", "enter")
        await wait_until(pilot, lambda: app.local_keys.value_of("color") is not None)
        assert app.local_keys.value_of("color") is not None
        me = app.last_snapshot.node(node.self_id) if app.last_snapshot else None
        assert me is not None and me.key_values["color"].value == "blue"
        await pilot.press("q")
    assert isinstance(app.trio_outcome, outcome.Value)
    assert trio.run(trio.sleep, 0) is None


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.parametrize("in_workers", [False, True], ids=["in-process", "workers"])
async def test_demo_with_real_nodes_a_stopped_peer_goes_dead_and_comes_back(
    in_workers: bool,
) -> None:
    config = NodeConfig(
        listen_addr=LOCAL,
        node_id="demo",
        gossip_interval=0.05,
        failure_detector=FailureDetectorConfig(initial_interval=0.1),
    )
    # The CLI's demo runs its peers in worker processes: x reaches them over a pipe.
    demo: DemoCluster | WorkerDemoCluster = (
        WorkerDemoCluster(2, workers=2, restart_delay=2.0, rng=random.Random(1))
        if in_workers
        else DemoCluster(2, restart_delay=2.0, rng=random.Random(1))
    )
    app = GossipApp(config, open_node, demo=demo, refresh_interval=0.1, cursor_blink=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        await wait_until(
            pilot,
            lambda: list(_statuses(app).values()).count("live") == 2,
            timeout=15,
            what="both peers live",
        )
        await pilot.press("x")
        await wait_until(pilot, lambda: len(demo.running) == 1, what="a peer to stop")
        snapshot = app.last_snapshot
        assert snapshot is not None
        peers = {n.node for n in snapshot.nodes if n.node != snapshot.self_node}
        (stopped,) = peers - set(demo.running)
        await wait_until(
            pilot,
            # No goodbye: the detector, unless its restart is seen first (which folds it).
            lambda: _statuses(app).get(str(stopped), "dead") == "dead",
            timeout=15,
            what="the stopped peer declared dead",
        )
        await wait_until(
            pilot,
            lambda: any(
                key.startswith(f"{stopped.node_id}:")
                and key != str(stopped)
                and status.startswith("live ↻")  # the dead generation folded into it
                for key, status in _statuses(app).items()
            ),
            timeout=20,
            what="the peer back with a new generation",
        )
        await pilot.press("q")
    assert isinstance(app.trio_outcome, outcome.Value)


@pytest.mark.asyncio
async def test_a_key_set_from_the_dashboard_reaches_a_real_peer() -> None:
    opened: list[Node] = []

    @asynccontextmanager
    async def recording_open_node(config: NodeConfig) -> AsyncIterator[Node]:
        async with open_node(config) as node:
            opened.append(node)
            yield node

    config = NodeConfig(listen_addr=LOCAL, node_id="ui-writer", gossip_interval=0.05)
    demo = DemoCluster(1, restart_delay=60.0, rng=random.Random(2))
    app = GossipApp(
        config, recording_open_node, demo=demo, refresh_interval=0.1, cursor_blink=False
    )
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        await wait_until(pilot, lambda: len(opened) == 2, what="the peer to start")
        me, peer = opened
        # The demo's nodes take their frozen objects from one table for the process.
        assert me.engine.state.shared is not None
        assert peer.engine.state.shared is me.engine.state.shared
        await open_screen(pilot, KeyFormScreen, "s")
        await pilot.press(*"colour", "enter", *"teal", "enter")
        await wait_until(
            pilot,
            lambda: peer.get("colour", me.self_id) == "teal",
            timeout=15,
            what="the peer to see the key",
        )
        await pilot.press("q")
    assert isinstance(app.trio_outcome, outcome.Value)
    assert me.engine.state.shared is None  # node 0 alone again makes its own
