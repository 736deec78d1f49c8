"""Typed records: a WireGuard-style peer pool, one record per node under a prefix."""

from __future__ import annotations

import attrs
import pytest
import trio

from gossip_tui.node import (
    RecordJoined,
    RecordLeft,
    RecordPool,
    RecordUpdated,
    collect,
    open_node,
    publish,
)
from gossip_tui.testing import MemoryNetwork

from .helpers import fast_config, open_cluster, wait_until


@attrs.frozen
class WireGuardPeer:
    public_key: str
    endpoint: str
    allowed_ips: tuple[str, ...]


@pytest.mark.trio
async def test_peer_pool_sees_join_update_and_leave(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork(seed=11)
    async with open_cluster(1, transport=network.transport()) as (hub,):
        publish(hub, "wg/peer", WireGuardPeer("hub-key", "10.0.0.1:51820", ("10.8.0.1/32",)))
        pool = RecordPool(hub, "wg/", WireGuardPeer)
        assert list(pool.current.values()) == [
            WireGuardPeer("hub-key", "10.0.0.1:51820", ("10.8.0.1/32",))
        ]
        config = fast_config(seeds=(str(hub.gossip_addr),), node_id="spoke")
        async with open_node(config, transport=network.transport()) as spoke:
            spoke_peer = WireGuardPeer("spoke-key", "10.0.0.2:51820", ("10.8.0.2/32",))
            publish(spoke, "wg/peer", spoke_peer)
            spoke.set("wg/broken", "{not json")
            with trio.fail_after(30):
                joined = await pool.__anext__()
            assert joined == RecordJoined(spoke.self_id, "wg/peer", spoke_peer)

            moved = attrs.evolve(spoke_peer, endpoint="10.0.0.3:51820")
            publish(spoke, "wg/peer", moved)
            with trio.fail_after(30):
                updated = await pool.__anext__()
            assert updated == RecordUpdated(spoke.self_id, "wg/peer", moved)
            # The broken record is skipped, never raised.
            assert (spoke.self_id, "wg/broken") not in pool.current
            await wait_until(
                lambda: len(collect(spoke, "wg/", WireGuardPeer)) == 2, 30, "spoke sees both"
            )
            spoke_id = spoke.self_id
        with trio.fail_after(60):
            left = await pool.__anext__()
        assert left == RecordLeft(spoke_id, "wg/peer")
        assert list(pool.current) == [(hub.self_id, "wg/peer")]
        pool.close()
