"""The partial-digest extension: gossip-tui peers keep gossiping past the size where a
full digest fits in one datagram, and chitchat-like peers never see a partial digest."""

from __future__ import annotations

from gossip_tui.core.codec import PROTOCOL_V0, PROTOCOL_V1, decode, encode
from gossip_tui.core.digest_window import CAPS_KEY, PARTIAL_MARKER, v0_syn_capacity
from gossip_tui.core.engine import GossipEngine, ReceiveStep
from gossip_tui.core.messages import Message, Syn, SynAck
from gossip_tui.core.models import NodeId, SocketAddress
from gossip_tui.core.simulation import Simulation, sim_address

# A tiny datagram forces windows on a cluster small enough for a fast test: about 22
# full-digest entries fit in a Syn of this size.
TINY = 1_200
SIZE = 80


def _spread(sim: Simulation, writer_index: int, limit: int) -> int | None:
    writer = sim.engine(writer_index)
    writer.self_state.set("new-key", "here")

    def everyone_has_it() -> bool:
        return all(
            (state := e.state.node_state(writer.self_id)) is not None
            and state.get("new-key") == "here"
            for e in sim.active()
        )

    return sim.rounds_until(everyone_has_it, limit)


def test_a_full_digest_would_not_fit_here() -> None:
    ids = [NodeId(f"node-{i}", 1, sim_address(i)) for i in range(SIZE)]
    assert v0_syn_capacity(ids, "sim", TINY) < SIZE // 3


def test_partial_digests_spread_a_key_where_full_ones_do_not_fit() -> None:
    for version in (PROTOCOL_V0, PROTOCOL_V1):
        sim = Simulation(
            SIZE, seed=5, preformed=True, protocol_version=version, max_datagram_size=TINY
        )
        assert all(e.self_state.get(CAPS_KEY) == "partial-digest" for e in sim.active())
        rounds = _spread(sim, 77, limit=30)
        assert rounds is not None, version
        assert not sim.traffic.oversize and not sim.traffic.errors
        assert sim.traffic.largest <= TINY
        # Every node also publishes its view key (core.agreement) a few rounds in: 80 new
        # versions that take some rounds of their own through windows this small.
        assert sim.rounds_until(sim.converged, 15) is not None, version


def test_without_the_extension_nothing_gets_through() -> None:
    sim = Simulation(SIZE, seed=5, preformed=True, max_datagram_size=TINY, partial_digests=False)
    assert _spread(sim, 77, limit=5) is None
    # Without the extension the digest bound holds: rather than send Syns that cannot go,
    # a node refuses to learn more nodes than one digest carries (here, none).
    assert not sim.traffic.oversize
    assert all(len(engine.state) == 1 for engine in sim.active())


def test_new_nodes_are_learnt_from_windows() -> None:
    # A node the others have never heard of reaches everyone through partial digests
    # only: each window names it in turn (nodes are learnt from digests).
    sim = Simulation(SIZE, seed=9, preformed=True, max_datagram_size=TINY)
    newcomer = sim.engine(SIZE - 1)
    for engine in sim.active():
        if engine is not newcomer:
            engine.state.remove_node(newcomer.self_id)
            engine.detector.forget(newcomer.self_id)

    def everyone_knows_its_capability() -> bool:
        return all(
            (state := e.state.node_state(newcomer.self_id)) is not None
            and state.get(CAPS_KEY) is not None
            for e in sim.active()
        )

    assert sim.rounds_until(everyone_knows_its_capability, limit=40) is not None
    # Until a peer knows the newcomer's capability it sends it full digests (too large
    # here); from then on, windows only.
    before = dict(sim.traffic.oversize)
    sim.run(3)
    assert dict(sim.traffic.oversize) == before


def _is_partial(message: Message) -> bool:
    return isinstance(message, Syn | SynAck) and PARTIAL_MARKER in message.digest.nodes


