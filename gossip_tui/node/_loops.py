"""A running node's loops: a gossip round every interval, a liveness sweep half an interval
after each, and the receive loop, each turning the engine's steps into counters, log lines
and events."""

from __future__ import annotations

import logging

import attrs
import trio

from gossip_tui.core.engine import Step
from gossip_tui.core.events import KeyDeleted, NodeEvent, step_events
from gossip_tui.core.expiry import expire_due
from gossip_tui.core.messages import Ack, Message, SynAck
from gossip_tui.core.models import SocketAddress
from gossip_tui.core.receive import receive_datagram

from ._node_base import NodeBase
from ._transport import DatagramRejected

log = logging.getLogger("gossip_tui.node")


class NodeLoops(NodeBase):
    """The gossip, failure-detector and receive loops (run by ``Node._run``)."""

    async def gossip_to(self, addr: SocketAddress) -> None:
        """Start a handshake with ``addr`` right now, outside the regular rounds."""
        await self._send(self.engine.create_syn(self._now()), addr)

    def _expire_keys(self) -> None:
        """Delete the local keys whose deadline passed (Node.set with a ttl): run before
        each round, so the tombstone leaves with it, and at each sweep."""
        expired = expire_due(self.engine.self_state, self.expiries, self._now())
        if expired:
            gone = set(expired)

            def as_expiries(events: list[NodeEvent]) -> list[NodeEvent]:
                return [
                    attrs.evolve(event, reason="expired")
                    if isinstance(event, KeyDeleted) and event.key in gone
                    else event
                    for event in events
                ]

            self._local_changed(as_expiries)

    async def _gossip_round(self, started: float) -> None:
        self._expire_keys()
        budgets = self._reply_budgets
        step = self.engine.start_round(
            started, answering=lambda addr: budgets.is_trusted(addr, started)
        )
        self._record(step, "a gossip round")
        targets = step.targets.all()
        # Once per round however often a seed is among the targets (a peer pick and a
        # seed pick may both name it): a seed is unreachable after rounds unanswered.
        for addr in self.engine.seed_addrs.intersection(targets):
            self._seed_asked(addr)
        # Each distinct Syn of the round encoded once: all targets share the full one,
        # except peers that take partial digests when the full one does not fit.
        encoded: dict[int, tuple[Message, bytes | None]] = {}
        for addr in targets:
            syn = self.engine.create_syn(started, addr)
            entry = encoded.get(id(syn))
            if entry is None:
                entry = encoded[id(syn)] = (syn, self._encode(syn))
            if entry[1] is not None:
                budgets.sent_syn(addr, started)
                await self._send_bytes(entry[1], addr)
        self.stats.rounds += 1
        self.stats.last_round_duration = self._now() - started

    def set_gossip_interval(self, seconds: float) -> None:
        """Gossip every ``seconds`` from the next round on (and sweep liveness on that
        rhythm). Raises ValueError for a value the config refuses (not > 0). The demo slows
        its peers with it once they see the whole cluster; peers' detectors adapt to the new
        rhythm as to any other (phi is measured against the mean interval seen)."""
        self.config = attrs.evolve(self.config, gossip_interval=seconds)

    async def _gossip_loop(self) -> None:
        next_round = self._now()
        while True:
            try:
                await self._gossip_round(self._now())
            except Exception:
                self._internal_error("gossip_loop")
            # Read each round: set_gossip_interval may change it.
            next_round = max(next_round + self.config.gossip_interval, self._now())
            await trio.sleep_until(next_round)

    def _judge_liveness(self) -> None:
        self._expire_keys()
        step = self.engine.update_liveness(self._now())
        self._record(step, "a liveness sweep")
        if step.liveness.removed or len(self._peer_views) > len(self.engine.state):
            # Removed peers leave the readings; so do senders the engine never admitted.
            self._peer_views.keep(set(self.engine.live_nodes()) | set(self.engine.dead_nodes()))

    async def _failure_detector_loop(self) -> None:
        # Judges liveness half an interval after each round, when that round's replies are
        # in -- on the slots where a sweep could change something. On the others (most of
        # an idle cluster's: a live peer's phi takes seconds to cross the threshold) the
        # loop sleeps on, which is a wake-up per interval less; a sweep there would judge
        # every node as the last one did. What the engine cannot foresee (a message, a
        # local write) moves the alarm earlier (_sweep_news).
        interval = self.config.gossip_interval
        await trio.sleep(interval / 2)
        while True:
            try:
                self._judge_liveness()
            except Exception:
                self._internal_error("failure_detector_loop")
            # The slots count from here, as a sleep of one interval after each sweep would.
            self._sweep_slot = self._now()
            with trio.CancelScope() as alarm:
                self._sweep_alarm = alarm
                alarm.deadline = self._next_sweep_slot()
                await trio.sleep_forever()
            self._sweep_alarm = None

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
            self._sweep_news()

    async def _handle_datagram(self, data: bytes, source: SocketAddress) -> None:
        # The idle node's hot path (several datagrams per peer per round): nothing is built
        # per datagram that a field or an empty check avoids (guarded in
        # tests/node/test_receive_glue.py).
        now = self._now()
        self._budget_source, self._budget_size, self._budget_now = source, len(data), now
        try:
            received = receive_datagram(self.engine, data, now, self._reply_budget_of)
        except Exception:
            # A message our engine cannot digest must never take the node down.
            self.stats.dropped["rejected"] += 1
            self._internal_error("handle_message", f"a message from {source}")
            return
        step = received.step
        if step is None:
            self.stats.count_received(received)
            log.debug("dropped a malformed datagram from %s: %s", source, received.decode_error)
            return
        if source in self.engine.seed_addrs:
            self._seed_heard(source, now)
        self._count_and_report(step, source)
        if step.seen_digest is not None:
            self._note_digest(step.seen_digest, source, now)
        reply = step.reply
        if reply is not None:
            if received.reply_budget is not None and isinstance(reply, (SynAck, Ack)):
                self.stats.small_replies += 1
            await self._send(reply, source, now)
            if self._leave_pending and isinstance(received.message, SynAck):
                self._leave_pending.discard(source)
                if not self._leave_pending:
                    self._leave_done.set()
        if received.events:
            # After the reply: a subscriber woken by an event sees the exchange done.
            self._publish_all(received.events)

    def _record(self, step: Step, source: object) -> None:
        """Act on what a round or a sweep did: count it, log it, publish its events."""
        self._count_and_report(step, source)
        events = step_events(step)
        if events:
            self._publish_all(events)

    def _count_and_report(self, step: Step, source: object) -> None:
        """Count and log what a step refused, outran or repaired: most steps did none of
        it, and are passed over with three checks."""
        if step.refusals or step.heartbeat_outruns or step.self_repairs:
            self.stats.count_step(step)
            self._report(step, source)

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
                self.engine.self_id,
                dict(stats.self_repairs),
                self._repair_log.take_suppressed(),
            )
