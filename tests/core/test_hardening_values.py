"""Forged values near the u64 edge, and a node repairing a view of itself it never wrote.

Everything here crosses the real codec: what one engine sends is encoded to the bytes a
chitchat peer would receive, and decoded again by the other engine.
"""

from __future__ import annotations

import pytest

from gossip_tui.core.codec import U64_MAX, DeltaWriter, EncodeError, decode, encode
from gossip_tui.core.engine import (
    HEADROOM_CEILING,
    LEAVING_KEY,
    REPAIR_HEARTBEAT_AT_EDGE,
    REPAIR_STATE_AHEAD,
    REPAIR_VERSIONS_AT_EDGE,
    GossipEngine,
)
from gossip_tui.core.messages import Ack, Digest, Message, NodeDigest, Syn, SynAck
from gossip_tui.core.models import KeyStatus, Liveness, NodeId, SocketAddress
from gossip_tui.core.simulation import Simulation
from gossip_tui.core.state import NodeState, key_value_cost

CLUSTER = "c"


def _node(i: int, generation: int = 1) -> NodeId:
    return NodeId(f"node-{i}", generation, SocketAddress.parse(f"127.0.0.1:{10_000 + i}"))


def _wire(message: Message) -> Message:
    """What the receiver gets: the exact bytes, decoded."""
    return decode(encode(message))


def _handshake(initiator: GossipEngine, responder: GossipEngine, now: float) -> None:
    """One Syn / SynAck / Ack exchange, every message through the codec."""
    syn_ack = responder.handle_message(_wire(initiator.create_syn(now)), now).reply
    assert isinstance(syn_ack, SynAck)
    ack = initiator.handle_message(_wire(syn_ack), now).reply
    assert isinstance(ack, Ack)
    responder.handle_message(_wire(ack), now)


def _view(engine: GossipEngine, node: NodeId) -> tuple[int, dict[str, str]] | None:
    state = engine.state.node_state(node)
    if state is None:
        return None
    return state.max_version, {key: value.value for key, value in state.visible_items()}


def _truth(engine: GossipEngine) -> tuple[int, dict[str, str]]:
    view = _view(engine, engine.self_id)
    assert view is not None
    return view


def _forge(
    target: GossipEngine,
    victim: NodeId,
    kvs: list[tuple[str, str, int]],
    *,
    from_version: int | None = None,
    last_gc_version: int = 0,
    max_version: int | None = None,
) -> None:
    """Deliver to ``target`` an Ack, as any host on the network could, about ``victim``."""
    state = target.state.node_state(victim)
    assert state is not None
    writer = DeltaWriter(60_000)
    start = state.max_version if from_version is None else from_version
    assert writer.try_add_node(victim, last_gc_version, start)
    for key, value, version in kvs:
        assert writer.try_add_kv(key, value, version, KeyStatus.SET)
    if max_version is not None:
        assert writer.try_set_max_version(max_version)
    target.handle_message(_wire(Ack(writer.finish())), 1.0)


def _pair() -> tuple[GossipEngine, GossipEngine]:
    owner = GossipEngine(_node(0), CLUSTER, now=0.0, initial_key_values={"role": "db", "zone": "a"})
    peer = GossipEngine(_node(1), CLUSTER, now=0.0, initial_key_values={"role": "web"})
    _handshake(owner, peer, 0.5)
    assert _view(peer, owner.self_id) == _truth(owner)
    return owner, peer


# --------------------------------------------------------------------------- u64 arithmetic


def test_a_number_past_u64_is_an_encode_error_not_a_struct_error() -> None:
    syn = Syn(CLUSTER, Digest({_node(0): NodeDigest(U64_MAX + 1, 0, 0)}))
    with pytest.raises(EncodeError):
        encode(syn)


def test_our_heartbeat_and_versions_saturate_at_the_u64_edge() -> None:
    engine = GossipEngine(_node(0), CLUSTER, now=0.0)
    me = engine.self_state
    me.heartbeat = U64_MAX
    me.max_version = U64_MAX
    engine.handle_message(Syn(CLUSTER, Digest()), 1.0)  # a message beats our heart
    me.set("k", "v")
    assert me.heartbeat == U64_MAX
    assert me.get("k") == "v" and me.max_version == U64_MAX
    encode(engine.create_syn(1.0))  # still fits the wire


