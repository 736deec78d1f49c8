"""What every part of a running node shares: its state (set up here), its counters, and
the plumbing each part uses (the clock, events, sending, surviving a bug). The parts are
mixins of :class:`gossip_tui.node._node.Node`: _loops (gossip, failure detector,
receive), _seeds (the resolver), _persistence (saver, flush) and _leave."""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
import trio

from gossip_tui.core.agreement import VIEW_KEY, PeerViews, SeenDigest, is_view_summary
from gossip_tui.core.codec import EncodeError, encode
from gossip_tui.core.engine import GossipEngine, Step
from gossip_tui.core.events import change_events
from gossip_tui.core.expiry import KeyExpiries
from gossip_tui.core.fields_repr import fields_repr
from gossip_tui.core.messages import Message
from gossip_tui.core.models import NodeId, SocketAddress
from gossip_tui.core.receive import Received

from ._config import NodeConfig
from ._events import NodeEvent, SeedAnswered, SeedUnreachable
from ._fanout import EventFanout
from ._reflection import ReplyBudgets
from ._transport import DatagramSocket

if TYPE_CHECKING:
    from ._persistence import _SaveFailure

log = logging.getLogger("gossip_tui.node")

# Syns a seed may leave unanswered in a row before it is reported unreachable.
SEED_UNREACHABLE_AFTER = 3

# Slots the liveness sweep may sleep through in a row, at most, however steady the
# detector says the verdicts are: a bound on the slots counted one by one.
MAX_SKIPPED_SWEEPS = 64


@attrs.define
class NodeStats:
    """Counters an operator (or /metrics) reads."""

    __repr__ = fields_repr

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


