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

from gossip_tui.core.codec import MAX_DATAGRAM_SIZE, EncodeError, encode
from gossip_tui.core.engine import (
    LEAVING_KEY,
    GossipEngine,
    LivenessReadings,
    Step,
    fits_in_one_delta,
)
from gossip_tui.core.events import change_events, step_events
from gossip_tui.core.messages import Ack, Message, SynAck
from gossip_tui.core.models import (
    AddressError,
    ClusterSnapshot,
    KeyStatus,
    NodeId,
    NodeSnapshot,
    SocketAddress,
)
from gossip_tui.core.receive import Received, receive_datagram

from ._config import NodeConfig, default_node_id
from ._crypto import OVERHEAD as SEAL_OVERHEAD
from ._crypto import SealedTransport
from ._events import NodeEvent
from ._fanout import EventFanout
from ._local_store import keep_refused_keys, recover_local_keys, save_local_keys
from ._reflection import ReplyBudgets
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


class KeysNotSaved(OSError):
    """The local keys could not be written to the state directory: a change is applied
    (and gossiped) but would not survive a restart."""


# The keys the node sets itself: never saved, never loaded.
_MANAGED_KEYS = frozenset({"bind", LEAVING_KEY})


@attrs.frozen
class _SaveFailure:
    local_version: int  # the last local change the failed save was meant to hold
    error: OSError


class NodeStateFull(KeyValueTooLarge):
    """A write that would take this node's keys past the memory bound every gossip-tui
    peer keeps for one node: the peers would refuse it, so it is refused here."""


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
    # Replies held small: their address had not yet shown it receives (see _reflection).
    small_replies: int = 0
    last_round_duration: float = 0.0
    # Input dropped or refused, by reason: the transport's, the decoder's and the engine's
    # (fed from each step's refusals).
    dropped: Counter[str] = attrs.field(factory=Counter)
    # Times our own state, as a peer showed it, was not ours and we republished it, by
    # reason (fed from each step's repairs).
    self_repairs: Counter[str] = attrs.field(factory=Counter)
    # Exceptions a task of the node caught and survived, by task: each one is a bug.
    internal_errors: Counter[str] = attrs.field(factory=Counter)

    def count_step(self, step: Step) -> None:
        """Add what an engine step refused and repaired."""
        self.dropped.update(step.refusals)
        self.heartbeat_outruns += step.heartbeat_outruns
        self.self_repairs.update(step.self_repairs)

    def count_received(self, received: Received) -> None:
        """Add what one received datagram did: its drop, or its step."""
        if received.step is None:
            self.dropped.update(received.drops())
        else:
            self.count_step(received.step)


