"""The running node: the engine driven by Trio tasks over a datagram transport."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from gossip_tui.core.codec import MAX_DATAGRAM_SIZE, DecodeError, EncodeError, decode, encode
from gossip_tui.core.engine import (
    LEAVING_KEY,
    GossipEngine,
    LivenessChanges,
    fits_in_one_delta,
)
from gossip_tui.core.messages import Message, SynAck
from gossip_tui.core.models import (
    AddressError,
    ClusterSnapshot,
    KeyStatus,
    NodeId,
    SocketAddress,
)
from gossip_tui.core.state import KeyChange, StateChange, VersionChange

from ._config import NodeConfig, default_node_id
from ._crypto import OVERHEAD as SEAL_OVERHEAD
from ._crypto import SealedTransport
from ._events import (
    KeyChanged,
    KeyDeleted,
    NodeEvent,
    NodeJoined,
    NodeLeft,
    NodeRemoved,
    NodeUpdated,
)
from ._fanout import EventFanout
from ._local_store import load_local_keys, save_local_keys
from ._transport import DatagramRejected, DatagramSocket, Transport, UdpTransport

log = logging.getLogger("gossip_tui.node")

# The most a key and its value may take together: room for the headers around them in
# one datagram (sealed or not), the node's own name, and some margin. Node.set also
# checks the exact fit, which only a very long node name can make the tighter bound.
MAX_KEY_VALUE_BYTES = 60_000
_SEED_RETRY_INTERVAL = 5.0


def _generation_now() -> int:
    # Unix time in milliseconds: a node restarted within the same second (a crash loop
    # under systemd) still gets a new generation, which peers need to tell the new
    # incarnation from the old one. chitchat-test uses seconds; Quickwit nanoseconds.
    return time.time_ns() // 1_000_000


class KeyValueTooLarge(ValueError):
    """A key or value that could never be gossiped in a single datagram."""


@attrs.define
class NodeStats:
    """Counters an operator (or /metrics) reads."""

    datagrams_in: int = 0
    datagrams_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    send_errors: int = 0
    rounds: int = 0
    events_dropped: int = 0
    heartbeat_outruns: int = 0
    last_round_duration: float = 0.0
    dropped: Counter[str] = attrs.field(factory=Counter)


def _check_size(engine: GossipEngine, key: str, value: str) -> None:
    if not key:
        raise ValueError("a key must not be empty")
    size = len(key.encode()) + len(value.encode())
    if size > MAX_KEY_VALUE_BYTES:
        raise KeyValueTooLarge(
            f"key and value take {size:,} bytes; at most {MAX_KEY_VALUE_BYTES:,} "
            "fit in a gossip datagram"
        )
    if not fits_in_one_delta(engine.self_id, key, value, engine.max_datagram_size):
        name = len(engine.self_id.node_id.encode())
        raise KeyValueTooLarge(
            f"key and value take {size:,} bytes, which do not fit in a gossip datagram "
            f"beside this node's {name:,}-byte name"
        )


class Node:
    """A live gossip node. Get one from :func:`open_node`.

    The write methods are synchronous: call them from Trio tasks, or from the thread
    that hosts Trio in guest mode (Textual's). From any other thread, go through
    ``trio.from_thread`` with the run's token.
    """

    def __init__(
        self,
        config: NodeConfig,
        engine: GossipEngine,
        socket: DatagramSocket,
        nursery: trio.Nursery,
    ) -> None:
        self.config = config
        self.engine = engine
        # One counter of drops by reason: the receive path's and the engine's limits.
        self.stats = NodeStats(dropped=engine.state.rejected)
        self.http_addr: SocketAddress | None = None
        self._socket = socket
        self._nursery = nursery
        self._changed = trio.Event()
        self._local_dirty = trio.Event()
        self._save_lock = trio.Lock()
        # While leaving: the peers that still have to fetch our last state from us.
        self._leave_pending: set[SocketAddress] = set()
        self._leave_done = trio.Event()
        self._fanout = EventFanout()

    # ------------------------------------------------------------------ identity

    @property
    def self_id(self) -> NodeId:
        return self.engine.self_id

    @property
    def cluster_id(self) -> str:
        return self.engine.cluster_id

    @property
    def gossip_addr(self) -> SocketAddress:
        """The address the socket is bound to (with the real port when 0 was asked)."""
        return self._socket.local_address

    # ------------------------------------------------------------------ local keys

    def _now(self) -> float:
        return trio.current_time()

    def _touch(self) -> None:
        self._changed.set()

    def _local_changed(self) -> None:
        self._touch()
        self._local_dirty.set()

    def set(self, key: str, value: str) -> None:
        _check_size(self.engine, key, value)
        self.engine.self_state.set(key, value)
        self._local_changed()

    def set_with_ttl(self, key: str, value: str) -> None:
        """Set a value that is removed after the marked-for-deletion grace period."""
        _check_size(self.engine, key, value)
        self.engine.self_state.set_with_ttl(key, value, self._now())
        self._local_changed()

    def delete(self, key: str) -> bool:
        """Delete a local key; False if there was no such key."""
        deleted = self.engine.self_state.delete(key, self._now())
        self._local_changed()
        return deleted

    def delete_after_ttl(self, key: str) -> bool:
        """Keep a local key visible for the grace period, then remove it."""
        marked = self.engine.self_state.delete_after_ttl(key, self._now())
        self._local_changed()
        return marked

    # ------------------------------------------------------------------ reading

    def get(self, key: str, node: NodeId | None = None) -> str | None:
        state = self.engine.state.node_state(node or self.self_id)
        return None if state is None else state.get(key)

    def live_nodes(self) -> list[NodeId]:
        return self.engine.live_nodes()

    def dead_nodes(self) -> list[NodeId]:
        return self.engine.dead_nodes()

    def snapshot(self) -> ClusterSnapshot:
        return self.engine.snapshot(self._now())

    def subscribe(
        self, prefix: str = "", max_buffer: int = 1_000
    ) -> trio.MemoryReceiveChannel[NodeEvent]:
        """Events from now on. Membership events always; key events for keys under
        ``prefix``. A subscriber that falls ``max_buffer`` events behind loses events
        (counted in ``stats.events_dropped``) rather than slowing the node down."""
        return self._fanout.subscribe(prefix, max_buffer)

    async def start_service(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run a task in the node's nursery (``nursery.start``); it ends with the node."""
        return await self._nursery.start(async_fn, *args)

    # ------------------------------------------------------------------ events

    def _publish(self, event: NodeEvent) -> None:
        self._fanout.publish(event)
        self.stats.events_dropped = self._fanout.dropped

    def _publish_changes(self, changes: list[StateChange]) -> None:
        latest_version: dict[NodeId, int] = {}
        for change in changes:
            if isinstance(change, VersionChange):
                latest_version[change.node] = change.max_version
            elif isinstance(change, KeyChange):
                value = change.value
                if value is None or value.is_deleted:
                    version = 0 if value is None else value.version
                    self._publish(KeyDeleted(change.node, change.key, version))
                else:
                    self._publish(KeyChanged(change.node, change.key, value.value, value.version))
        for node, version in latest_version.items():
            self._publish(NodeUpdated(node, version))

    def _publish_liveness(self, changes: LivenessChanges) -> None:
        for node in changes.joined:
            self._publish(NodeJoined(node))
        for node in changes.left:
            self._publish(NodeLeft(node))
        for node in changes.removed:
            self._publish(NodeRemoved(node))

    # ------------------------------------------------------------------ tasks

    def _encode(self, message: Message) -> bytes | None:
        try:
            return encode(message)
        except EncodeError:
            log.exception("could not encode %s", type(message).__name__)
            self.stats.send_errors += 1
            return None

    async def _send(self, message: Message, addr: SocketAddress) -> None:
        data = self._encode(message)
        if data is not None:
            await self._send_bytes(data, addr)

    async def _send_bytes(self, data: bytes, addr: SocketAddress) -> None:
        try:
            await self._socket.send(data, addr)
        except OSError as exc:
            # An unreachable or vanished peer is the failure detector's business.
            self.stats.send_errors += 1
            log.debug("send to %s failed: %s", addr, exc)
            return
        self.stats.datagrams_out += 1
        self.stats.bytes_out += len(data)

    async def gossip_to(self, addr: SocketAddress) -> None:
        """Start a handshake with ``addr`` right now, outside the regular rounds."""
        await self._send(self.engine.create_syn(self._now()), addr)

    async def _gossip_loop(self) -> None:
        interval = self.config.gossip_interval
        next_round = self._now()
        while True:
            started = self._now()
            targets = self.engine.start_round(started).all()
            # Each distinct Syn of the round encoded once: all targets share the full one,
            # except peers that take partial digests when the full one does not fit.
            encoded: dict[int, tuple[Message, bytes | None]] = {}
            for addr in targets:
                syn = self.engine.create_syn(started, addr)
                entry = encoded.get(id(syn))
                if entry is None:
                    entry = encoded[id(syn)] = (syn, self._encode(syn))
                if entry[1] is not None:
                    await self._send_bytes(entry[1], addr)
            self.stats.rounds += 1
            self.stats.last_round_duration = self._now() - started
            if self.engine.state.changes:  # tombstones collected; else the watcher sleeps on
                self._touch()
            next_round = max(next_round + interval, self._now())
            await trio.sleep_until(next_round)

    async def _failure_detector_loop(self) -> None:
        # Judges liveness once per interval, half an interval after each round, when that
        # round's replies are in.
        interval = self.config.gossip_interval
        await trio.sleep(interval / 2)
        while True:
            changes = self.engine.update_liveness(self._now())
            if changes:
                self._publish_liveness(changes)
            if self.engine.state.changes:  # dead nodes forgotten
                self._touch()
            await trio.sleep(interval)

    async def _receive_loop(self) -> None:
        while True:
            try:
                data, source = await self._socket.recv()
            except DatagramRejected as rejected:
                self.stats.datagrams_in += 1
                self.stats.dropped[rejected.reason] += 1
                continue
            self.stats.datagrams_in += 1
            self.stats.bytes_in += len(data)
            try:
                message = decode(data)
            except DecodeError as exc:
                self.stats.dropped["malformed"] += 1
                log.debug("dropped a malformed datagram from %s: %s", source, exc)
                continue
            refused_before = self.engine.state.rejected.total()
            outrun_before = self.engine.outrun_heartbeats
            try:
                reply = self.engine.handle_message(message, self._now())
            except Exception:
                # A message our engine cannot digest must never take the node down.
                self.stats.dropped["rejected"] += 1
                log.exception("dropped a message from %s that could not be applied", source)
                continue
            if self.engine.state.rejected.total() != refused_before:
                log.warning(
                    "refused input from %s (totals by reason: %s)",
                    source,
                    dict(self.engine.state.rejected),
                )
            if self.engine.outrun_heartbeats != outrun_before:
                self.stats.heartbeat_outruns = self.engine.outrun_heartbeats
                log.warning(
                    "%s reported our heartbeat ahead of ours (a corrupted datagram, or an "
                    "incarnation of ours with the same generation): jumped past it",
                    source,
                )
            if self.engine.state.changes:
                # Most messages only move heartbeats: no need to wake the watcher for those.
                self._touch()
            if reply is not None:
                await self._send(reply, source)
                if isinstance(message, SynAck) and source in self._leave_pending:
                    self._leave_pending.discard(source)
                    if not self._leave_pending:
                        self._leave_done.set()

    async def _watcher(self) -> None:
        while True:
            await self._changed.wait()
            self._changed = trio.Event()
            changes = self.engine.drain_changes()
            if changes:
                self._publish_changes(changes)

    async def _seed_resolver(self, task_status: trio.TaskStatus[None]) -> None:
        literal, hosts = _split_seeds(self.config.seeds)
        self.engine.seed_addrs = set(literal)
        started = False
        while True:
            resolved = set(literal)
            failed = False
            for host, port in hosts:
                found = await _resolve(host, port)
                failed |= not found
                resolved |= found
            self.engine.seed_addrs = resolved
            if not started:
                task_status.started()
                started = True
            if not hosts:
                return
            # A seed that did not resolve is tried again soon; the others once a minute.
            refresh = self.config.seed_refresh_interval
            await trio.sleep(min(refresh, _SEED_RETRY_INTERVAL) if failed else refresh)

    async def leave(self) -> None:
        """Announce our departure to the live peers and wait (bounded) until each has
        fetched it: a Syn to each, whose SynAck we answer with an Ack holding the marker."""
        self.engine.announce_leave()
        peers = {node.gossip_addr for node in self.live_nodes() if node != self.self_id}
        if not peers:
            return
        self._leave_pending = set(peers)
        self._leave_done = trio.Event()
        with trio.move_on_after(self.config.leave_timeout):
            syn = self.engine.create_syn(self._now())
            for addr in peers:
                await self._send(syn, addr)
            await self._leave_done.wait()

    def durable_keys(self) -> dict[str, str]:
        """The local keys worth keeping across a restart: set by the operator, not
        deleted, not temporary, not managed by the node itself."""
        managed = {"bind", LEAVING_KEY}
        return {
            key: value.value
            for key, value in self.engine.self_state.key_values.items()
            if value.status is KeyStatus.SET and key not in managed
        }

    async def save_keys(self, state_dir: Path, keys: dict[str, str]) -> None:
        # One save at a time: the saver task and the final save on close may overlap.
        async with self._save_lock:
            await trio.to_thread.run_sync(save_local_keys, state_dir, keys)

    async def _save_keys(self, state_dir: Path) -> None:
        saved: dict[str, str] | None = None
        while True:
            await self._local_dirty.wait()
            self._local_dirty = trio.Event()
            keys = self.durable_keys()
            if keys != saved:
                try:
                    await self.save_keys(state_dir, keys)
                except OSError:
                    # Keep gossiping; the operator sees the error and the next change retries.
                    log.exception("could not save the local keys to %s", state_dir)
                    continue
                saved = keys

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self._seed_resolver)
            nursery.start_soon(self._watcher)
            nursery.start_soon(self._receive_loop)
            nursery.start_soon(self._gossip_loop)
            nursery.start_soon(self._failure_detector_loop)
            if self.config.state_dir is not None:
                nursery.start_soon(self._save_keys, self.config.state_dir)
            task_status.started()