class NodeBase:
    """The state of a running node and its shared plumbing."""

    def __init__(
        self,
        config: NodeConfig,
        engine: GossipEngine,
        socket: DatagramSocket,
        nursery: trio.Nursery,
    ) -> None:
        self.config = config
        self.engine = engine
        # The node's clock: the run's own, read directly. trio.current_time() finds the
        # run and its clock on every read, three Python calls more, and the receive path
        # reads the time once a datagram (the clock is the run's for the run's life).
        self._now: Callable[[], float] = trio.lowlevel.current_clock().current_time
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
        # The node's regular tasks, stopped on close before the leave runs its own receiver.
        self._tasks = trio.CancelScope()
        self._tasks_ended = trio.Event()
        self._fanout = EventFanout()
        # The deadlines of this node's keys set with a duration (Node.set(ttl=...)), in
        # the node's clock; the gossip round and the liveness sweep fire them.
        self.expiries = KeyExpiries()
        self._reply_budgets = ReplyBudgets()
        # The datagram being handled, as _reply_budget reads it: set per datagram, so that
        # the receive path passes one method bound here rather than a closure per datagram.
        # Read synchronously inside receive_datagram, right after they are set: no other
        # datagram's values can be in place then.
        self._budget_source = socket.local_address
        self._budget_size = 0
        self._budget_now = 0.0
        self._reply_budget_of = self._reply_budget
        # Whether each seed answers (see Node.seed_status): kept here because the gossip
        # round asks seeds and the receive loop hears them.
        self._seed_unanswered: Counter[SocketAddress] = Counter()
        self._seed_last_answer: dict[SocketAddress, float] = {}
        self._seeds_unreachable: set[SocketAddress] = set()
        # What each peer's last digest said of us and of the nodes it knows (_views).
        self._peer_views = PeerViews()
        # Bound once (the engine keeps its state for life): a digest arrives with nearly
        # every datagram, and a bound method per call is an object per datagram.
        self._publishes_view_of = self._publishes_view
        self._nodes_at = engine.state.nodes_at
        # The liveness sweep's alarm while it sleeps (see NodeLoops._failure_detector_loop),
        # the time of its last sweep, from which its slots count, and the due time the
        # alarm was set for (news that is not earlier leaves the alarm where it is).
        self._sweep_alarm: trio.CancelScope | None = None
        self._sweep_slot = 0.0
        self._sweep_alarm_due = -math.inf

    def _local_changed(
        self, events: Callable[[list[NodeEvent]], list[NodeEvent]] | None = None
    ) -> None:
        # A local write is no engine step: its changes are news at once (``events`` may
        # reword them, as an expiry does), and the state file is due for a save.
        news = change_events(self.engine.drain_changes())
        self._publish_all(news if events is None else events(news))
        self._local_version += 1
        self._local_dirty.set()
        self._sweep_news()  # a key may expire now, at a sweep

    def _sweep_due(self) -> float:
        """The earliest time a sweep could change something (it may be early): a verdict
        or a removal (the engine's), a key's expiry, peer readings of senders to prune."""
        due = min(self.engine.liveness_steady_until(), self.expiries.earliest)
        # The state's dict, not the state: its __len__ is a Python call, once a datagram.
        if len(self._peer_views) > len(self.engine.state.node_states):
            return -math.inf
        return due

    def _next_sweep_slot(self) -> float:
        """The first slot after the last sweep (one interval on, two, ...) at or after the
        time a sweep is due, and now. Repeated addition, as successive sleeps of one
        interval land; at most MAX_SKIPPED_SWEEPS slots on, where the loop sweeps anyway."""
        self._sweep_alarm_due = self._sweep_due()
        due = max(self._sweep_alarm_due, self._now())
        interval = self.config.gossip_interval
        slot = self._sweep_slot + interval
        for _ in range(MAX_SKIPPED_SWEEPS - 1):
            if slot >= due:
                break
            slot += interval
        return slot

    def _sweep_news(self) -> None:
        """Something happened that the next sweep may have to judge: bring the liveness
        sweep's alarm forward to the first slot it matters on (cheap when it does not)."""
        alarm = self._sweep_alarm
        if alarm is not None and self._sweep_due() < self._sweep_alarm_due:
            alarm.deadline = self._next_sweep_slot()

    def _seed_asked(self, addr: SocketAddress) -> None:
        self._seed_unanswered[addr] += 1
        unanswered = self._seed_unanswered[addr]
        if unanswered >= SEED_UNREACHABLE_AFTER and addr not in self._seeds_unreachable:
            self._seeds_unreachable.add(addr)
            log.warning("seed %s has not answered %d Syns in a row", addr, unanswered)
            self._publish(SeedUnreachable(addr, unanswered))

    def _seed_heard(self, addr: SocketAddress, now: float) -> None:
        self._seed_unanswered.pop(addr, None)
        self._seed_last_answer[addr] = now
        if addr in self._seeds_unreachable:
            self._seeds_unreachable.discard(addr)
            log.info("seed %s answers again", addr)
            self._publish(SeedAnswered(addr))

    def _note_digest(self, seen: SeenDigest, source: SocketAddress, now: float) -> None:
        """What a peer's digest said of us and of the nodes it knows (read by _views)."""
        engine = self.engine
        self._peer_views.note(
            seen, source, engine.self_id, now, self._publishes_view_of, self._nodes_at
        )

    def _publishes_view(self, node: NodeId) -> bool:
        state = self.engine.state.node_states.get(node)
        # A value that is no summary (forged, garbled) leaves the digest to judge by.
        return state is not None and is_view_summary(state.get(VIEW_KEY))

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

    def _reply_budget(self, message: Message) -> int | None:
        """The cap of the reply to ``message``, the datagram being handled: a source not yet
        shown to receive what we send may be forged, so it is answered small."""
        return self._reply_budgets.budget(
            message, self._budget_source, self._budget_size, self._budget_now
        )

    async def _send(self, message: Message, addr: SocketAddress, now: float | None = None) -> None:
        """Encode and send ``message``; ``now``: the time the caller read already."""
        data = self._encode(message)
        if data is not None:
            self._reply_budgets.sent(message, addr, self._now() if now is None else now)
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
