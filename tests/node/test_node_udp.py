"""Real UDP on 127.0.0.1 with ephemeral ports, real time."""

from __future__ import annotations

import pytest
import trio

from gossip_tui.node import open_node

from .helpers import all_see_each_other, fast_config, open_cluster, wait_until


@pytest.mark.trio
async def test_udp_cluster_converges_and_detects_a_killed_node() -> None:
    async with open_cluster(4) as nodes:
        victim_config = fast_config(seeds=(str(nodes[0].gossip_addr),), node_id="victim")
        async with open_node(victim_config) as victim:
            everyone = [*nodes, victim]
            await wait_until(lambda: all_see_each_other(everyone), 20, "5 live UDP nodes")
            victim.set("last-words", "bye")
            await wait_until(
                lambda: all(n.get("last-words", victim.self_id) == "bye" for n in nodes),
                10,
                "the key on every node",
            )
            victim_id = victim.self_id
        await wait_until(
            lambda: all(victim_id in n.dead_nodes() for n in nodes), 20, "victim dead everywhere"
        )
        assert all(victim_id not in n.live_nodes() for n in nodes)
        assert all(n.stats.dropped["malformed"] == 0 for n in nodes)


@pytest.mark.trio
async def test_udp_address_in_use() -> None:
    async with open_cluster(1) as (node,):
        with pytest.raises(OSError) as info:
            async with open_node(fast_config(str(node.gossip_addr))):
                pytest.fail("must not start")
        assert "in use" in str(info.value).lower()
        await trio.lowlevel.checkpoint()


@pytest.mark.trio
async def test_seed_given_as_host_name_is_resolved() -> None:
    async with open_cluster(1) as (first,):
        config = fast_config(seeds=(f"localhost:{first.gossip_addr.port}",))
        async with open_node(config) as second:
            await wait_until(
                lambda: all_see_each_other([first, second]), 20, "join through a host name"
            )
            assert first.gossip_addr in second.engine.seed_addrs