def _split_seeds(seeds: tuple[str, ...]) -> tuple[list[SocketAddress], list[tuple[str, int]]]:
    literal: list[SocketAddress] = []
    hosts: list[tuple[str, int]] = []
    for seed in seeds:
        try:
            literal.append(SocketAddress.parse(seed))
        except AddressError:
            host, sep, port = seed.rpartition(":")
            if not sep or not host or not port.isdigit() or int(port) > 0xFFFF:
                log.warning("ignoring seed %r: not host:port", seed)
                continue
            hosts.append((host, int(port)))
    return literal, hosts


async def _resolve(host: str, port: int) -> set[SocketAddress]:
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_DGRAM)
    except OSError as exc:
        log.warning("could not resolve seed %s:%d (%s); will retry", host, port, exc)
        return set()
    found = set()
    for _family, _type, _proto, _name, sockaddr in infos:
        found.add(SocketAddress(ipaddress.ip_address(sockaddr[0]), int(sockaddr[1])))
    return found


@asynccontextmanager
async def open_node(
    config: NodeConfig | None = None, *, transport: Transport | None = None
) -> AsyncIterator[Node]:
    """Bind, start gossiping, and yield the running :class:`Node`.

    Raises OSError (errno EADDRINUSE) before yielding when the address is taken. On exit
    every task of the node is cancelled and the socket closed.
    """
    config = config or NodeConfig()
    transport = transport or UdpTransport()
    max_datagram_size = MAX_DATAGRAM_SIZE
    if config.secret_keys:
        transport = SealedTransport(transport, config.secret_keys)
        max_datagram_size -= SEAL_OVERHEAD
    socket = await transport.bind(config.listen_addr)
    try:
        public = config.public_addr or socket.local_address
        if public.port == 0 or public.ip.is_unspecified:
            public = socket.local_address
        node_id = NodeId(
            config.node_id or default_node_id(public),
            config.generation if config.generation is not None else _generation_now(),
            public,
        )
        initial = dict(config.initial_key_values)
        if config.state_dir is not None:
            # Saved keys come back first; keys given in the config win over them.
            saved = await trio.to_thread.run_sync(load_local_keys, config.state_dir)
            initial = {**saved, **initial}
        if config.publish_bind_key:
            initial.setdefault("bind", str(public))
        engine = GossipEngine(
            node_id,
            config.cluster_id,
            now=trio.current_time(),
            failure_detector=config.failure_detector,
            marked_for_deletion_grace_period=config.marked_for_deletion_grace_period,
            initial_key_values=initial,
            max_datagram_size=max_datagram_size,
            protocol_version=config.protocol_version,
        )
        # The initial keys are the starting state, not news for later subscribers.
        engine.drain_changes()
        async with trio.open_nursery() as nursery:
            node = Node(config, engine, socket, nursery)
            await nursery.start(node._run)
            try:
                yield node
            finally:
                # Shielded: a node cancelled by Ctrl-C or SIGTERM still says goodbye and
                # keeps its last change.
                with trio.CancelScope(shield=True):
                    if config.announce_leave:
                        await node.leave()
                    if config.state_dir is not None:
                        await node.save_keys(config.state_dir, node.durable_keys())
                nursery.cancel_scope.cancel()
                node._fanout.close()
    finally:
        socket.close()
