"""20% loss on every link of a 10-node cluster, over two minutes of virtual time.

chitchat's failure detector defaults (phi threshold 8, prior interval 5 s, window 1000,
max interval 10 s) and a realistic 1 s gossip interval. Measured on this code (several
network seeds and runs): convergence in 4.5-8.5 s, the key on all 10 nodes 1.5 rounds after
the write, and a largest phi of 2.9-4.1 seen by any node for any peer over the two minutes,
against the threshold of 8; about 19.8% of the datagrams lost.
"""

from __future__ import annotations

import pytest
import trio

from gossip_tui.node import NodeDead
from gossip_tui.testing import MemoryNetwork
from tests.node.helpers import wait_until

from .helpers import attach_logs, exactly_live, memory_addr, node_config, start_node

NODES = 10
INTERVAL = 1.0
LOSS = 0.2
DURATION = 120.0
BASE_PORT = 20_000


@pytest.mark.trio
async def test_a_key_reaches_all_nodes_and_nobody_is_declared_dead_under_20_percent_loss(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork(seed=11)
    network.default_faults.loss = LOSS
    addrs = [memory_addr(i, BASE_PORT) for i in range(NODES)]
    async with trio.open_nursery() as nursery:
        handles = [
            await start_node(
                nursery,
                node_config(i, addrs[i], seeds=addrs[:1], interval=INTERVAL),
                network.transport(),
                rng_seed=i,
            )
            for i in range(NODES)
        ]
        nodes = [h.node for h in handles]
        ids = {n.self_id for n in nodes}
        logs = attach_logs(nursery, nodes)
        started = trio.current_time()

        await wait_until(lambda: all(exactly_live(n, ids) for n in nodes), 60, "convergence")
        converged = trio.current_time() - started

        writer = nodes[7]
        writer.set("payload", "sent-under-loss")
        written = trio.current_time()
        await wait_until(
            lambda: all(n.get("payload", writer.self_id) == "sent-under-loss" for n in nodes),
            30,
            "the key on all 10 nodes",
        )
        spread = trio.current_time() - written

        # The rest of the two minutes: watch phi every half round.
        max_phi = 0.0
        while (now := trio.current_time()) < started + DURATION:
            for node in nodes:
                for peer in ids - {node.self_id}:
                    max_phi = max(max_phi, node.engine.detector.phi(peer, now) or 0.0)
            await trio.sleep(INTERVAL / 2)

        left = [
            f"{log.node.self_id.node_id} saw {event.node.node_id} die at {at - started:.1f} s"
            for log in logs
            for at, event in log.of_type(NodeDead)
            if isinstance(event, NodeDead)
        ]
        assert left == [], f"live nodes declared dead under {LOSS:.0%} loss: {left}"
        assert all(exactly_live(n, ids) for n in nodes)
        threshold = nodes[0].config.failure_detector.phi_threshold
        assert max_phi < threshold
        # The fault was really applied.
        sent = network.delivered + network.dropped
        assert 0.17 < network.dropped / sent < 0.23
        print(
            f"\n20% loss, {NODES} nodes, {INTERVAL} s interval: converged in {converged:.1f} s, "
            f"key everywhere {spread:.1f} s ({spread / INTERVAL:.1f} rounds) after the write, "
            f"largest phi {max_phi:.2f} (threshold {threshold}), "
            f"{network.dropped}/{sent} datagrams lost, no NodeDead in {DURATION:.0f} s"
        )
        nursery.cancel_scope.cancel()
