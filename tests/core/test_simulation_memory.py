"""What one engine's view of one node (an entry) holds in memory: a simulation of N nodes
holds N^2 entries, so each byte of an entry is 25 MB at 5,000 nodes. The figures are
counts of allocated bytes (tracemalloc), not timings: they do not depend on the load."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from gossip_tui.core.codec import PROTOCOL_V1, decode, encode
from gossip_tui.core.failure_detector import FailureDetector, FailureDetectorConfig
from gossip_tui.core.messages import Delta, Digest, KeyValueMutation, NodeDelta, NodeDigest, SynAck
from gossip_tui.core.models import NodeId
from gossip_tui.core.simulation import Simulation, chitchat_test_name, sim_address
from gossip_tui.core.state import ClusterState, KeyValues, SharedObjects


def _traced_bytes(build: object) -> tuple[int, object]:
    assert callable(build)
    gc.collect()
    tracemalloc.start()
    try:
        built = build()
        gc.collect()
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return held, built


def test_a_preformed_v1_cluster_holds_under_435_bytes_per_entry_after_two_rounds() -> None:
    size = 80

    def build() -> Simulation:
        sim = Simulation(
            size, protocol_version=PROTOCOL_V1, naming=chitchat_test_name, preformed=True
        )
        sim.run(2)
        return sim

    held, sim = _traced_bytes(build)
    assert isinstance(sim, Simulation) and sim.converged()
    # ~2,400 bytes at 80 nodes (2,100 at 300) before the failure detector's windows
    # became arrays, the values and digest entries were shared, and the wire order lost
    # its pairs; ~1,340 after (1,050 at 300). ~755 (570 at 300) once the key-value
    # mappings, the address index's 1-tuples, the wire positions and the windows' equal
    # means were shared, two of the three live sets gone, the window its own array with
    # its sum in it, the round Syns let go, and a node state a slot smaller. ~620 (440 at
    # 600 after 3 rounds) before the detectors' rings held a byte an interval, the
    # detectors one numbering of the nodes, the states the wire order's node lists and
    # a lone node's address entry, and a node state two slots fewer; ~502 after (297).
    # ~460 before a node state lost four more slots (its size and stale node kept with
    # its key-values, its usage and discovery time in its cohort) and a shared state's
    # wire ranks became 2-byte items; ~424 after.
    assert held / size**2 < 435


@pytest.mark.parametrize(("beats", "bound"), [(4, 90), (32, 125)])
def test_a_detector_holds_a_node_s_intervals_in_a_byte_each(beats: int, bound: int) -> None:
    # What an engine's detector holds for each node of a simulation that ran a few rounds
    # (N^2 entries): its row and its intervals (of the default 1,000-interval window),
    # judged live.
    nodes = [NodeId(f"node-{i}", 1, sim_address(i)) for i in range(600)]

    def build() -> FailureDetector:
        detector = FailureDetector(FailureDetectorConfig())
        for t in range(1, beats + 1):
            detector.report_heartbeats(nodes, float(t))
        detector.update_liveness_of(nodes, beats + 0.5)
        return detector

    build()  # the process's shared row numbers, made once, not counted
    held, detector = _traced_bytes(build)
    assert isinstance(detector, FailureDetector)
    assert all(detector.is_live(node) for node in nodes)
    # ~83 bytes a node after 4 heartbeats, ~113 after 32, in columns (the row dict's ~31,
    # a list slot each of the node, the last heartbeat, the mean and the fill, 8 of the
    # sum, a live byte, and a byte a ring slot: a code into the detector's table of the
    # distinct intervals). With a double a slot: ~110 and ~353; as a window object per
    # node ~199 after 4.
    assert held / len(nodes) < bound


def test_a_detector_judging_600_nodes_live_holds_under_40_bytes_a_node_for_it() -> None:
    # What a sweep that finds every node live adds: the live nodes' container alone (the
    # windows were made before). A simulation holds one per engine, N^2 entries.
    nodes = [NodeId(f"node-{i}", 1, sim_address(i)) for i in range(600)]
    detector = FailureDetector(FailureDetectorConfig())
    for t in (1.0, 2.0):
        detector.report_heartbeats(nodes, t)

    def build() -> FailureDetector:
        detector.update_liveness_of(nodes, 2.5)
        return detector

    held, _detector = _traced_bytes(build)
    assert all(detector.is_live(node) for node in nodes)
    # ~31 bytes a node as a dict's keys; ~55 as a set, which grows fourfold (52 at
    # 10,000 nodes, against a dict's 30).
    assert held / len(nodes) < 40


def test_states_of_one_process_that_apply_the_same_decoded_values_share_them() -> None:
    owner = NodeId("owner", 1, sim_address(1))
    mutation = KeyValueMutation("bind", "127.0.0.1:20001", 1)
    datagram = encode(
        SynAck(
            Digest({owner: NodeDigest(5, 0, 1)}),
            Delta((NodeDelta(owner, 0, 0, (mutation,), 1),)),
        )
    )
    shared = SharedObjects(100)
    states = []
    for _ in range(2):
        message = decode(datagram)  # the codec hands out the same decoded mutations
        assert isinstance(message, SynAck)
        state = ClusterState()
        state.shared = shared
        state.node_state_or_init(next(iter(message.digest.nodes)))
        state.apply_delta(message.delta, now=0.0)
        states.append(state)
    values = [state.node_states[owner].key_values["bind"] for state in states]
    assert values[0] == values[1]
    assert values[0] is values[1]


def test_the_engines_of_a_simulation_share_their_digest_entries() -> None:
    sim = Simulation(20, preformed=True)
    sim.run(2)
    node = sim.engine(5).self_id
    entries = {
        id(engine.state.compute_digest().nodes[node])
        for engine in sim.engines.values()
        if engine.self_id is not node
    }
    # Engines that saw the same heartbeat hold one object: one per heartbeat in flight
    # (a few), not one per engine (19).
    assert len(entries) <= 6


def test_the_states_of_a_simulation_share_each_node_s_key_values() -> None:
    sim = Simulation(20, preformed=True)
    sim.run(2)
    node = sim.engine(5).self_id
    mappings = {
        id(engine.state.node_states[node].key_values)
        for engine in sim.engines.values()
        if engine.self_id is not node
    }
    # One mapping per version of the node's keys in circulation, not one per engine (19).
    assert len(mappings) <= 3
    # The address index's entry of a node alone at its address: one tuple for all.
    entries = {
        id(engine.state.nodes_at(node.gossip_addr))
        for engine in sim.engines.values()
        if engine.self_id is not node
    }
    assert len(entries) == 1


def test_a_state_that_writes_to_a_shared_mapping_writes_to_its_own_copy() -> None:
    sim = Simulation(6, preformed=True)
    owner = sim.engine(2)
    a, b = (sim.engine(i).state.node_states[owner.self_id] for i in (3, 4))
    assert a.key_values is b.key_values
    before = dict(b.key_values)
    # A delta of the owner's next version, to one of the two states only.
    owner.self_state.set("extra", "1")
    own = owner.self_state
    mutation = KeyValueMutation("extra", "1", own.max_version)
    a.apply_delta(NodeDelta(owner.self_id, a.max_version, 0, (mutation,), own.max_version), 0.0)
    assert a.get("extra") == "1"
    assert b.get("extra") is None
    assert dict(b.key_values) == before


def test_a_peer_that_leaves_between_sweeps_is_reported_dead_at_the_next_one() -> None:
    # The sweep keeps no copy of the live set: the departures since the last sweep are
    # what tells the next one that a node it had seen live died.
    sim = Simulation(12, preformed=True)
    leaving = sim.engine(3)
    leaving.announce_leave()
    gone = leaving.self_id
    others = [engine for engine in sim.engines.values() if engine is not leaving]

    def everyone_saw_it_leave() -> bool:
        return all(gone in engine.left for engine in others)

    assert sim.rounds_until(everyone_saw_it_leave, limit=10) is not None
    sim.run(1)
    died = [addr for _now, addr, changes in sim.liveness_log if gone in changes.died]
    assert sorted(died) == sorted(engine.self_id.gossip_addr for engine in others)


def test_a_lone_node_shares_nothing() -> None:
    # Outside a simulation there is no SharedObjects: a state's key-values stay its own
    # dict, which it writes in place (no copy on write, no table).
    owner = NodeId("owner", 1, sim_address(1))
    state = ClusterState()
    state.node_state_or_init(owner)
    mutation = KeyValueMutation("bind", "127.0.0.1:20001", 1)
    state.apply_delta(Delta((NodeDelta(owner, 0, 0, (mutation,), 1),)), now=0.0)
    assert type(state.node_states[owner].key_values) is KeyValues
    assert state.nodes_at(owner.gossip_addr) == (owner,)


def test_a_simulation_s_detectors_and_states_share_their_indexes_of_the_nodes() -> None:
    sim = Simulation(12, protocol_version=PROTOCOL_V1, preformed=True)
    sim.run(2)
    engines = list(sim.engines.values())
    # One numbering of the nodes for every detector, one list of the wire order's nodes
    # for every state that holds the same, and no address index entry of a node alone
    # at its address but the engine's own (learnt before it had a process to share with).
    assert len({id(engine.detector._rows) for engine in engines}) == 1
    assert len({id(engine.state._wire_nodes) for engine in engines}) == 1
    assert all(len(engine.state._by_addr) == 1 for engine in engines)
    for engine in engines:
        for node in engine.state.nodes():
            assert engine.state.nodes_at(node.gossip_addr) == (node,)


def test_the_states_of_a_simulation_share_the_stale_key_values_they_keep() -> None:
    # Once a key spread, most states of a simulation keep the node's stale key-values
    # (for the next peer that lacks them): one tuple for every state that took them
    # from the process, not one each (64 bytes a state). Every node writes one (a
    # pre-formed cluster's nodes published their views before it formed: nothing else
    # spreads).
    sim = Simulation(20, protocol_version=PROTOCOL_V1, preformed=True)
    sim.run(1)
    for engine in sim.engines.values():
        engine.self_state.set("key", "value")
    sim.run(4)
    kept = [
        state.key_values.stale
        for engine in sim.engines.values()
        for state in engine.state.node_states.values()
        if state.key_values.stale is not None
    ]
    assert len(kept) > 100
    assert len({id(cache) for cache in kept}) < len(kept) / 4


def test_a_shared_cluster_state_gathers_its_digest_from_its_states() -> None:
    # A state of a shared process keeps no table of its nodes' digest entries beside
    # node_states (a dict slot a node): its digest is gathered from the states, the same
    # digest a lone state copies from its table.
    nodes = [NodeId(chitchat_test_name(i), 1, sim_address(i)) for i in range(600)]
    shared = SharedObjects(8 * len(nodes) + 1_024)

    def build() -> ClusterState:
        state = ClusterState()
        state.shared = shared
        for node in nodes:
            state.node_state_or_init(node).heartbeat = 5
        state.compute_digest()
        return state

    build()  # the process's shared entries, made once, not counted
    held, state = _traced_bytes(build)
    assert isinstance(state, ClusterState)
    lone = ClusterState()
    for node in nodes:
        lone.node_state_or_init(node).heartbeat = 5
    digest = state.compute_digest()
    assert list(digest.nodes.items()) == list(lone.compute_digest().nodes.items())
    assert digest.wire_entries == lone.compute_digest().wire_entries
    # ~234 bytes a node (the states, node_states, the wire order), ~265 with the table.
    # ~140 since a node state holds 8 slots (96 bytes, 128 with 12), no empty mapping of
    # its own (80) and its wire rank in 2 bytes (8): any of those undone passes 144.
    assert held / len(nodes) < 144


def test_the_states_of_a_simulation_hold_one_object_per_digest_entry_in_flight() -> None:
    # Each engine's view of a node lags its own way: some 14 heartbeats of each node are
    # held at a time. A shared table that holds fewer is emptied every few digests, and
    # the states that renew an entry after that made copies of what others still held
    # (4,667 objects for these 2,712 entries with 8 a node).
    sim = Simulation(200, protocol_version=PROTOCOL_V1, naming=chitchat_test_name, preformed=True)
    sim.run(4)
    held = {}
    for engine in sim.engines.values():
        for node, state in engine.state.node_states.items():
            entry = state._entry[0]
            held[id(entry)] = (node, entry.heartbeat, entry.last_gc_version, entry.max_version)
    assert len(held) == len(set(held.values()))


def test_the_states_an_engine_learnt_at_one_moment_share_one_cohort() -> None:
    # A node state's usage and discovery time are its cohort's, one for all the states
    # its cluster state learnt at one moment (a slot each cost 8 bytes a state, N^2 in a
    # simulation): a pre-formed engine learnt every other node at once.
    sim = Simulation(20, protocol_version=PROTOCOL_V1, preformed=True)
    sim.run(1)
    for engine in sim.engines.values():
        peers = [s for node, s in engine.state.node_states.items() if node != engine.self_id]
        assert len({id(state._cohort) for state in peers}) == 1
        assert {state.discovered_at for state in peers} == {peers[0].discovered_at}
        assert peers[0].discovered_at is not None
    # A state learnt later has a cohort of its own moment; the others keep theirs.
    state = ClusterState()
    first, later = (state.node_state_or_init(NodeId(f"n{i}", 1, sim_address(i))) for i in (1, 2))
    first.discovered_at = 1.0
    later.discovered_at = 2.0
    assert (first.discovered_at, later.discovered_at) == (1.0, 2.0)
    assert first._cohort.usage is later._cohort.usage


def test_a_detector_on_shared_rows_holds_no_list_of_its_nodes() -> None:
    # A simulation's detectors number the same nodes alike (one numbering, see
    # FailureDetector): the node of a row is the numbering's, and the detector keeps a
    # byte a row of whether it gave the row out, where a list of the nodes each cost 8.
    nodes = [NodeId(f"node-{i}", 1, sim_address(i)) for i in range(600)]
    rows: dict[NodeId, int] = {}

    def build() -> FailureDetector:
        detector = FailureDetector(FailureDetectorConfig(), rows=rows)
        for t in range(1, 5):
            detector.report_heartbeats(nodes, float(t))
        detector.update_liveness_of(nodes, 4.5)
        return detector

    build()  # the numbering, made once, not counted
    held, detector = _traced_bytes(build)
    assert isinstance(detector, FailureDetector)
    assert sorted(detector.live_nodes(), key=nodes.index) == nodes
    # ~41 bytes a node after 4 heartbeats; ~48 with a list of the nodes.
    assert held / len(nodes) < 44
