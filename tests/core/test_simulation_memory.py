"""What one engine's view of one node (an entry) holds in memory: a simulation of N nodes
holds N^2 entries, so each byte of an entry is 25 MB at 5,000 nodes. The figures are
counts of allocated bytes (tracemalloc), not timings: they do not depend on the load."""

from __future__ import annotations

import gc
import tracemalloc

from gossip_tui.core.codec import PROTOCOL_V1, decode, encode
from gossip_tui.core.failure_detector import SamplingWindow
from gossip_tui.core.messages import Delta, Digest, KeyValueMutation, NodeDelta, NodeDigest, SynAck
from gossip_tui.core.models import NodeId
from gossip_tui.core.simulation import Simulation, chitchat_test_name, sim_address
from gossip_tui.core.state import ClusterState, SharedObjects


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


def test_a_preformed_v1_cluster_holds_under_1500_bytes_per_entry_after_two_rounds() -> None:
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
    # its pairs; ~1,300 after (1,000 at 300).
    assert held / size**2 < 1_500


def test_a_heartbeat_window_with_a_few_samples_takes_under_300_bytes() -> None:
    def build() -> list[SamplingWindow]:
        windows = [SamplingWindow(1_000, 10.0, 5.0) for _ in range(1_000)]
        for window in windows:
            for t in (1.0, 2.0, 3.0):
                window.report_heartbeat(t)
        return windows

    held, _windows = _traced_bytes(build)
    # ~230 bytes; a deque with a bound took a 64-slot block (760 bytes) from its first
    # sample, and 32 bytes per float in it.
    assert held / 1_000 < 300


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
