"""A node that has seen no peer live tells nobody it leaves, so its close does not wait out
the leave timeout; one that had a live peer that went silent waits, bounded by it.
Virtual time (trio's autojump clock): a wait shows as virtual seconds passed."""

from __future__ import annotations

import attrs
import pytest
import trio

from gossip_tui.node import NodeConfig, open_node
from gossip_tui.testing import MemoryNetwork

from .helpers import all_see_each_other, fast_config, open_cluster, wait_until

LEAVE_TIMEOUT = 30.0
# An unbound address on the in-memory network: a seed that never answers.
SILENT_SEED = "127.0.0.1:9"


async def _close_time(config: NodeConfig, network: MemoryNetwork, *, run_for: float) -> float:
    """Virtual seconds from leaving the node's context to its close being done."""
    async with open_node(config, transport=network.transport()) as node:
        await trio.sleep(run_for)  # some rounds of Syns to the seed, none answered
        assert node.engine.live_nodes() == [node.self_id]
        started = trio.current_time()
    return trio.current_time() - started


@pytest.mark.trio
@pytest.mark.parametrize("seeds", [(), (SILENT_SEED,)], ids=["no seed", "unreachable seed"])
async def test_closing_a_lone_node_does_not_wait_for_the_leave_timeout(
    autojump_clock: trio.abc.Clock, seeds: tuple[str, ...]
) -> None:
    config = attrs.evolve(fast_config(seeds=seeds, node_id="lone"), leave_timeout=LEAVE_TIMEOUT)
    took = await _close_time(config, MemoryNetwork(seed=41), run_for=2.0)
    assert took < config.gossip_interval < LEAVE_TIMEOUT


@pytest.mark.trio
async def test_a_node_whose_live_peer_went_silent_waits_at_most_the_leave_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    # The contrast that shows the figure above measures the wait: here there is someone to
    # tell, who never fetches the marker.
    network = MemoryNetwork(seed=42)
    async with open_cluster(1, transport=network.transport()) as (observer,):
        config = attrs.evolve(
            fast_config(seeds=(str(observer.gossip_addr),), node_id="leaver"),
            leave_timeout=LEAVE_TIMEOUT,
        )
        async with open_node(config, transport=network.transport()) as leaver:
            await wait_until(lambda: all_see_each_other([observer, leaver]), 30, "the pair")
            network.partition([leaver.gossip_addr], [observer.gossip_addr])
            started = trio.current_time()
        took = trio.current_time() - started
    assert LEAVE_TIMEOUT <= took < LEAVE_TIMEOUT + 1.0
