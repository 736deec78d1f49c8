from __future__ import annotations

import ipaddress
import random

from gossip_tui.core.codec import MAX_DATAGRAM_SIZE, encode
from gossip_tui.core.engine import GossipEngine, fits_in_one_delta, select_gossip_targets
from gossip_tui.core.failure_detector import FailureDetectorConfig
from gossip_tui.core.messages import Digest, NodeDigest, Syn, SynAck
from gossip_tui.core.models import Liveness, NodeId, SocketAddress


def addr(i: int) -> SocketAddress:
    return SocketAddress.parse(f"127.0.0.1:{10_000 + i}")


def node(i: int, generation: int = 1) -> NodeId:
    return NodeId(f"node-{i}", generation, addr(i))


def test_heartbeat_starts_at_one_and_grows() -> None:
    engine = GossipEngine(node(0), "c", now=0.0)
    assert engine.self_state.heartbeat == 1
    engine.start_round(1.0)
    assert engine.self_state.heartbeat == 2
    engine.handle_message(Syn("c", Digest()), 1.5)
    assert engine.self_state.heartbeat == 3


def test_no_live_peer_means_any_peer_and_always_a_seed() -> None:
    rng = random.Random(3)
    peers = {addr(i) for i in range(1, 6)}
    targets = select_gossip_targets(rng, peers, set(), set(), {addr(9)})
    assert len(targets.peers) == 3 and set(targets.peers) <= peers
    assert targets.seed == addr(9)
    assert targets.dead is None


def test_seed_skipped_when_enough_live_nodes_include_a_seed() -> None:
    rng = random.Random(3)
    live = {addr(1), addr(2)}
    seeds = {addr(1), addr(2)}
    for _ in range(50):
        targets = select_gossip_targets(rng, live, live, set(), seeds)
        assert targets.seed is None


def test_dead_node_probability_follows_dead_over_live_plus_one() -> None:
    rng = random.Random(11)
    live = {addr(i) for i in range(1, 4)}
    dead = {addr(7)}
    picks = sum(
        select_gossip_targets(rng, live | dead, live, dead, set()).dead is not None
        for _ in range(4000)
    )
    assert abs(picks / 4000 - 1 / 4) < 0.03


def _beat(engine: GossipEngine, peer: NodeId, heartbeat: int, now: float) -> None:
    engine.handle_message(Syn("c", Digest({peer: NodeDigest(heartbeat, 0, 0)})), now)


def test_three_rising_heartbeats_make_a_node_live() -> None:
    engine = GossipEngine(node(0), "c", now=0.0)
    _beat(engine, node(1), 1, 1.0)
    engine.update_liveness(1.0)
    assert engine.liveness(node(1), 1.0) is Liveness.DEAD
    _beat(engine, node(1), 2, 2.0)
    engine.update_liveness(2.0)
    assert engine.liveness(node(1), 2.0) is Liveness.DEAD
    _beat(engine, node(1), 3, 3.0)
    changes = engine.update_liveness(3.0).liveness
    assert changes.joined == (node(1),)
    assert engine.live_nodes() == [node(0), node(1)]


def test_dead_node_lifecycle_and_no_resurrection_by_old_heartbeat() -> None:
    config = FailureDetectorConfig(dead_node_grace_period=100.0)
    engine = GossipEngine(node(0), "c", now=0.0, failure_detector=config)
    for hb in range(1, 5):
        _beat(engine, node(1), hb, float(hb))
    engine.update_liveness(4.0)
    assert engine.liveness(node(1), 4.0) is Liveness.LIVE
    changes = engine.update_liveness(200.0).liveness
    assert changes.died == (node(1),)
    assert engine.liveness(node(1), 200.0) is Liveness.DEAD
    # Past half the grace period it is no longer gossiped about.
    assert engine.liveness(node(1), 251.0) is Liveness.SCHEDULED_FOR_DELETION
    assert node(1) not in engine.create_syn(251.0).digest.nodes
    changes = engine.update_liveness(300.0).liveness
    assert changes.removed == (node(1),)
    assert engine.state.node_state(node(1)) is None
    # A peer echoing the old heartbeat does not bring it back; a newer one does.
    _beat(engine, node(1), 4, 301.0)
    assert engine.state.node_state(node(1)) is None
    _beat(engine, node(1), 5, 302.0)
    assert engine.state.node_state(node(1)) is not None


def test_synack_budget_leaves_room_for_header_and_digest() -> None:
    engine = GossipEngine(node(0), "c", now=0.0)
    me = engine.self_state
    rnd = random.Random(5)
    alphabet = [chr(c) for c in range(0x21, 0x7F)]
    for i in range(700):
        me.set(f"k{i}", "".join(rnd.choice(alphabet) for _ in range(120)))
    reply = engine.handle_message(Syn("c", Digest()), 1.0).reply
    assert isinstance(reply, SynAck)
    assert len(encode(reply)) <= 65_507
    assert 0 < len(reply.delta.node_deltas[0].key_values) < 700