def test_a_heartbeat_of_ours_reported_at_u64_max_makes_a_new_generation() -> None:
    # Finding 1: jumping past 2^64-1 overflowed the next tick and killed the node.
    engine = GossipEngine(_node(0), CLUSTER, now=0.0, initial_key_values={"role": "db"})
    old = engine.self_id
    forged = Syn(CLUSTER, Digest({old: NodeDigest(U64_MAX, 0, 1)}))
    engine.handle_message(_wire(forged), 1.0)
    assert engine.self_id == NodeId(old.node_id, old.generation + 1, old.gossip_addr)
    assert engine.self_repairs[REPAIR_HEARTBEAT_AT_EDGE] == 1
    assert engine.self_state.get("role") == "db"
    for round_ in range(1, 5):
        engine.start_round(1.0 + round_)
    assert engine.self_state.heartbeat < 10
    encode(engine.create_syn(5.0))
    # The old identity, still echoed by peers, does not come back as a peer of ours.
    engine.handle_message(_wire(forged), 6.0)
    assert old not in engine.state.node_states
    assert engine.self_repairs.total() == 1


@pytest.mark.parametrize("reported", [U64_MAX - 3000, HEADROOM_CEILING])
def test_a_time_bomb_heartbeat_is_not_followed(reported: int) -> None:
    engine = GossipEngine(_node(0), CLUSTER, now=0.0)
    forged = Syn(CLUSTER, Digest({engine.self_id: NodeDigest(reported, 0, 0)}))
    engine.handle_message(_wire(forged), 1.0)
    assert engine.self_id.generation == 2
    assert engine.self_state.heartbeat < HEADROOM_CEILING // 2**32
    assert engine.outrun_heartbeats == 0


def test_a_heartbeat_reported_a_little_ahead_is_still_outrun() -> None:
    engine = GossipEngine(_node(0), CLUSTER, now=0.0)
    forged = Syn(CLUSTER, Digest({engine.self_id: NodeDigest(HEADROOM_CEILING - 1, 0, 0)}))
    engine.handle_message(_wire(forged), 1.0)
    assert engine.self_id.generation == 1
    assert engine.self_state.heartbeat == HEADROOM_CEILING
    assert engine.outrun_heartbeats == 1


def test_republish_numbers_live_keys_above_the_floor_and_drops_tombstones() -> None:
    state = NodeState(_node(0))
    state.set("a", "1")
    state.set("b", "2")
    state.delete("a", 0.0)
    state.set_with_ttl("c", "3", 0.0)
    state.republish(state.stale_key_values(0), 100, announce=False)
    assert state.last_gc_version == 100
    assert {k: (v.version, v.status) for k, v in state.key_values.items()} == {
        "b": (101, KeyStatus.SET),
        "c": (102, KeyStatus.DELETE_AFTER_TTL),
    }
    assert state.max_version == 102
    assert state.size == key_value_cost("b", "2") + key_value_cost("c", "3")


# --------------------------------------------------------------------------- self-repair


def test_forged_keys_are_detected_and_undone() -> None:
    owner, peer = _pair()
    _forge(peer, owner.self_id, [("role", "pwned", 10), ("evil", "1", 11)])
    assert _view(peer, owner.self_id) == (11, {"role": "pwned", "zone": "a", "evil": "1"})
    _handshake(peer, owner, 2.0)  # the owner sees the forged view in the peer's Syn
    assert owner.self_repairs[REPAIR_STATE_AHEAD] == 1
    assert owner.self_state.last_gc_version > 11
    _handshake(owner, peer, 3.0)
    assert _view(peer, owner.self_id) == _truth(owner)
    assert _truth(owner)[1] == {"role": "db", "zone": "a"}
    # Converged: no further repair, and later writes of the owner travel as usual.
    owner.self_state.set("role", "cache")
    _handshake(owner, peer, 4.0)
    _handshake(peer, owner, 5.0)
    assert _view(peer, owner.self_id) == _truth(owner)
    assert owner.self_repairs.total() == 1


def test_the_repair_is_seen_in_a_synack_digest_too() -> None:
    owner, peer = _pair()
    _forge(peer, owner.self_id, [("role", "pwned", 10)])
    _handshake(owner, peer, 2.0)  # the forged view comes back in the SynAck
    assert owner.self_repairs[REPAIR_STATE_AHEAD] == 1
    _handshake(owner, peer, 3.0)
    assert _view(peer, owner.self_id) == _truth(owner)