class _BurstLog:
    """Lets a message through at the start of a burst, then at most once per ``quiet``
    seconds: a flood of forged datagrams must not become a flood of log lines."""

    def __init__(self, quiet: float = 10.0) -> None:
        self._quiet = quiet
        self._last: float | None = None
        self.suppressed = 0

    def allow(self, now: float) -> bool:
        if self._last is not None and now - self._last < self._quiet:
            self.suppressed += 1
            return False
        self._last = now
        return True

    def take_suppressed(self) -> int:
        count, self.suppressed = self.suppressed, 0
        return count


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
    after = engine.self_state.size_after_set(key, value)
    bound = engine.state.limits.max_node_state_bytes
    if after > bound:
        raise NodeStateFull(
            f"this node's keys would hold {after:,} bytes of memory, over the {bound:,} "
            "bytes peers keep for one node: peers would refuse the change. "
            "Delete keys to make room (a deleted key still counts until its tombstone "
            "is collected)."
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
        self.stats = NodeStats()
        self._outrun_log = _BurstLog()
        self._repair_log = _BurstLog()
        self._error_logs: dict[str, _BurstLog] = {}  # one per task
        self.http_addr: SocketAddress | None = None
        self._socket = socket
        self._nursery = nursery
        self._local_dirty = trio.Event()
        self._save_lock = trio.Lock()
        # Local changes are numbered; a save records the number it holds. flush() waits
        # until the saved number reaches the current one, or a save that should have
        # held it failed.
        self._local_version = 0
        self._saved_version = 0
        self._save_failure: _SaveFailure | None = None
        self._save_ended = trio.Event()
        # While leaving: the peers that still have to fetch our last state from us.
        self._leave_pending: set[SocketAddress] = set()
        self._leave_done = trio.Event()
        self._fanout = EventFanout()
        self._reply_budgets = ReplyBudgets()

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

    def _local_changed(self) -> None:
        # A local write is no engine step: its changes are news at once.
        self._publish_all(change_events(self.engine.drain_changes()))
        self._local_version += 1
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

    def node_snapshot(self, node: NodeId) -> NodeSnapshot | None:
        """One node's full state, key-values included; None for a node not known."""
        return self.engine.node_snapshot(node, self._now())

    def liveness_readings(self) -> LivenessReadings:
        """Every node's liveness, heartbeat and phi, without copying any key."""
        return self.engine.liveness_readings(self._now())

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

    def _publish_all(self, events: list[NodeEvent] | tuple[NodeEvent, ...]) -> None:
        try:
            for event in events:
                self._publish(event)
        except Exception:
            # A local write is applied already: its caller must not see our bug.
            self._internal_error("publish", "the events of this step")

    def _record(self, step: Step, source: object) -> None:
        """Act on what a round or a sweep did: count it, log it, publish its events."""
        self.stats.count_step(step)
        self._report(step, source)
        self._publish_all(step_events(step))

    def _report(self, step: Step, source: object) -> None:
        """Log what an operator should know of a step (counted already)."""
        stats = self.stats
        if step.refusals:
            log.warning(
                "refused input from %s (%s; totals by reason: %s)",
                source,
                ", ".join(step.refusals),
                dict(stats.dropped),
            )
        if step.heartbeat_outruns and self._outrun_log.allow(self._now()):
            log.warning(
                "%s reported our heartbeat ahead of ours (a corrupted datagram, or an "
                "incarnation of ours with the same generation): jumped past it "
                "(%d more since the last report)",
                source,
                self._outrun_log.take_suppressed(),
            )
        if step.self_repairs and self._repair_log.allow(self._now()):
            log.warning(
                "%s showed our own state with values we never wrote (forged, or an "
                "incarnation of ours with the same generation): republished it as %s "
                "(repairs by reason: %s; %d more since the last report)",
                source,
                self.self_id,
                dict(stats.self_repairs),
                self._repair_log.take_suppressed(),
            )

    # ------------------------------------------------------------------ tasks

    def _internal_error(self, task: str, lost: str = "this step") -> None:
        """Count and log (once per burst) the exception being handled, which ``task``
        survives: a bug must cost one message or one round, never the node."""
        self.stats.internal_errors[task] += 1
        burst = self._error_logs.setdefault(task, _BurstLog())
        if burst.allow(self._now()):
            log.exception(
                "internal error in %s, dropped %s and carrying on (%d more since the last report)",
                task,
                lost,
                burst.take_suppressed(),
            )

    def _encode(self, message: Message) -> bytes | None:
        try:
            return encode(message)
        except EncodeError:
            log.exception("could not encode %s", type(message).__name__)
            self.stats.send_errors += 1
            return None
        except Exception:
            self.stats.send_errors += 1
            self._internal_error("encode")
            return None

    async def _send(self, message: Message, addr: SocketAddress) -> None:
        data = self._encode(message)
        if data is not None:
            self._reply_budgets.sent(message, addr, self._now())
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

    async def _gossip_round(self, started: float) -> None:
        step = self.engine.start_round(started)
        self._record(step, "a gossip round")
        targets = step.targets.all()
        # One Syn for all of this round's targets, encoded once.
        syn = self._encode(self.engine.create_syn(started)) if targets else None
        if syn is not None:
            for addr in targets:
                self._reply_budgets.sent_syn(addr, started)
                await self._send_bytes(syn, addr)
        self.stats.rounds += 1
        self.stats.last_round_duration = self._now() - started

    async def _gossip_loop(self) -> None:
        interval = self.config.gossip_interval
        next_round = self._now()
        while True:
            try:
                await self._gossip_round(self._now())
            except Exception:
                self._internal_error("gossip_loop")
            next_round = max(next_round + interval, self._now())
            await trio.sleep_until(next_round)

    def _judge_liveness(self) -> None:
        self._record(self.engine.update_liveness(self._now()), "a liveness sweep")

    async def _failure_detector_loop(self) -> None:
        # Judges liveness once per interval, half an interval after each round, when that
        # round's replies are in.
        interval = self.config.gossip_interval
        await trio.sleep(interval / 2)
        while True:
            try:
                self._judge_liveness()
            except Exception:
                self._internal_error("failure_detector_loop")
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
                await self._handle_datagram(data, source)
            except Exception:
                self._internal_error("receive_loop")

    async def _handle_datagram(self, data: bytes, source: SocketAddress) -> None:
        now = self._now()

        def reply_budget(message: Message) -> int | None:
            # A source not yet shown to receive what we send may be forged: answer it small.
            return self._reply_budgets.budget(message, source, len(data), now)

        try:
            received = receive_datagram(self.engine, data, now, reply_budget)
        except Exception:
            # A message our engine cannot digest must never take the node down.
            self.stats.dropped["rejected"] += 1
            self._internal_error("handle_message", f"a message from {source}")
            return
        self.stats.count_received(received)
        if received.step is None:
            log.debug("dropped a malformed datagram from %s: %s", source, received.decode_error)
            return
        self._report(received.step, source)
        reply = received.reply
        if reply is not None:
            if received.reply_budget is not None and isinstance(reply, (SynAck, Ack)):
                self.stats.small_replies += 1
            await self._send(reply, source)
            if isinstance(received.message, SynAck) and source in self._leave_pending:
                self._leave_pending.discard(source)
                if not self._leave_pending:
                    self._leave_done.set()
        # After the reply: a subscriber woken by an event sees the exchange done.
        self._publish_all(received.events)

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
        # Our own marker is for peers, no news for our subscribers (the node is closing).
        self.engine.drain_changes()
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
        return {
            key: value.value
            for key, value in self.engine.self_state.key_values.items()
            if value.status is KeyStatus.SET and key not in _MANAGED_KEYS
        }

    async def flush(self) -> None:
        """Wait until every local change made so far is on disk (at once without a state
        directory). Raises :class:`KeysNotSaved` when the save that should hold them
        failed. Concurrent callers share one save: a burst of writes waits for the save
        in progress and then for one more that holds them all."""
        if self.config.state_dir is None:
            return
        wanted = self._local_version
        while self._saved_version < wanted:
            failure = self._save_failure
            if failure is not None and failure.local_version >= wanted:
                raise KeysNotSaved(
                    failure.error.errno,
                    f"could not save the local keys to {self.config.state_dir}: "
                    f"{failure.error.strerror or failure.error}",
                ) from failure.error
            await self._save_ended.wait()

    async def save_keys(self, state_dir: Path) -> None:
        """Write the durable keys to ``state_dir``; raises OSError when that fails.

        The keys are taken once the previous save is done (one save at a time: the
        saver task and the final save on close may overlap), so that a save never
        replaces a newer one."""
        async with self._save_lock:
            version = self._local_version
            keys = self.durable_keys()
            try:
                await trio.to_thread.run_sync(save_local_keys, state_dir, keys)
            except OSError as exc:
                self._save_failure = _SaveFailure(version, exc)
                raise
            else:
                self._saved_version = max(self._saved_version, version)
            finally:
                self._save_ended.set()
                self._save_ended = trio.Event()

    async def _save_keys(self, state_dir: Path) -> None:
        # Group commit: while one save runs in its thread, the changes made meanwhile
        # pile up behind a single dirty flag, and the next save holds them all.
        while True:
            await self._local_dirty.wait()
            self._local_dirty = trio.Event()
            try:
                await self.save_keys(state_dir)
            except OSError as exc:
                # Keep gossiping; the writers waiting in flush() get the error, and the
                # next change tries again.
                log.error("could not save the local keys to %s: %s", state_dir, exc)

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self._seed_resolver)
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