def test_snapshot_lists_every_node_with_liveness() -> None:
    engine = GossipEngine(node(0), "c", now=0.0, initial_key_values={"bind": "x"})
    _beat(engine, node(1), 1, 1.0)
    engine.update_liveness(1.0)
    snap = engine.snapshot(1.0)
    assert snap.cluster_id == "c" and snap.self_node == node(0)
    assert [n.node for n in snap.nodes] == [node(0), node(1)]
    assert snap.nodes[0].liveness is Liveness.SELF
    assert snap.nodes[0].visible_items() == {"bind": "x"}
    assert snap.live_nodes == (node(0),) and snap.dead_nodes == (node(1),)


def test_liveness_readings_match_the_snapshot_without_the_keys() -> None:
    engine = GossipEngine(node(0), "c", now=0.0, initial_key_values={"bind": "x"})
    for heartbeat in (1, 2, 3):
        _beat(engine, node(1), heartbeat, float(heartbeat))
    engine.update_liveness(3.0)
    readings = engine.liveness_readings(3.5)
    assert readings.taken_at == 3.5
    snap = engine.snapshot(3.5)
    by_node = {reading.node: reading for reading in readings.nodes}
    assert set(by_node) == {node(0), node(1)}
    for full in snap.nodes:
        reading = by_node[full.node]
        assert (reading.liveness, reading.heartbeat, reading.max_version) == (
            full.liveness,
            full.heartbeat,
            full.max_version,
        )
        assert (reading.phi, reading.last_update) == (full.phi, full.last_update)
    assert by_node[node(0)].liveness is Liveness.SELF and by_node[node(0)].phi is None
    assert by_node[node(1)].liveness is Liveness.LIVE and by_node[node(1)].phi is not None
    assert by_node[node(0)].max_version == 1


def test_node_snapshot_is_one_node_of_the_snapshot() -> None:
    engine = GossipEngine(node(0), "c", now=0.0, initial_key_values={"bind": "x"})
    _beat(engine, node(1), 1, 1.0)
    snap = engine.snapshot(1.0)
    assert engine.node_snapshot(node(0), 1.0) == snap.nodes[0]
    assert engine.node_snapshot(node(1), 1.0) == snap.nodes[1]
    assert engine.node_snapshot(node(2), 1.0) is None
    # A copy: the state moving on does not change what was read.
    mine = engine.node_snapshot(node(0), 1.0)
    engine.self_state.set("role", "db")
    assert mine is not None and "role" not in mine.key_values


def test_a_delta_about_ourselves_is_refused() -> None:
    from gossip_tui.core.messages import Ack, Delta, KeyValueMutation, NodeDelta

    engine = GossipEngine(node(0), "c", now=0.0, initial_key_values={"role": "db"})
    forged = NodeDelta(node(0), 0, 0, (KeyValueMutation("role", "pwned", 99),), 99)
    other = NodeDelta(node(1), 0, 0, (KeyValueMutation("k", "v", 1),), 1)
    _beat(engine, node(1), 1, 0.5)
    engine.handle_message(Ack(Delta((forged, other))), 1.0)
    assert engine.self_state.get("role") == "db"
    assert engine.self_state.max_version == 1
    assert engine.state.rejected["self_delta"] == 1
    peer = engine.state.node_state(node(1))
    assert peer is not None and peer.get("k") == "v"  # the rest of the delta still applies


def test_fits_in_one_delta_is_the_exact_ack_budget() -> None:
    # An Ack has 4 header bytes, so its delta may take 65,503. Node "node-0" at an IPv4
    # address costs a 40-byte operation; key "k" with a value of n bytes a (15 + n)-byte
    # one; the bound adds two 3-byte block headers and the end byte:
    # 3 + 40 + 3 + 15 + n + 1 <= 65,503.
    node = NodeId("node-0", 1, SocketAddress.parse("127.0.0.1:7000"))
    largest = 65_503 - 62
    assert fits_in_one_delta(node, "k", "v" * largest)
    assert not fits_in_one_delta(node, "k", "v" * (largest + 1))
    # A sealed datagram leaves less room; a value past the u16 length field never fits.
    assert not fits_in_one_delta(node, "k", "v" * largest, MAX_DATAGRAM_SIZE - 28)
    assert not fits_in_one_delta(node, "k", "v" * 70_000, 10 * MAX_DATAGRAM_SIZE)


def _addrs(first: int, count: int) -> set[SocketAddress]:
    return {SocketAddress(ipaddress.IPv4Address("127.0.0.1"), first + i) for i in range(count)}


def test_a_flood_of_made_up_live_nodes_never_crowds_out_the_peers_that_answer() -> None:
    # Attack: ~1,000 made-up ids with rising heartbeats look live; with three random picks
    # a real peer was chosen about once in 170 rounds and a new key stalled for ~40 s.
    fakes = _addrs(30_000, 1_000)
    real = _addrs(20_000, 2)
    live = fakes | real
    rng = random.Random(7)
    for _ in range(200):
        targets = select_gossip_targets(
            rng, live, live, set(), set(), answering=lambda addr: addr in real
        )
        assert real & set(targets.peers)


def test_answering_changes_nothing_when_a_pick_already_answered() -> None:
    live = _addrs(20_000, 10)
    picks = [
        select_gossip_targets(random.Random(seed), live, live, set(), set()).peers
        for seed in range(20)
    ]
    guarded = [
        select_gossip_targets(
            random.Random(seed), live, live, set(), set(), answering=lambda addr: True
        ).peers
        for seed in range(20)
    ]
    assert guarded == picks
