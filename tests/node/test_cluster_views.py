"""The node's cluster-wide readings on real in-memory nodes (MemoryNetwork, trio's
autojump clock): propagation of its keys, and agreement groups through a partition."""

from __future__ import annotations

import pytest
import trio

from gossip_tui.core.agreement import VIEW_KEY, AgreementReading, summarize
from gossip_tui.node import Node
from gossip_tui.testing import MemoryNetwork

from .helpers import all_see_each_other, open_cluster, wait_until


def _held(node: Node, key: str) -> tuple[int, int]:
    reading = node.propagation()
    entry = next(k for k in reading.keys if k.key == key)
    return entry.held_by, entry.live_peers


def _groups(reading: AgreementReading) -> list[set[str]]:
    return [{m.node.node_id for m in group.members} for group in reading.groups]


@pytest.mark.trio
async def test_a_key_is_counted_held_as_peers_report_it_and_dead_peers_drop_out(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork(seed=41)
    async with open_cluster(3, transport=network.transport()) as nodes:
        writer, near, far = nodes
        await wait_until(lambda: all_see_each_other(nodes), 30, "the cluster to form")
        writer.set("colour", "blue")
        assert _held(writer, "colour") == (0, 2)  # nobody has it yet
        await wait_until(lambda: _held(writer, "colour") == (2, 2), 30, "both peers to hold it")
        # Cut the far peer off: the write reaches the near one only, and the far one,
        # once dead, leaves the count.
        network.partition([far.gossip_addr], [writer.gossip_addr, near.gossip_addr])
        writer.set("colour", "red")
        await wait_until(lambda: _held(writer, "colour") == (1, 2), 30, "the near one to hold it")
        lagging = next(k for k in writer.propagation().keys if k.key == "colour").laggards
        assert [peer for peer, _version in lagging] == [far.self_id]
        await wait_until(lambda: _held(writer, "colour") == (1, 1), 60, "the far one to die")
        network.heal()
        await wait_until(lambda: _held(writer, "colour") == (2, 2), 60, "the heal")


@pytest.mark.trio
async def test_a_partition_shows_as_two_groups_and_a_heal_as_one(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork(seed=42)
    async with open_cluster(4, transport=network.transport()) as nodes:
        await wait_until(lambda: all_see_each_other(nodes), 30, "the cluster to form")
        everyone = summarize([n.self_id for n in nodes]).encode()
        await wait_until(
            lambda: all(n.get(VIEW_KEY, m.self_id) == everyone for n in nodes for m in nodes),
            30,
            "every node to publish the whole cluster as its view",
        )
        viewer = nodes[0]
        assert viewer.agreement().agreed
        assert _groups(viewer.agreement()) == [{n.self_id.node_id for n in nodes}]

        left, right = nodes[:2], nodes[2:]
        network.partition([n.gossip_addr for n in left], [n.gossip_addr for n in right])
        names_left = {n.self_id.node_id for n in left}
        names_right = {n.self_id.node_id for n in right}
        await wait_until(
            lambda: _groups(viewer.agreement()) == [names_left, names_right],
            60,
            "two groups: this side, and the other side as last heard of",
        )
        reading = viewer.agreement()
        own, other = reading.groups
        assert own.includes_self and own.summary is not None and own.summary.count == 2
        assert other.live_members == 0  # dead to us: the last view we heard of them

        network.heal()
        await wait_until(
            lambda: _groups(viewer.agreement()) == [names_left | names_right],
            60,
            "one group again",
        )
        assert viewer.agreement().groups[0].live_members == 4