def test_the_repair_delta_takes_chitchats_reset_path() -> None:
    # chitchat resets a node's state when a delta from version 0 carries a
    # last_gc_version above both its last_gc_version and its max_version for that node.
    owner, peer = _pair()
    _forge(peer, owner.self_id, [("role", "pwned", 10)])
    # The reply to the very Syn that shows the forged view already carries the truth.
    syn_ack = owner.handle_message(_wire(peer.create_syn(2.0)), 2.0).reply
    assert isinstance(syn_ack, SynAck)
    (node_delta,) = [nd for nd in syn_ack.delta.node_deltas if nd.node == owner.self_id]
    assert node_delta.from_version_excluded == 0
    assert node_delta.last_gc_version > 10
    assert node_delta.max_version >= node_delta.last_gc_version
    assert decode(encode(syn_ack)) == syn_ack


def test_a_version_frozen_at_u64_max_is_undone_by_a_new_generation() -> None:
    owner, peer = _pair()
    old = owner.self_id
    _forge(peer, old, [("role", "frozen", U64_MAX)])
    _handshake(peer, owner, 2.0)
    assert owner.self_repairs[REPAIR_VERSIONS_AT_EDGE] == 1
    assert owner.self_id.generation == old.generation + 1
    assert _truth(owner) == (2, {"role": "db", "zone": "a"})
    for step in range(3):
        _handshake(owner, peer, 3.0 + step)
    assert _view(peer, owner.self_id) == _truth(owner)
    # The frozen old identity stays a stale ghost at the peer; it never comes back to us.
    assert old not in owner.state.node_states


def test_a_forged_reset_is_undone() -> None:
    owner, peer = _pair()
    _forge(peer, owner.self_id, [], from_version=0, last_gc_version=50, max_version=50)
    assert _view(peer, owner.self_id) == (50, {})
    _handshake(peer, owner, 2.0)
    assert owner.self_repairs[REPAIR_STATE_AHEAD] == 1
    _handshake(owner, peer, 3.0)
    assert _view(peer, owner.self_id) == _truth(owner)
    assert _truth(owner)[1] == {"role": "db", "zone": "a"}


def test_a_forged_leaving_marker_is_undone_and_the_node_is_live_again() -> None:
    owner, peer = _pair()
    now = 1.0
    for _ in range(4):  # the peer sees the owner live
        now += 1.0
        owner.start_round(now)
        _handshake(owner, peer, now)
        peer.update_liveness(now)
    assert peer.liveness(owner.self_id, now) is Liveness.LIVE
    _forge(peer, owner.self_id, [(LEAVING_KEY, "1", 10)])
    assert peer.liveness(owner.self_id, now) is Liveness.LEFT
    for _ in range(6):
        now += 1.0
        owner.start_round(now)
        _handshake(owner, peer, now)
        peer.update_liveness(now)
    assert owner.self_repairs[REPAIR_STATE_AHEAD] == 1
    assert _view(peer, owner.self_id) == _truth(owner)
    assert peer.liveness(owner.self_id, now) is Liveness.LIVE


def test_a_whole_cluster_converges_back_to_the_owners_truth() -> None:
    sim = Simulation(5, seed=3)
    assert sim.rounds_until(sim.converged, 30) is not None
    owner, forger_target = sim.engine(0), sim.engine(3)
    truth = _truth(owner)
    top = forger_target.state.node_states[owner.self_id].max_version
    _forge(forger_target, owner.self_id, [("bind", "pwned", top + 5), (LEAVING_KEY, "1", top + 6)])
    # The forged view spreads from peer to peer before the owner hears of it...
    sim.run(1)
    # ...and the owner's truth wins everywhere.
    assert sim.rounds_until(sim.converged, 30) is not None
    assert _truth(owner)[1] == truth[1]
    assert owner.self_repairs[REPAIR_STATE_AHEAD] >= 1
    for engine in sim.active():
        assert owner.self_id not in engine.left
    # Quiet again: no repair once everyone holds the truth.
    repairs = owner.self_repairs.total()
    sim.run(10)
    assert owner.self_repairs.total() == repairs


@pytest.mark.parametrize("field", ["heartbeat", "max_version"])
def test_a_round_past_the_ceiling_takes_a_new_generation(field: str) -> None:
    # The last line of defence, whatever path brought our own counters there.
    engine = GossipEngine(_node(0), CLUSTER, now=0.0, initial_key_values={"role": "db"})
    setattr(engine.self_state, field, HEADROOM_CEILING)
    engine.start_round(1.0)
    assert engine.self_id.generation == 2
    assert engine.self_state.heartbeat < 10 and engine.self_state.max_version == 1
    reason = REPAIR_HEARTBEAT_AT_EDGE if field == "heartbeat" else REPAIR_VERSIONS_AT_EDGE
    assert engine.self_repairs == {reason: 1}
