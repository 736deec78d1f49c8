"""A node that left stays *left* (not dead) for the whole dead-node grace period, until it
is removed: past half of it the node is no longer gossiped about, but it did not die."""

from __future__ import annotations

from gossip_tui.api._counts import NodeCounts
from gossip_tui.core.engine import GossipEngine
from gossip_tui.core.failure_detector import FailureDetectorConfig
from gossip_tui.core.messages import Ack, SynAck
from gossip_tui.core.models import Liveness, NodeId, SocketAddress

CLUSTER = "c"
GRACE = 100.0


def _engine(i: int) -> GossipEngine:
    node = NodeId(f"node-{i}", 1, SocketAddress.parse(f"127.0.0.1:{10_000 + i}"))
    config = FailureDetectorConfig(dead_node_grace_period=GRACE)
    return GossipEngine(node, CLUSTER, now=0.0, failure_detector=config)


def _handshake(initiator: GossipEngine, responder: GossipEngine, now: float) -> None:
    syn_ack = responder.handle_message(initiator.create_syn(now), now).reply
    assert isinstance(syn_ack, SynAck)
    ack = initiator.handle_message(syn_ack, now).reply
    assert isinstance(ack, Ack)
    responder.handle_message(ack, now)


def _left_at_peer() -> tuple[GossipEngine, GossipEngine, float]:
    """A peer that saw ``leaver`` live, then its goodbye; returns the time it left."""
    leaver, peer = _engine(0), _engine(1)
    now = 0.0
    for _ in range(5):
        now += 1.0
        leaver.start_round(now)
        _handshake(leaver, peer, now)
        peer.update_liveness(now)
    assert peer.liveness(leaver.self_id, now) is Liveness.LIVE
    leaver.announce_leave()
    _handshake(leaver, peer, now)
    assert peer.liveness(leaver.self_id, now) is Liveness.LEFT
    return leaver, peer, now


def test_a_left_node_past_half_the_grace_period_is_still_left() -> None:
    leaver, peer, left_at = _left_at_peer()
    for now in (left_at + GRACE / 2 + 1.0, left_at + GRACE - 1.0):
        peer.update_liveness(now)
        assert peer.liveness(leaver.self_id, now) is Liveness.LEFT
        counts = NodeCounts.of(peer.snapshot(now))
        assert (counts.live, counts.dead, counts.left) == (1, 0, 1)
        # Past half the grace period it is no longer gossiped about, left or dead.
        assert leaver.self_id not in peer.create_syn(now).digest.nodes
    peer.update_liveness(left_at + GRACE)
    assert peer.state.node_state(leaver.self_id) is None  # removed at the grace period's end


def test_a_dead_node_past_half_the_grace_period_is_scheduled_for_deletion() -> None:
    # The other side of the fix: a node that died without a word still moves on.
    quiet, peer = _engine(0), _engine(1)
    now = 0.0
    for _ in range(5):
        now += 1.0
        quiet.start_round(now)
        _handshake(quiet, peer, now)
        peer.update_liveness(now)
    now += 60.0
    peer.update_liveness(now)
    assert peer.liveness(quiet.self_id, now) is Liveness.DEAD
    now += GRACE / 2 + 1.0
    peer.update_liveness(now)
    assert peer.liveness(quiet.self_id, now) is Liveness.SCHEDULED_FOR_DELETION
