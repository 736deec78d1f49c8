"""An in-memory cluster of fake nodes implementing the node contract, for the UI tests.

A :class:`FakeCluster` holds every member's replicated state. Nodes opened on it (with
``cluster.open_node`` as the dashboard's node factory, or ``cluster.add_node`` from a test)
are :class:`FakeNode` handles: all of them see the same state, so a key one sets is "seen"
at once by the others. Simulated peers (``add_peer``) have state but no handle; tests make
them die, come back or change keys, and every open node's subscribers get the events.

Everything is synchronous and runs in the caller's thread (the dashboard's, which is also
Trio's in guest mode), as the real node's write methods do.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import attrs
import trio

from gossip_tui.core.engine import LivenessReading, LivenessReadings
from gossip_tui.core.models import (
    ClusterSnapshot,
    KeyStatus,
    Liveness,
    NodeId,
    NodeSnapshot,
    SocketAddress,
    VersionedValue,
)
from gossip_tui.node import (
    KeyChanged,
    KeyDeleted,
    NodeDead,
    NodeEvent,
    NodeJoined,
    NodeRemoved,
    NodeUpdated,
)
from gossip_tui.node._fanout import EventFanout

FIXED_GENERATION = 1_700_000_000
DEFAULT_ADDR = SocketAddress.parse("127.0.0.1:10000")


@attrs.frozen
class FakeNodeConfig:
    """The fields of the real NodeConfig the dashboard and the demo touch."""

    listen_addr: SocketAddress = DEFAULT_ADDR
    public_addr: SocketAddress | None = None
    node_id: str | None = None
    generation: int | None = None
    cluster_id: str = "testing"
    seeds: tuple[str, ...] = ()
    gossip_interval: float = 0.5
    marked_for_deletion_grace_period: float = 3600.0
    initial_key_values: Mapping[str, str] = attrs.field(factory=dict)
    announce_leave: bool = True


@attrs.define
class Member:
    """One node's replicated state, as every fake node sees it."""

    node: NodeId
    key_values: dict[str, VersionedValue] = attrs.field(factory=dict)
    heartbeat: int = 1
    max_version: int = 0
    liveness: Liveness = Liveness.LIVE
    phi: float | None = 0.5
    last_update: float | None = None

    def snapshot(self, liveness: Liveness) -> NodeSnapshot:
        return NodeSnapshot(
            node=self.node,
            heartbeat=self.heartbeat,
            max_version=self.max_version,
            last_gc_version=0,
            key_values=dict(self.key_values),
            liveness=liveness,
            phi=None if liveness is Liveness.SELF else self.phi,
            last_update=self.last_update,
        )

    def reading(self, liveness: Liveness) -> LivenessReading:
        return LivenessReading(
            node=self.node,
            liveness=liveness,
            heartbeat=self.heartbeat,
            max_version=self.max_version,
            phi=None if liveness is Liveness.SELF else self.phi,
            last_update=self.last_update,
        )


