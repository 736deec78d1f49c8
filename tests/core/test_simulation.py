"""Whole-cluster behaviour in the deterministic simulation (manual clock, real codec)."""

from __future__ import annotations

from gossip_tui.core.failure_detector import FailureDetectorConfig
from gossip_tui.core.models import KeyStatus
from gossip_tui.core.simulation import Simulation


def test_fifty_nodes_converge_and_spread_a_key() -> None:
    sim = Simulation(50, seed=42)
    assert sim.rounds_until(sim.converged, limit=30) is not None
    # Every node knows every node, and all digests agree.
    for engine in sim.active():
        assert len(engine.state) == 50
    digests = {tuple(sorted(e.create_syn(sim.clock.now).digest.nodes)) for e in sim.active()}
    assert len(digests) == 1

    writer = sim.engine(17)
    writer.self_state.set("color", "blue")

    def everyone_sees_it() -> bool:
        return all(
            (state := e.state.node_state(writer.self_id)) is not None
            and state.get("color") == "blue"
            for e in sim.active()
        )

    rounds = sim.rounds_until(everyone_sees_it, limit=15)
    assert rounds is not None and rounds <= 8
    assert sim.converged()


def test_silenced_node_is_declared_dead_by_all() -> None:
    sim = Simulation(12, seed=3)
    sim.run(15)
    assert all(len(e.live_nodes()) == 12 for e in sim.active())
    victim = sim.engine(5).self_id
    sim.silence(5)
    rounds = sim.rounds_until(
        lambda: all(victim in e.dead_nodes() for e in sim.active()), limit=120
    )
    assert rounds is not None
    assert all(victim not in e.live_nodes() for e in sim.active())
    assert all(len(e.live_nodes()) == 11 for e in sim.active())


def test_dead_node_is_forgotten_after_grace_period() -> None:
    config = FailureDetectorConfig(dead_node_grace_period=40.0)
    sim = Simulation(6, seed=9, failure_detector=config)
    sim.run(10)
    victim = sim.engine(4).self_id
    sim.silence(4)
    rounds = sim.rounds_until(
        lambda: all(e.state.node_state(victim) is None for e in sim.active()), limit=200
    )
    assert rounds is not None
    sim.run(20)  # and it does not come back through gossip
    assert all(e.state.node_state(victim) is None for e in sim.active())


def test_tombstones_replicate_then_are_collected_everywhere() -> None:
    sim = Simulation(8, seed=5, marked_for_deletion_grace_period=30.0)
    owner = sim.engine(2)
    owner.self_state.set("temp", "1")
    sim.run(10)
    owner.self_state.delete("temp", sim.clock.now)
    sim.run(8)
    for engine in sim.active():
        state = engine.state.node_state(owner.self_id)
        assert state is not None
        assert state.key_values["temp"].status is KeyStatus.DELETED
        assert state.get("temp") is None
    sim.run(40)
    for engine in sim.active():
        state = engine.state.node_state(owner.self_id)
        assert state is not None and "temp" not in state.key_values
    assert sim.converged()


def test_late_joiner_behind_gc_catches_up_by_reset() -> None:
    sim = Simulation(5, seed=8, marked_for_deletion_grace_period=5.0)
    late = sim.engine(4)
    sim.silence(4)
    owner = sim.engine(1)
    for i in range(5):
        owner.self_state.set(f"k{i}", "v")
    owner.self_state.delete("k0", sim.clock.now)
    sim.run(20)  # tombstone collected everywhere: last_gc_version > 0
    owner_state = owner.state.node_state(owner.self_id)
    assert owner_state is not None and owner_state.last_gc_version > 0
    sim.silenced.clear()
    assert sim.rounds_until(sim.converged, limit=30) is not None
    seen = late.state.node_state(owner.self_id)
    assert seen is not None and seen.get("k0") is None and seen.get("k4") == "v"


def test_a_node_whose_heartbeat_was_corrupted_upwards_heals_itself() -> None:
    # A corrupted datagram that still decodes can carry a peer's heartbeat far ahead of
    # the real one; the peers keep the highest they saw and spread it, so the node's real
    # beats would look stale to everyone until it restarted. It sees itself ahead in their
    # digests, jumps past that value, and is live everywhere again.
    sim = Simulation(6, seed=11)
    assert sim.rounds_until(lambda: all(len(e.live_nodes()) == 6 for e in sim.active()), 40)
    victim = sim.engine(2).self_id
    corrupted = 2**45
    bystander = sim.engine(4)
    state = bystander.state.node_state(victim)
    assert state is not None
    state.heartbeat = corrupted  # what the corrupted datagram left behind
    sim.run(10)
    assert sim.engine(2).self_state.heartbeat > corrupted
    rounds = sim.rounds_until(
        lambda: all(victim in e.live_nodes() for e in sim.active() if e.self_id != victim),
        limit=60,
    )
    assert rounds is not None
    sim.run(60)  # and stays live: its beats count again
    assert all(victim in e.live_nodes() for e in sim.active() if e.self_id != victim)
