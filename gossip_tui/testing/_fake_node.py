"""An in-memory stand-in for a running :class:`gossip_tui.node.Node`, for the API and UI.

A :class:`FakeCluster` holds every member's replicated state. Nodes opened on it (with
``cluster.open_node`` as a dashboard's node factory, or ``cluster.add_node`` from a test) are
:class:`FakeNode` handles: all of them see the same state, so a key one sets is "seen" at once
by the others. Simulated peers (``add_peer``, or ``put`` for an exact snapshot) have state but
no handle; tests make them die, come back or change keys, and every open node's subscribers
get the events.

A handle's writes follow the node's own rules, as chitchat has them: every change takes the
next version, setting an unchanged value takes none, a deletion leaves a tombstone (empty
value), a delete-after-TTL keeps the value visible, and a key-value too large to gossip is
refused with :class:`~gossip_tui.node.KeyValueTooLarge` (not recorded in ``calls``).

Everything is synchronous and runs in the caller's thread, as the real node's write methods
do; only ``open_node`` and ``start_service`` need Trio.

One concern, though over 400 lines: the fake node and the cluster it shares.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import attrs
import trio

from gossip_tui.core.agreement import (
    VIEW_KEY,
    AgreementReading,
    PeerReport,
    PropagationReading,
    read_agreement,
    read_propagation,
    summarize,
)
from gossip_tui.core.engine import LivenessReading, LivenessReadings
from gossip_tui.core.events import DeleteReason
from gossip_tui.core.expiry import KeyExpiries, check_ttl
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
    MAX_KEY_VALUE_BYTES,
    KeyChanged,
    KeyDeleted,
    KeyValueTooLarge,
    NodeDead,
    NodeEvent,
    NodeJoined,
    NodeRemoved,
    NodeStats,
    NodeUpdated,
)
from gossip_tui.node._fanout import EventFanout

FIXED_GENERATION = 1_700_000_000
DEFAULT_ADDR = SocketAddress.parse("127.0.0.1:10000")


@attrs.frozen
class FakeNodeConfig:
    """The fields of the real NodeConfig a dashboard, the demo and the HTTP API touch, and
    two knobs of the fake's own (the starting heartbeat, the size limit of a key-value)."""

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
    heartbeat: int = 1
    # Like the runtime, refuse larger key-values with KeyValueTooLarge (None: no limit).
    max_key_value_bytes: int | None = MAX_KEY_VALUE_BYTES


@attrs.define
class Member:
    """One node's replicated state, as every fake node sees it."""

    node: NodeId
    key_values: dict[str, VersionedValue] = attrs.field(factory=dict)
    heartbeat: int = 1
    max_version: int = 0
    last_gc_version: int = 0
    liveness: Liveness = Liveness.LIVE
    phi: float | None = 0.5
    last_update: float | None = None
    # When the nodes first saw it (the cluster's clock), as the engine records it.
    discovered_at: float | None = None

    def snapshot(self, liveness: Liveness) -> NodeSnapshot:
        return NodeSnapshot(
            node=self.node,
            heartbeat=self.heartbeat,
            max_version=self.max_version,
            last_gc_version=self.last_gc_version,
            key_values=dict(self.key_values),
            liveness=liveness,
            phi=None if liveness is Liveness.SELF else self.phi,
            last_update=self.last_update,
            discovered_at=self.discovered_at,
        )

    def reading(self, liveness: Liveness) -> LivenessReading:
        """What the dashboard's per-tick reading says of this member (no key-values)."""
        return LivenessReading(
            node=self.node,
            liveness=liveness,
            heartbeat=self.heartbeat,
            max_version=self.max_version,
            phi=None if liveness is Liveness.SELF else self.phi,
            last_update=self.last_update,
        )

    def add_keys(self, keys: Mapping[str, str]) -> None:
        """Plain values, each at the member's next version."""
        for key, value in keys.items():
            self.max_version += 1
            self.key_values[key] = VersionedValue(value, self.max_version)


