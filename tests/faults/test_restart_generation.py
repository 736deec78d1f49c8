"""Kill a node and start it again at the same address with the next generation.

Every node must see the new generation live; the old one must be declared dead and then
garbage-collected after ``dead_node_grace_period`` everywhere, including on the restarted
node itself (it learns its old self from its peers' digests, and never counts it live), and
must not come back afterwards (peers still echoing it are ignored). In memory, virtual time,
a 60 s grace period and a 0.5 s interval.
"""

from __future__ import annotations

import attrs
import pytest
import trio

from gossip_tui.core.failure_detector import FailureDetectorConfig
from gossip_tui.node import NodeDead, NodeRemoved
from gossip_tui.testing import MemoryNetwork
from tests.node.helpers import wait_until

from .helpers import attach_logs, exactly_live, memory_addr, node_config, start_node

NODES = 5
VICTIM = 3
INTERVAL = 0.5
GRACE = 60.0
BASE_PORT = 22_000


@pytest.mark.trio
async def test_a_restart_with_a_new_generation_replaces_the_old_one_everywhere(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork(seed=31)
    detector = FailureDetectorConfig(dead_node_grace_period=GRACE)
    addrs = [memory_addr(i, BASE_PORT) for i in range(NODES)]
    configs = [
        node_config(i, addrs[i], seeds=addrs[:1], interval=INTERVAL, detector=detector)
        for i in range(NODES)
    ]
    async with trio.open_nursery() as nursery:
        handles = [
            await start_node(nursery, configs[i], network.transport(), rng_seed=i)
            for i in range(NODES)
        ]
        nodes = [h.node for h in handles]
        await wait_until(
            lambda: all(exactly_live(n, {m.self_id for m in nodes}) for n in nodes), 60, "start"
        )
        await trio.sleep(60)  # a cluster that has been running, not one just formed
        observers = [n for i, n in enumerate(nodes) if i != VICTIM]
        logs = attach_logs(nursery, observers)

        old_id = nodes[VICTIM].self_id
        await handles[VICTIM].stop()
        killed_at = trio.current_time()
        await trio.sleep(2 * INTERVAL)  # the time a supervisor takes to restart it
        restarted = await start_node(
            nursery,
            attrs.evolve(configs[VICTIM], generation=old_id.generation + 1),
            network.transport(),
            rng_seed=99,
        )
        new_id = restarted.node.self_id
        assert (new_id.node_id, new_id.gossip_addr) == (old_id.node_id, old_id.gossip_addr)
        assert new_id.generation == old_id.generation + 1
        nodes[VICTIM] = restarted.node
        everyone = {n.self_id for n in nodes}

        def replaced() -> bool:
            # Dead to the failure detector; folded into the live generation in the views.
            return all(exactly_live(n, everyone) for n in nodes) and all(
                old_id in set(n.engine.detector.dead_nodes()) and old_id not in n.dead_nodes()
                for n in observers
            )

        await wait_until(replaced, 60, "the new generation live and the old one dead everywhere")
        replaced_at = trio.current_time() - killed_at

        def forgotten() -> bool:
            return all(old_id not in n.engine.state.nodes() for n in nodes)

        await wait_until(forgotten, GRACE + 30, "the old generation garbage-collected everywhere")

        # Each observer declared the old generation dead once, and removed it one grace
        # period later (liveness is judged once per interval, hence the slack).
        for log in logs:
            (died,) = log.times_of(NodeDead(old_id))
            (removed,) = log.times_of(NodeRemoved(old_id))
            assert GRACE <= removed - died <= GRACE + 2 * INTERVAL, (removed - died, log.node)
        restarted_view = restarted.node.engine
        assert old_id not in restarted_view.detector.dead_nodes()

        # A grace period later, nobody has brought it back, and the new one is still live.
        await trio.sleep(GRACE)
        assert forgotten()
        assert all(exactly_live(n, everyone) for n in nodes)
        deaths = [log.times_of(NodeDead(old_id))[0] - killed_at for log in logs]
        removals = [log.times_of(NodeRemoved(old_id))[0] - killed_at for log in logs]
        print(
            f"\nkill + restart (generation {new_id.generation}): old generation declared dead "
            f"{min(deaths):.1f}-{max(deaths):.1f} s after the kill, new one live and old one "
            f"dead everywhere at {replaced_at:.1f} s, old one removed at "
            f"{min(removals):.1f}-{max(removals):.1f} s (grace {GRACE:.0f} s), never back"
        )
        nursery.cancel_scope.cancel()