def test_a_chitchat_like_peer_never_receives_a_partial_digest() -> None:
    # Every fourth node is chitchat-like: it does not take part in the extension, so it
    # never publishes the capability key. It must only ever be sent full digests (which
    # here do not fit, so it hears nothing: the transport refuses them, as before).
    def gossip_tui_node(index: int) -> bool:
        return index % 4 != 0

    sim = Simulation(
        SIZE, seed=3, preformed=True, max_datagram_size=TINY, partial_digests=gossip_tui_node
    )
    chitchat_like = {sim_address(i) for i in range(0, SIZE, 4)}
    received: dict[SocketAddress, list[Message]] = {a: [] for a in chitchat_like}
    for addr in chitchat_like:
        engine = sim.engines[addr]
        assert engine.self_state.get(CAPS_KEY) is None
        handle = engine.handle_message

        def recording(
            message: Message,
            now: float,
            *,
            reply_budget: int | None = None,
            _log: list[Message] = received[addr],
            _h=handle,
        ) -> ReceiveStep:
            _log.append(message)
            return _h(message, now, reply_budget=reply_budget)

        engine.handle_message = recording  # type: ignore[method-assign]
    sim.run(6)
    assert not any(_is_partial(m) for log in received.values() for m in log)
    # and what the gossip-tui nodes would send them is the full digest, every time
    for engine in sim.active():
        if engine.self_id.gossip_addr in chitchat_like:
            continue
        for addr in chitchat_like:
            syn = engine.create_syn(sim.clock.now, addr)
            assert not _is_partial(decode(encode(syn)))
    # while gossip-tui peers of each other did use windows
    assert any(
        _is_partial(sim.engine(1).create_syn(sim.clock.now, sim_address(i))) for i in (2, 3, 5)
    )


def test_the_digest_capacity_per_peer() -> None:
    sim = Simulation(
        SIZE,
        seed=3,
        preformed=True,
        max_datagram_size=TINY,
        partial_digests=lambda i: i != 0,
    )
    engine = sim.engine(1)
    assert engine.digest_capacity(sim_address(2)) is None  # windows: no limit
    ids = [e.self_id for e in sim.engines.values()]
    capacity = engine.digest_capacity(sim_address(0))
    assert capacity is not None
    # From the average entry: within one entry of the exact count for these ids.
    assert abs(capacity - v0_syn_capacity(sorted(ids), "sim", TINY)) <= 1


def test_small_clusters_never_publish_the_capability() -> None:
    sim = Simulation(20, seed=1)
    sim.run(15)
    assert sim.converged()
    assert all(e.self_state.get(CAPS_KEY) is None for e in sim.active())


def test_a_forged_marker_from_a_stranger_does_not_break_the_engine() -> None:
    engine = GossipEngine(NodeId("a", 1, sim_address(1)), "sim", now=0.0)
    other = GossipEngine(NodeId("b", 1, sim_address(2)), "sim", now=0.0)
    syn = other.create_syn(1.0)
    nodes = dict(syn.digest.nodes)
    nodes[PARTIAL_MARKER] = nodes[other.self_id]
    forged = decode(encode(Syn("sim", type(syn.digest)(nodes))))
    reply = engine.handle_message(forged, 1.0).reply
    assert isinstance(reply, SynAck)
    assert engine.state.node_state(PARTIAL_MARKER) is None  # never learnt as a node


def test_naming_changed_and_wanted_nodes_keeps_the_spread_fast() -> None:
    # A window holds about a quarter of this cluster: with the rotation alone a new key
    # would wait for its writer's turn in the windows (7 rounds at the median here).
    # Naming the nodes one saw change, and those one is behind on, makes it push-pull
    # again.
    rounds = []
    for seed in range(4):
        sim = Simulation(SIZE, seed=seed, preformed=True, max_datagram_size=TINY)
        rounds.append(_spread(sim, 33, limit=40))
    assert None not in rounds
    assert sorted(r for r in rounds if r is not None)[1] <= 5
