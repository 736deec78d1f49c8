"""An in-memory stand-in for :class:`gossip_tui.node.Node`, enough for the HTTP API.

The local node's key-values follow chitchat's rules: every change takes the next version,
a deletion leaves a tombstone (status Deleted, empty value), a delete-after-TTL keeps the
value visible. Peers are plain snapshots the test puts in place.
"""

from __future__ import annotations

from collections.abc import Iterable

import trio

from gossip_tui.core.models import (
    ClusterSnapshot,
    KeyStatus,
    Liveness,
    NodeId,
    NodeSnapshot,
    SocketAddress,
    VersionedValue,
)
from gossip_tui.node import MAX_KEY_VALUE_BYTES, KeyValueTooLarge, NodeEvent, NodeStats
from gossip_tui.node._fanout import EventFanout

SELF_ADDR = SocketAddress.parse("127.0.0.1:10000")


class FakeNode:
    def __init__(
        self,
        *,
        node_id: str = "node-0",
        generation: int = 1_700_000_000,
        addr: SocketAddress = SELF_ADDR,
        cluster_id: str = "testing",
        seeds: Iterable[SocketAddress] = (),
        heartbeat: int = 7,
        max_key_value_bytes: int | None = MAX_KEY_VALUE_BYTES,
    ) -> None:
        self.self_id = NodeId(node_id, generation, addr)
        self.cluster_id = cluster_id
        self.seed_addrs = tuple(seeds)
        self.heartbeat = heartbeat
        self.key_values: dict[str, VersionedValue] = {}
        self.max_version = 0
        self.peers: list[NodeSnapshot] = []
        self.calls: list[tuple[str, ...]] = []
        self.fail_snapshot: Exception | None = None
        # Like the runtime: refuse larger key-values with KeyValueTooLarge (None: no limit).
        self.max_key_value_bytes = max_key_value_bytes
        self.stats = NodeStats()
        # What the last flush() made durable, and an error for flush() to raise instead.
        self.saved: dict[str, VersionedValue] = {}
        self.flush_error: OSError | None = None
        self.events = EventFanout()  # publish() to it; close() ends every subscription

    # --- the Node API used by the HTTP layer

    def _bump(self, key: str, value: str, status: KeyStatus) -> None:
        self.max_version += 1
        self.key_values[key] = VersionedValue(value, self.max_version, status)

    def _check(self, key: str, value: str) -> None:
        if not key:
            raise ValueError("a key must not be empty")
        size = len(key.encode()) + len(value.encode())
        if self.max_key_value_bytes is not None and size > self.max_key_value_bytes:
            raise KeyValueTooLarge(f"{size} bytes is too large to fit in a gossip datagram")

    def set(self, key: str, value: str) -> None:
        self._check(key, value)
        self.calls.append(("set", key, value))
        current = self.key_values.get(key)
        if current is not None and current.value == value and current.status is KeyStatus.SET:
            return  # chitchat does not bump the version of an unchanged value
        self._bump(key, value, KeyStatus.SET)

    def set_with_ttl(self, key: str, value: str) -> None:
        self._check(key, value)
        self.calls.append(("set_with_ttl", key, value))
        self._bump(key, value, KeyStatus.DELETE_AFTER_TTL)

    def delete(self, key: str) -> bool:
        self.calls.append(("delete", key))
        if key not in self.key_values:
            return False
        self._bump(key, "", KeyStatus.DELETED)
        return True

    def delete_after_ttl(self, key: str) -> bool:
        self.calls.append(("delete_after_ttl", key))
        current = self.key_values.get(key)
        if current is None:
            return False
        self._bump(key, current.value, KeyStatus.DELETE_AFTER_TTL)
        return True

    async def flush(self) -> None:
        await trio.lowlevel.checkpoint()  # like a save in a worker thread
        if self.flush_error is not None:
            raise self.flush_error
        self.saved = dict(self.key_values)

    def get(self, key: str, node: NodeId | None = None) -> str | None:
        value = self.key_values.get(key)
        return None if value is None or value.is_deleted else value.value

    def snapshot(self) -> ClusterSnapshot:
        if self.fail_snapshot is not None:
            raise self.fail_snapshot
        own = NodeSnapshot(
            node=self.self_id,
            heartbeat=self.heartbeat,
            max_version=self.max_version,
            last_gc_version=0,
            key_values=dict(self.key_values),
            liveness=Liveness.SELF,
        )
        return ClusterSnapshot(
            cluster_id=self.cluster_id,
            self_node=self.self_id,
            nodes=(own, *self.peers),
            seed_addrs=self.seed_addrs,
            taken_at=100.0,
        )

    def subscribe(
        self, prefix: str = "", max_buffer: int = 1_000
    ) -> trio.MemoryReceiveChannel[NodeEvent]:
        return self.events.subscribe(prefix, max_buffer)

    # --- test helpers

    def add_peer(
        self,
        node_id: str,
        addr: str,
        *,
        generation: int = 1,
        liveness: Liveness = Liveness.LIVE,
        phi: float | None = 0.5,
        heartbeat: int = 3,
        key_values: dict[str, VersionedValue] | None = None,
        last_gc_version: int = 0,
    ) -> NodeSnapshot:
        kvs = dict(key_values or {})
        peer = NodeSnapshot(
            node=NodeId(node_id, generation, SocketAddress.parse(addr)),
            heartbeat=heartbeat,
            max_version=max((v.version for v in kvs.values()), default=0),
            last_gc_version=last_gc_version,
            key_values=kvs,
            liveness=liveness,
            phi=phi,
            last_update=50.0,
        )
        self.peers.append(peer)
        return peer