async def _restore_saved_keys(
    engine: GossipEngine, state_dir: Path, saved: dict[str, str], *, keep: set[str]
) -> bool:
    """Set the saved keys that pass the checks a new key passes; the keys in ``keep``
    (given in the config) win over saved ones. Refused keys are reported in one line,
    never gossiped, and kept in a file beside the state file; True when there were some,
    and the state file is to be saved again without them."""
    refused: dict[str, str] = {}
    reasons: list[str] = []
    for key, value in saved.items():
        if key in keep:
            continue
        try:
            if key in _MANAGED_KEYS:
                raise ValueError("the node sets this key itself")
            _check_size(engine, key, value)
        except ValueError as exc:
            refused[key] = value
            reasons.append(f"{key[:40]!r}: {exc}")
            continue
        engine.self_state.set(key, value)
    if not refused:
        return False
    try:
        aside = await trio.to_thread.run_sync(keep_refused_keys, state_dir, refused)
    except OSError as exc:
        kept = f"could not keep them aside ({exc})"
    else:
        kept = f"kept them in {aside}"
    shown = "; ".join(reasons[:3]) + ("; ..." if len(reasons) > 3 else "")
    log.error("state file: refused %d saved key(s) (%s); %s", len(refused), shown, kept)
    return True


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
        resave = False
        if config.state_dir is not None:
            saved = await trio.to_thread.run_sync(recover_local_keys, config.state_dir)
            resave = await _restore_saved_keys(engine, config.state_dir, saved, keep=set(initial))
        # The initial keys are the starting state, not news for later subscribers.
        engine.drain_changes()
        async with trio.open_nursery() as nursery:
            node = Node(config, engine, socket, nursery)
            if resave:  # else each start would set the refused keys aside once more
                node._local_dirty.set()
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
                        try:
                            await node.save_keys(config.state_dir)
                        except OSError as exc:
                            log.error(
                                "could not save the local keys to %s: %s", config.state_dir, exc
                            )
                nursery.cancel_scope.cancel()
                node._fanout.close()
    finally:
        socket.close()