class FakeNode:
    """A handle on one member of a :class:`FakeCluster`; the node contract, in memory."""

    def __init__(self, cluster: FakeCluster, config: FakeNodeConfig, self_id: NodeId) -> None:
        self.cluster = cluster
        self.config = config
        self.self_id = self_id
        self.cluster_id = config.cluster_id
        self.gossip_addr = self_id.gossip_addr
        self.http_addr: SocketAddress | None = None
        self.calls: list[tuple[str, ...]] = []
        # What the dashboard read through this handle (snapshot, readings, one node at a
        # time), to tell a read on selection from a poll of everything.
        self.snapshots_taken = 0
        self.readings_taken = 0
        self.nodes_read: list[NodeId] = []
        self.closed = False
        self._fanout = EventFanout()
        self._nursery: trio.Nursery | None = None

    # -- writes ----------------------------------------------------------------------------

    def set(self, key: str, value: str) -> None:
        self.calls.append(("set", key, value))
        if not key:
            raise ValueError("a key must not be empty")
        self.cluster.write(self.self_id, key, value, KeyStatus.SET)

    def key_expiries(self) -> Mapping[str, float]:
        return {}  # no ttl here: the TTL tests use gossip_tui.testing's fake

    def set_with_ttl(self, key: str, value: str) -> None:
        self.calls.append(("set_with_ttl", key, value))
        self.cluster.write(self.self_id, key, value, KeyStatus.DELETE_AFTER_TTL)

    def delete(self, key: str) -> bool:
        self.calls.append(("delete", key))
        if key not in self.cluster.members[self.self_id].key_values:
            return False
        self.cluster.write(self.self_id, key, "", KeyStatus.DELETED)
        return True

    def delete_after_ttl(self, key: str) -> bool:
        self.calls.append(("delete_after_ttl", key))
        current = self.cluster.members[self.self_id].key_values.get(key)
        if current is None:
            return False
        self.cluster.write(self.self_id, key, current.value, KeyStatus.DELETE_AFTER_TTL)
        return True

    # -- reads -----------------------------------------------------------------------------

    def get(self, key: str, node: NodeId | None = None) -> str | None:
        member = self.cluster.members.get(node or self.self_id)
        if member is None:
            return None
        value = member.key_values.get(key)
        return None if value is None or value.is_deleted else value.value

    def live_nodes(self) -> list[NodeId]:
        return list(self.cluster.snapshot_for(self.self_id).live_nodes)

    def dead_nodes(self) -> list[NodeId]:
        return list(self.cluster.snapshot_for(self.self_id).dead_nodes)

    def snapshot(self) -> ClusterSnapshot:
        self.snapshots_taken += 1
        return self.cluster.snapshot_for(self.self_id)

    def liveness_readings(self) -> LivenessReadings:
        self.readings_taken += 1
        return self.cluster.readings_for(self.self_id)

    def node_snapshot(self, node: NodeId) -> NodeSnapshot | None:
        self.nodes_read.append(node)
        member = self.cluster.members.get(node)
        if member is None:
            return None
        return member.snapshot(self.cluster.liveness_seen_by(self.self_id, node))

    def subscribe(
        self, prefix: str = "", max_buffer: int = 1000
    ) -> trio.MemoryReceiveChannel[NodeEvent]:
        return self._fanout.subscribe(prefix, max_buffer)

    async def start_service(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        if self._nursery is None:
            raise RuntimeError("start_service needs a node opened with open_node")
        return await self._nursery.start(async_fn, *args)

    # -- the cluster's side ----------------------------------------------------------------

    def publish(self, event: NodeEvent) -> None:
        self._fanout.publish(event)

    def close(self) -> None:
        self.closed = True
        self._fanout.close()


class FakeCluster:
    """Shared state of fake nodes and simulated peers; ``clock`` stamps snapshots."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, cluster_id: str = "testing"
    ) -> None:
        self.clock = clock
        self.cluster_id = cluster_id
        self.members: dict[NodeId, Member] = {}
        self.handles: dict[NodeId, FakeNode] = {}
        self.opened: list[FakeNode] = []
        self._ports = itertools.count(41000)

    # -- nodes with a handle ---------------------------------------------------------------

    def add_node(self, config: FakeNodeConfig | None = None) -> FakeNode:
        """Start a node on this cluster without Trio (for tests driving it by hand)."""
        config = config or FakeNodeConfig()
        addr = config.public_addr or config.listen_addr
        if addr.port == 0:
            addr = SocketAddress(addr.ip, next(self._ports))
        self_id = NodeId(
            config.node_id or f"server:{addr}-fake",
            config.generation if config.generation is not None else FIXED_GENERATION,
            addr,
        )
        member = Member(self_id, last_update=self.clock())
        self.members[self_id] = member
        for key, value in config.initial_key_values.items():
            member.max_version += 1
            member.key_values[key] = VersionedValue(value, member.max_version)
        handle = FakeNode(self, config, self_id)
        self.handles[self_id] = handle
        self.opened.append(handle)
        self.emit(NodeJoined(self_id), skip=self_id)
        return handle

    def close_node(self, handle: FakeNode) -> None:
        """A clean close: "left" when the node says goodbye, else "dead" (as a crash)."""
        handle.close()
        self.handles.pop(handle.self_id, None)
        member = self.members[handle.self_id]
        member.liveness = Liveness.LEFT if handle.config.announce_leave else Liveness.DEAD
        member.phi = 12.0
        self.emit(NodeDead(handle.self_id))

    @asynccontextmanager
    async def open_node(self, config: FakeNodeConfig | None = None) -> AsyncIterator[FakeNode]:
        """The node factory: ``GossipApp(config, cluster.open_node)``."""
        handle = self.add_node(config)
        try:
            async with trio.open_nursery() as nursery:
                handle._nursery = nursery
                try:
                    yield handle
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            self.close_node(handle)

    # -- simulated peers -------------------------------------------------------------------

    def add_peer(
        self,
        node_id: str,
        *,
        port: int | None = None,
        generation: int = FIXED_GENERATION,
        keys: Mapping[str, str] | None = None,
        heartbeat: int = 10,
        phi: float | None = 0.5,
        liveness: Liveness = Liveness.LIVE,
        last_update: float | None = None,
        announce: bool = True,
    ) -> NodeId:
        addr = SocketAddress.parse(f"127.0.0.1:{port if port is not None else next(self._ports)}")
        ident = NodeId(node_id, generation, addr)
        member = Member(
            ident,
            heartbeat=heartbeat,
            liveness=liveness,
            phi=phi,
            last_update=self.clock() if last_update is None else last_update,
        )
        for key, value in (keys or {}).items():
            member.max_version += 1
            member.key_values[key] = VersionedValue(value, member.max_version)
        self.members[ident] = member
        if announce and liveness is Liveness.LIVE:
            self.emit(NodeJoined(ident))
        return ident

    def peer(self, node_id: str) -> NodeId:
        """The newest generation of the member called ``node_id``."""
        found = [ident for ident in self.members if ident.node_id == node_id]
        if not found:
            raise KeyError(node_id)
        return max(found, key=lambda ident: ident.generation)

    def kill(self, node: NodeId, *, phi: float = 9.5) -> None:
        member = self.members[node]
        member.liveness = Liveness.DEAD
        member.phi = phi
        self.emit(NodeDead(node))

    def revive(self, node: NodeId) -> None:
        member = self.members[node]
        member.liveness = Liveness.LIVE
        member.phi = 0.5
        member.last_update = self.clock()
        self.emit(NodeJoined(node))

    def remove(self, node: NodeId) -> None:
        del self.members[node]
        self.emit(NodeRemoved(node))

    def beat(self, by: int = 1) -> None:
        """Every live member's heartbeat moves on (no event: heartbeats are not events)."""
        now = self.clock()
        for member in self.members.values():
            if member.liveness is Liveness.LIVE or member.node in self.handles:
                member.heartbeat += by
                member.last_update = now

    def write(self, node: NodeId, key: str, value: str, status: KeyStatus) -> None:
        member = self.members[node]
        member.max_version += 1
        member.key_values[key] = VersionedValue(value, member.max_version, status)
        member.last_update = self.clock()
        if status is KeyStatus.DELETED:
            self.emit(KeyDeleted(node, key, member.max_version))
        else:
            self.emit(KeyChanged(node, key, value, member.max_version))
        self.emit(NodeUpdated(node, member.max_version))

    def set_peer_key(self, node: NodeId, key: str, value: str) -> None:
        self.write(node, key, value, KeyStatus.SET)

    # -- views -----------------------------------------------------------------------------

    def liveness_seen_by(self, self_id: NodeId, node: NodeId) -> Liveness:
        return Liveness.SELF if node == self_id else self.members[node].liveness

    def readings_for(self, self_id: NodeId) -> LivenessReadings:
        return LivenessReadings(
            self.clock(),
            tuple(
                member.reading(self.liveness_seen_by(self_id, ident))
                for ident, member in self.members.items()
            ),
        )

    def snapshot_for(self, self_id: NodeId) -> ClusterSnapshot:
        nodes = []
        for ident in sorted(self.members):
            nodes.append(self.members[ident].snapshot(self.liveness_seen_by(self_id, ident)))
        return ClusterSnapshot(
            cluster_id=self.cluster_id,
            self_node=self_id,
            nodes=tuple(nodes),
            taken_at=self.clock(),
        )

    def emit(self, event: NodeEvent, *, skip: NodeId | None = None) -> None:
        for ident, handle in list(self.handles.items()):
            if ident != skip:
                handle.publish(event)


def fake_open_node(
    config: FakeNodeConfig | None = None, *, cluster: FakeCluster | None = None
) -> AbstractAsyncContextManager[FakeNode]:
    """``open_node`` for tests: a node on ``cluster`` (a fresh one when None)."""
    return (cluster or FakeCluster()).open_node(config)


@asynccontextmanager
async def crashing_open_node(_config: object) -> AsyncIterator[FakeNode]:
    """A node factory that fails while opening, as a busy port would."""
    raise RuntimeError("boom: the fake node could not start")
    yield  # pragma: no cover
