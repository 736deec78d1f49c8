"""Large clusters in the deterministic simulation: pre-formed clusters, protocol V1, and
the exact point where a version-0 Syn stops fitting in one datagram."""

from __future__ import annotations

import math
from unittest import mock

from gossip_tui.core.codec import MAX_DATAGRAM_SIZE, PROTOCOL_V0, PROTOCOL_V1, encode
from gossip_tui.core.digest_window import v0_syn_capacity
from gossip_tui.core.engine import GossipEngine
from gossip_tui.core.models import NodeId
from gossip_tui.core.simulation import Simulation, sim_address


def _spread_rounds(sim: Simulation, writer_index: int, limit: int) -> int | None:
    writer = sim.engine(writer_index)
    writer.self_state.set("new-key", "here")

    def everyone_has_it() -> bool:
        return all(
            (state := e.state.node_state(writer.self_id)) is not None
            and state.get("new-key") == "here"
            for e in sim.active()
        )

    return sim.rounds_until(everyone_has_it, limit)


def test_a_preformed_cluster_starts_converged_with_everyone_live() -> None:
    sim = Simulation(30, seed=4, preformed=True)
    assert sim.converged()
    for engine in sim.active():
        assert len(engine.live_nodes()) == 30
        assert not engine.state.rejected
    sim.run(3)
    assert sim.converged()
    assert all(len(e.live_nodes()) == 30 for e in sim.active())


def test_two_hundred_nodes_in_v1_spread_a_new_key_within_log3_n_plus_3_rounds() -> None:
    sim = Simulation(200, seed=7, preformed=True, protocol_version=PROTOCOL_V1)
    rounds = _spread_rounds(sim, 123, limit=20)
    assert rounds is not None and rounds <= math.log(200, 3) + 3
    assert sim.traffic.by_kind["Syn"] > 0
    assert not sim.traffic.oversize and not sim.traffic.errors
    assert sim.converged()


def _one_round_of(size: int, max_datagram_size: int) -> Simulation:
    # chitchat's behaviour: only full digests, and no bound on the nodes a digest names
    # (a gossip-tui node refuses to learn past it; that is what this capacity measures).
    with mock.patch("gossip_tui.core.engine.max_digest_bytes", lambda *_args: None):
        sim = Simulation(
            size,
            seed=2,
            preformed=True,
            protocol_version=PROTOCOL_V0,
            max_datagram_size=max_datagram_size,
            partial_digests=False,
        )
    sim.run(1)
    return sim


def test_v0_capacity_n_nodes_fit_one_datagram_and_n_plus_one_do_not() -> None:
    # A small datagram keeps the clusters small; the rule is the same at 65,507 bytes.
    limit = 3_000
    ids = [NodeId(f"node-{i}", 1, sim_address(i)) for i in range(200)]
    fitting = v0_syn_capacity(ids, "sim", limit)
    assert 20 < fitting < 200

    fits = _one_round_of(fitting, limit)
    assert not fits.traffic.oversize
    assert fits.traffic.largest <= limit
    syn = encode(fits.engine(0).create_syn(fits.clock.now))
    assert len(syn) <= limit

    too_many = _one_round_of(fitting + 1, limit)
    assert too_many.traffic.oversize["Syn"] > 0
    assert too_many.traffic.by_kind["Syn"] == 0  # not one Syn could be sent
    assert too_many.traffic.largest_oversize > limit


def test_v0_capacity_at_the_udp_limit_matches_the_entry_sizes() -> None:
    ids = [NodeId(f"node-{i}", 1, sim_address(i)) for i in range(2_000)]
    fitting = v0_syn_capacity(ids, "sim", MAX_DATAGRAM_SIZE)
    # node-0..node-9 take 6 bytes of name, node-10..99 7, then 8, 9: each entry is the
    # name, 2 bytes of length, 8 of generation, 5 of IPv4, 2 of port and 24 of u64s.
    room = MAX_DATAGRAM_SIZE - 4 - 2 - 5 - 2  # header, cluster id "sim", digest count
    sizes = [41 + len(f"node-{i}") for i in range(2_000)]
    expected = next(n for n in range(2_000) if sum(sizes[: n + 1]) > room)
    assert fitting == expected
    engine = GossipEngine(ids[0], "sim", now=0.0, partial_digests=False)
    for node in ids[1:fitting]:
        engine.state.node_state_or_init(node)
    assert len(encode(engine.create_syn(1.0))) <= MAX_DATAGRAM_SIZE
    engine.state.node_state_or_init(ids[fitting])
    assert len(encode(engine.create_syn(1.0))) > MAX_DATAGRAM_SIZE


def test_an_oversize_own_digest_is_counted_not_raised() -> None:
    # The responder knows too many nodes for its digest to leave room for any delta: it
    # cannot answer (chitchat-style full digest), and says so instead of raising.
    limit = 2_000
    ids = [NodeId(f"node-{i}", 1, sim_address(i)) for i in range(100)]
    responder = GossipEngine(ids[0], "sim", now=0.0, max_datagram_size=limit)
    for node in ids[1:]:
        responder.state.node_state_or_init(node)
    asker = GossipEngine(ids[1], "sim", now=0.0, max_datagram_size=limit)
    assert responder.handle_message(asker.create_syn(1.0), 1.0).reply is None
    assert responder.oversize_digests == 1
