"""A pre-formed simulation starts as after a long quiet spell: every node has published
its view and every peer holds it, so the rounds after publish nothing new."""

from __future__ import annotations

from gossip_tui.core.agreement import VIEW_KEY, summarize
from gossip_tui.core.models import NodeId
from gossip_tui.core.simulation import (
    Simulation,
)


def _peer_keys(sim: Simulation) -> dict[tuple[int, NodeId, str], tuple[str, int]]:
    """Every engine's key-values of every other node: (engine, node, key) -> (value,
    version)."""
    return {
        (index, node, key): (value.value, value.version)
        for index, engine in enumerate(sim.engines.values())
        for node, state in engine.state.node_states.items()
        if node != engine.self_id
        for key, value in state.key_values.items()
    }


def test_a_preformed_cluster_applies_no_peer_key_in_six_rounds_but_the_one_set() -> None:
    # Pre-formed as after a quiet spell: nothing is left to spread. (On the pre-form that
    # did not publish the views, every node published its own in round 4, which every
    # peer then applied: N^2 key updates.)
    sim = Simulation(30, seed=3, preformed=True)
    writer = sim.engine(7)
    writer.self_state.set("written", "by the test")
    before = _peer_keys(sim)
    for _ in range(6):
        sim.round()
        after = _peer_keys(sim)
        news = {entry for entry in after.items() if entry not in before.items()}
        assert {(node, key) for (_index, node, key), _value in news} <= {
            (writer.self_id, "written")
        }
        before = after
    assert all(e.state.node_state(writer.self_id).get("written") for e in sim.active())  # type: ignore[union-attr]


def test_every_node_of_a_preformed_cluster_holds_every_node_s_view_of_everyone() -> None:
    sim = Simulation(12, seed=1, preformed=True)
    everyone = summarize([e.self_id for e in sim.engines.values()]).encode()
    for engine in sim.engines.values():
        assert len(engine.live_nodes()) == 12
        for state in engine.state.node_states.values():
            assert state.get(VIEW_KEY) == everyone