class FakeNode:
    """A handle on one member of a :class:`FakeCluster`: the node contract, in memory.

    ``calls`` records the writes the node accepted, ``snapshots_taken`` and ``nodes_read``
    what was read; ``stats`` is a real :class:`~gossip_tui.node.NodeStats` a test fills in;
    ``fail_snapshot``, when set, is raised by ``snapshot``.
    """

    def __init__(self, cluster: FakeCluster, config: FakeNodeConfig, self_id: NodeId) -> None:
        self.cluster = cluster
        self.config = config
        self.self_id = self_id
        self.cluster_id = config.cluster_id
        self.gossip_addr = self_id.gossip_addr
        self.http_addr: SocketAddress | None = None
        # The real node resolves its seeds; the fake takes them as ip:port, sorted as the
        # engine shows them.
        self.seed_addrs = tuple(sorted(SocketAddress.parse(seed) for seed in config.seeds))
        self.calls: list[tuple[str, ...]] = []
        # What was read through this handle, to tell a read of one node (on selection)
        # from a poll of everything.
        self.snapshots_taken = 0
        self.readings_taken = 0
        self.nodes_read: list[NodeId] = []
        self.stats = NodeStats()
        self.fail_snapshot: Exception | None = None
        # What the last flush() made durable, and an error for flush() to raise instead.
        self.saved: dict[str, VersionedValue] = {}
        self.flush_error: OSError | None = None
        self.closed = False
        self._fanout = EventFanout()
        self._nursery: trio.Nursery | None = None
        # Deadlines of keys set with a ttl, in the cluster's clock; FakeCluster.beat fires
        # them (the runtime's gossip round and sweep do).
        self.expiries = KeyExpiries()

    @property
    def member(self) -> Member:
        """This node's own state in the cluster."""
        return self.cluster.members[self.self_id]

    # -- writes ----------------------------------------------------------------------------

    def _check(self, key: str, value: str) -> None:
        if not key:
            raise ValueError("a key must not be empty")
        size = len(key.encode()) + len(value.encode())
        limit = self.config.max_key_value_bytes
        if limit is not None and size > limit:
            raise KeyValueTooLarge(f"{size} bytes is too large to fit in a gossip datagram")

    def _unchanged(self, key: str, value: str, status: KeyStatus) -> bool:
        current = self.member.key_values.get(key)
        return current is not None and current.value == value and current.status is status

    def set(self, key: str, value: str, *, ttl: float | None = None) -> None:
        seconds = None if ttl is None else check_ttl(ttl)
        self._check(key, value)
        self.calls.append(("set", key, value) + (() if seconds is None else (f"ttl={seconds:g}",)))
        if not self._unchanged(key, value, KeyStatus.SET):
            self.cluster.write(self.self_id, key, value, KeyStatus.SET)
        if seconds is None:
            self.expiries.clear(key)
        else:
            self.expiries.schedule(key, self.cluster.clock() + seconds)

    def set_with_ttl(self, key: str, value: str) -> None:
        self._check(key, value)
        self.calls.append(("set_with_ttl", key, value))
        if not self._unchanged(key, value, KeyStatus.DELETE_AFTER_TTL):
            self.cluster.write(self.self_id, key, value, KeyStatus.DELETE_AFTER_TTL)
        self.expiries.clear(key)

    def delete(self, key: str) -> bool:
        self.calls.append(("delete", key))
        self.expiries.clear(key)
        if key not in self.member.key_values:
            return False
        self.cluster.write(self.self_id, key, "", KeyStatus.DELETED)
        return True

    def key_expiries(self) -> Mapping[str, float]:
        """Key -> deadline (the cluster's clock) of the keys set with a ttl."""
        return self.expiries.deadlines

    def fire_expiries(self) -> list[str]:
        """Delete the keys whose deadline passed, as the node's loops do (events say
        reason="expired"); the keys deleted."""
        expired = []
        for key in self.expiries.due(self.cluster.clock()):
            current = self.member.key_values.get(key)
            if current is not None and not current.is_deleted:
                self.cluster.write(self.self_id, key, "", KeyStatus.DELETED, reason="expired")
                expired.append(key)
        return expired

    def delete_after_ttl(self, key: str) -> bool:
        self.calls.append(("delete_after_ttl", key))
        self.expiries.clear(key)
        current = self.member.key_values.get(key)
        if current is None:
            return False
        self.cluster.write(self.self_id, key, current.value, KeyStatus.DELETE_AFTER_TTL)
        return True

    async def flush(self) -> None:
        """Like the node's: the local keys as of now are durable once it returns."""
        await trio.lowlevel.checkpoint()  # a save runs in a worker thread
        if self.flush_error is not None:
            raise self.flush_error
        self.saved = dict(self.member.key_values)

    def forget(self, node: NodeId) -> bool:
        """Like the node's: drop a dead or left member from the cluster (False when it is
        unknown); a live one raises :class:`~gossip_tui.node.NodeIsLive`."""
        from gossip_tui.node import NodeIsLive

        member = self.cluster.members.get(node)
        if member is None:
            return False
        if node == self.self_id or member.liveness is Liveness.LIVE:
            raise NodeIsLive(f"{node} is live")
        self.calls.append(("forget", str(node)))
        del self.cluster.members[node]
        return True

    # -- reads -----------------------------------------------------------------------------

    def get(self, key: str, node: NodeId | None = None) -> str | None:
        member = self.cluster.members.get(node or self.self_id)
        if member is None:
            return None
        value = member.key_values.get(key)
        return None if value is None or value.is_deleted else value.value

    def live_nodes(self) -> list[NodeId]:
        return list(self.cluster.snapshot_for(self).live_nodes)

    def dead_nodes(self) -> list[NodeId]:
        return list(self.cluster.snapshot_for(self).dead_nodes)

    def snapshot(self) -> ClusterSnapshot:
        if self.fail_snapshot is not None:
            raise self.fail_snapshot
        self.snapshots_taken += 1
        return self.cluster.snapshot_for(self)

    def liveness_readings(self) -> LivenessReadings:
        """The light per-tick reading: every member's liveness, heartbeat and phi."""
        self.readings_taken += 1
        return self.cluster.readings_for(self)

    def node_snapshot(self, node: NodeId) -> NodeSnapshot | None:
        """One node's full state, key-values included (None if unknown)."""
        self.nodes_read.append(node)
        member = self.cluster.members.get(node)
        if member is None:
            return None
        return member.snapshot(self.cluster.liveness_seen_by(self.self_id, node))

    def propagation(self) -> PropagationReading:
        """Like the node's, from what the cluster says each peer holds (see
        :meth:`FakeCluster.set_held`; by default every peer holds everything)."""
        cluster, me = self.cluster, self.self_id
        live = [m.node for m in cluster.members.values() if m.liveness is Liveness.LIVE]
        reports = {
            peer: PeerReport(me, cluster.held_of(peer, me), 0, cluster.clock()) for peer in live
        }
        return read_propagation(me, self.member.key_values, live, reports, cluster.clock())

    def agreement(self) -> AgreementReading:
        """Like the node's: members by their published view (their VIEW_KEY), peers set
        with :meth:`FakeCluster.set_digest_nodes` by those nodes, this node by the live
        members."""
        cluster, me = self.cluster, self.self_id
        shown = {Liveness.SELF: True, Liveness.LIVE: True, Liveness.DEAD: False}
        nodes = []
        for ident in sorted(cluster.members):
            liveness = cluster.liveness_seen_by(me, ident)
            if liveness in shown:
                nodes.append((ident, shown[liveness]))
        published = {ident: self.get(VIEW_KEY, ident) for ident, _live in nodes}
        digests = {peer: summarize(listed) for peer, listed in cluster.digest_nodes.items()}
        own = summarize([ident for ident, live in nodes if live])
        return read_agreement(me, nodes, published, digests, own, cluster.clock())

    def subscribe(
        self, prefix: str = "", max_buffer: int = 1000
    ) -> trio.MemoryReceiveChannel[NodeEvent]:
        return self._fanout.subscribe(prefix, max_buffer)

    async def start_service(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        if self._nursery is None:
            raise RuntimeError("start_service needs a node opened with open_node")
        return await self._nursery.start(async_fn, *args)

    # -- the cluster's side ----------------------------------------------------------------

    @property
    def events(self) -> EventFanout:
        """The fan-out behind :meth:`subscribe`: ``publish()`` to it, ``close()`` ends
        every subscription."""
        return self._fanout

    def publish(self, event: NodeEvent) -> None:
        self._fanout.publish(event)

    def close(self) -> None:
        self.closed = True
        self._fanout.close()


class FakeCluster:
    """Shared state of fake nodes and simulated peers; ``clock`` stamps snapshots and
    updates (pass ``lambda: 100.0`` for a frozen one)."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, cluster_id: str = "testing"
    ) -> None:
        self.clock = clock
        self.cluster_id = cluster_id
        self.members: dict[NodeId, Member] = {}
        self.handles: dict[NodeId, FakeNode] = {}
        self.opened: list[FakeNode] = []
        # (holder, owner) -> the max version of owner's keys holder holds, where a test
        # made it lag (see set_held); everyone else holds everything.
        self.held: dict[tuple[NodeId, NodeId], int] = {}
        # A peer -> the nodes its last digest listed (a chitchat peer, for agreement).
        self.digest_nodes: dict[NodeId, frozenset[NodeId]] = {}
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
        now = self.clock()
        member = Member(self_id, heartbeat=config.heartbeat, last_update=now, discovered_at=now)
        member.add_keys(config.initial_key_values)
        self.members[self_id] = member
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
        addr: SocketAddress | str | None = None,
        *,
        port: int | None = None,
        generation: int = FIXED_GENERATION,
        keys: Mapping[str, str] | None = None,
        key_values: Mapping[str, VersionedValue] | None = None,
        heartbeat: int = 10,
        phi: float | None = 0.5,
        liveness: Liveness = Liveness.LIVE,
        last_update: float | None = None,
        last_gc_version: int = 0,
        announce: bool = True,
    ) -> NodeId:
        """A peer at ``addr`` (else 127.0.0.1 and ``port``, else a fresh port), holding
        ``keys`` as plain values at versions 1, 2... after the exact ``key_values``."""
        if addr is None:
            addr = f"127.0.0.1:{port if port is not None else next(self._ports)}"
        ident = NodeId(node_id, generation, SocketAddress.parse(str(addr)))
        exact = dict(key_values or {})
        member = Member(
            ident,
            key_values=exact,
            heartbeat=heartbeat,
            max_version=max((v.version for v in exact.values()), default=0),
            last_gc_version=last_gc_version,
            liveness=liveness,
            phi=phi,
            last_update=self.clock() if last_update is None else last_update,
            discovered_at=self.clock(),
        )
        member.add_keys(keys or {})
        self.members[ident] = member
        if announce and liveness is Liveness.LIVE:
            self.emit(NodeJoined(ident))
        return ident

    def put(self, snapshot: NodeSnapshot) -> NodeId:
        """A peer exactly as ``snapshot`` shows it (no event)."""
        self.members[snapshot.node] = Member(
            snapshot.node,
            key_values=dict(snapshot.key_values),
            heartbeat=snapshot.heartbeat,
            max_version=snapshot.max_version,
            last_gc_version=snapshot.last_gc_version,
            liveness=snapshot.liveness,
            phi=snapshot.phi,
            last_update=snapshot.last_update,
        )
        return snapshot.node

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
        """Every live member's heartbeat moves on (no event: heartbeats are not events),
        and the open nodes' keys whose deadline passed expire."""
        now = self.clock()
        for member in self.members.values():
            if member.liveness is Liveness.LIVE or member.node in self.handles:
                member.heartbeat += by
                member.last_update = now
        for handle in list(self.handles.values()):
            handle.fire_expiries()

    def write(
        self,
        node: NodeId,
        key: str,
        value: str,
        status: KeyStatus,
        *,
        reason: DeleteReason = "deleted",
    ) -> None:
        """A new version of ``key`` in ``node``'s state, always (no rule checked), and its
        events to every open node."""
        member = self.members[node]
        member.max_version += 1
        member.key_values[key] = VersionedValue(value, member.max_version, status)
        if node not in self.handles:
            # A peer's new version is news heard from it; a node's own write is not (its
            # own last_update moves with its heartbeat, see beat), as in the engine.
            member.last_update = self.clock()
        if status is KeyStatus.DELETED:
            self.emit(KeyDeleted(node, key, member.max_version, reason))
        else:
            self.emit(KeyChanged(node, key, value, member.max_version, status))
        self.emit(NodeUpdated(node, member.max_version))

    def set_peer_key(self, node: NodeId, key: str, value: str) -> None:
        self.write(node, key, value, KeyStatus.SET)

    def set_held(self, holder: NodeId, owner: NodeId, max_version: int) -> None:
        """``holder`` holds ``owner``'s keys only up to ``max_version`` (what its digests
        would report)."""
        self.held[(holder, owner)] = max_version

    def held_of(self, holder: NodeId, owner: NodeId) -> int:
        return self.held.get((holder, owner), self.members[owner].max_version)

    def set_digest_nodes(self, peer: NodeId, nodes: Iterable[NodeId]) -> None:
        """``peer``'s last digest listed ``nodes`` (how a chitchat peer's view is read)."""
        self.digest_nodes[peer] = frozenset(nodes)

    def publish_view(self, node: NodeId, live: Iterable[NodeId]) -> None:
        """``node`` publishes the summary of ``live`` as its view, as a gossip-tui node."""
        self.write(node, VIEW_KEY, summarize(frozenset(live)).encode(), KeyStatus.SET)

    # -- views -----------------------------------------------------------------------------

    def liveness_seen_by(self, self_id: NodeId, node: NodeId) -> Liveness:
        return Liveness.SELF if node == self_id else self.members[node].liveness

    def readings_for(self, handle: FakeNode) -> LivenessReadings:
        """Every member's liveness reading as ``handle`` sees it."""
        me = handle.self_id
        return LivenessReadings(
            self.clock(),
            tuple(
                member.reading(self.liveness_seen_by(me, ident))
                for ident, member in self.members.items()
            ),
        )

    def snapshot_for(self, handle: FakeNode) -> ClusterSnapshot:
        """The cluster as ``handle`` sees it, nodes in order as the engine lists them."""
        me = handle.self_id
        return ClusterSnapshot(
            cluster_id=self.cluster_id,
            self_node=me,
            nodes=tuple(
                self.members[ident].snapshot(self.liveness_seen_by(me, ident))
                for ident in sorted(self.members)
            ),
            seed_addrs=handle.seed_addrs,
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
