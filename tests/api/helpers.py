"""The scene of the HTTP API tests: gossip_tui.testing's fake node on a frozen clock.

The node is ``node-0`` of generation 1,700,000,000 at 127.0.0.1:10000, at heartbeat 7, not
yet stamped with an update; snapshots are taken at 100.0; peers are of generation 1, at
heartbeat 3, last heard from at 50.0, unless a test says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gossip_tui.core.models import NodeId, SocketAddress
from gossip_tui.node import MAX_KEY_VALUE_BYTES
from gossip_tui.testing import FakeCluster, FakeNode, FakeNodeConfig

TAKEN_AT = 100.0
PEERS_HEARD_AT = 50.0


def api_node(
    *,
    seeds: Iterable[SocketAddress] = (),
    max_key_value_bytes: int | None = MAX_KEY_VALUE_BYTES,
) -> FakeNode:
    cluster = FakeCluster(clock=lambda: TAKEN_AT)
    node = cluster.add_node(
        FakeNodeConfig(
            node_id="node-0",
            seeds=tuple(str(seed) for seed in seeds),
            heartbeat=7,
            max_key_value_bytes=max_key_value_bytes,
        )
    )
    node.member.last_update = None
    return node


def add_peer(
    node: FakeNode,
    node_id: str,
    addr: str,
    *,
    generation: int = 1,
    heartbeat: int = 3,
    **details: Any,
) -> NodeId:
    """A peer in ``node``'s cluster (``details``: :meth:`FakeCluster.add_peer`'s)."""
    details.setdefault("last_update", PEERS_HEARD_AT)
    return node.cluster.add_peer(
        node_id, addr, generation=generation, heartbeat=heartbeat, **details
    )
