"""What the node does with its engine's steps: events published from them, a leave that
ends when its peers have the marker. Virtual time (trio's autojump clock)."""

from __future__ import annotations

import attrs
import pytest
import trio

from gossip_tui.core.engine import LEAVING_KEY
from gossip_tui.node import NodeDead, NodeEvent, NodeLeft, NodeUpdated, open_node
from gossip_tui.testing import MemoryNetwork

from .helpers import all_see_each_other, fast_config, open_cluster, wait_until


@pytest.mark.trio
async def test_a_peer_write_is_published_as_node_updated_at_its_max_version(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork(seed=31)
    async with open_cluster(2, transport=network.transport()) as (observer, writer):
        await wait_until(lambda: all_see_each_other([observer, writer]), 30, "the pair")
        events = observer.subscribe()
        writer.set("color", "teal")
        wanted = NodeUpdated(writer.self_id, writer.engine.self_state.max_version)
        seen: list[NodeEvent] = []
        with trio.fail_after(10):
            while wanted not in seen:
                seen.append(await events.receive())


@pytest.mark.trio
async def test_a_local_write_is_published_as_node_updated(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork(seed=32)
    async with open_cluster(1, transport=network.transport()) as (node,):
        events = node.subscribe()
        node.set("color", "teal")
        version = node.engine.self_state.max_version
        assert [e for e in _pending(events) if isinstance(e, NodeUpdated)] == [
            NodeUpdated(node.self_id, version)
        ]


def _pending(events: trio.MemoryReceiveChannel[NodeEvent]) -> list[NodeEvent]:
    out: list[NodeEvent] = []
    while True:
        try:
            out.append(events.receive_nowait())
        except trio.WouldBlock:
            return out


@pytest.mark.trio
async def test_leave_returns_once_the_peer_has_the_marker_well_before_its_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork(seed=33)
    timeout = 30.0
    async with open_cluster(1, transport=network.transport()) as (observer,):
        config = attrs.evolve(
            fast_config(seeds=(str(observer.gossip_addr),), node_id="leaver"),
            leave_timeout=timeout,
            announce_leave=False,  # the test calls leave itself
        )
        async with open_node(config, transport=network.transport()) as leaver:
            await wait_until(lambda: all_see_each_other([observer, leaver]), 30, "the pair")
            started = trio.current_time()
            await leaver.leave()
            took = trio.current_time() - started
            # Done when the peer's SynAck came back and the Ack holding the marker left: a
            # round trip, not the timeout.
            assert took < 10 * config.gossip_interval < timeout
            await wait_until(
                lambda: observer.get(LEAVING_KEY, leaver.self_id) is not None, 1, "the marker"
            )


@pytest.mark.trio
async def test_a_graceful_leave_is_node_left_then_node_dead(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork(seed=34)
    async with open_cluster(1, transport=network.transport()) as (observer,):
        config = fast_config(seeds=(str(observer.gossip_addr),), node_id="leaver")
        async with open_node(config, transport=network.transport()) as leaver:
            await wait_until(lambda: all_see_each_other([observer, leaver]), 30, "the pair")
            events = observer.subscribe()
            gone = leaver.self_id
        membership: list[NodeEvent] = []
        with trio.fail_after(10):
            while NodeDead(gone) not in membership:
                event = await events.receive()
                if isinstance(event, (NodeLeft, NodeDead)):
                    membership.append(event)
        assert membership == [NodeLeft(gone), NodeDead(gone)]
