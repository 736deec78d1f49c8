"""FailureDetector.steady_until: before it, judging every node again changes nothing (the
runtime skips those sweeps, issue 17). Checked against a sweep of a copy at every slot of
seeded heartbeat histories: rhythms that speed up, slow down, stop and start again."""

from __future__ import annotations

import copy
import random

import pytest

from gossip_tui.core.engine import GossipEngine
from gossip_tui.core.failure_detector import FailureDetector, FailureDetectorConfig
from gossip_tui.core.messages import Digest, NodeDigest, Syn
from gossip_tui.core.models import Liveness, NodeId, SocketAddress

NODES = [NodeId(f"n{i}", 1, SocketAddress.parse(f"127.0.0.1:{7000 + i}")) for i in range(6)]


def _sweep(
    detector: FailureDetector, known: set[NodeId], now: float
) -> tuple[set[NodeId], dict[NodeId, float | None]]:
    """The engine's sweep: judge the known nodes, drop the collected ones."""
    for node in NODES:
        if node in known:
            detector.update_node_liveness(node, now)
    known.difference_update(detector.garbage_collect(now))
    return set(detector.live_nodes()), {n: detector.time_of_death(n) for n in NODES}


@pytest.mark.parametrize("pause", [0.0, 3.0])
@pytest.mark.parametrize("seed", range(6))
def test_a_sweep_before_steady_until_changes_no_verdict(seed: int, pause: float) -> None:
    rng = random.Random(seed)
    config = FailureDetectorConfig(
        initial_interval=0.5, dead_node_grace_period=20.0, acceptable_pause=pause
    )
    detector = FailureDetector(config)
    # Each node beats with a rhythm of its own that changes now and then, and falls silent
    # for a while at random (long enough, often, to die and to be collected).
    next_beat = {node: rng.uniform(0, 1) for node in NODES}
    rhythm = {node: rng.uniform(0.05, 1.5) for node in NODES}
    interval, now, skippable = 0.25, 0.0, 0
    known = set(NODES)
    verdicts = _sweep(detector, known, now)
    detector.settle()
    while now < 120:
        slot = now + interval
        # A collected node that beats again is learnt anew: news the engine's own
        # check (liveness_steady_until) reports, not the detector's.
        learnt = False
        for node in NODES:
            while next_beat[node] <= slot:
                learnt |= node not in known
                known.add(node)
                detector.report_heartbeat(node, next_beat[node])
                if rng.random() < 0.02:
                    rhythm[node] = rng.uniform(0.05, 1.5)
                gap = rng.uniform(5, 30) if rng.random() < 0.01 else rhythm[node]
                next_beat[node] += gap * rng.uniform(0.5, 1.5)
        now = slot
        if not learnt and now < detector.steady_until:
            skippable += 1
            assert _sweep(copy.deepcopy(detector), set(known), now) == verdicts, now
        verdicts = _sweep(detector, known, now)
        detector.settle()
    # The bound is of use: a good share of the slots could be skipped.
    assert skippable > 40, skippable


def test_a_heartbeat_of_a_node_not_live_or_a_death_declared_needs_a_sweep() -> None:
    detector = FailureDetector(FailureDetectorConfig(initial_interval=0.5))
    node, other = NODES[0], NODES[1]
    for t in (0.0, 0.5, 1.0):
        detector.report_heartbeat(node, t)
        detector.report_heartbeat(other, t)
    detector.update_node_liveness(node, 1.0)
    detector.update_node_liveness(other, 1.0)
    detector.settle()
    assert detector.steady_until > 1.5
    detector.declare_dead(other, 1.1)
    assert detector.steady_until == float("-inf")
    detector.settle()
    assert detector.steady_until > 1.5
    detector.report_heartbeat(other, 1.2)  # dead: may come back at the next sweep
    assert detector.steady_until == float("-inf")


def test_the_engine_wants_a_sweep_for_a_node_learnt_without_a_heartbeat() -> None:
    # A digest may list a node at heartbeat 0: learnt, but no heartbeat reached the
    # detector. The next sweep still judges it (dead from then on): a sweep is due.
    engine = GossipEngine(NODES[0], "c", now=0.0)
    peer = NODES[1]
    for t, beat in ((0.0, 1), (0.5, 2), (1.0, 3)):
        engine.handle_message(Syn("c", Digest({peer: NodeDigest(beat, 0, 0)})), t)
    engine.update_liveness(1.0)
    assert engine.liveness_steady_until() > 1.5
    engine.handle_message(Syn("c", Digest({NODES[2]: NodeDigest(0, 0, 0)})), 1.1)
    assert NODES[2] in engine.state.node_states
    assert engine.liveness_steady_until() == float("-inf")
    engine.update_liveness(1.5)
    assert engine.liveness(NODES[2], 1.5) is Liveness.DEAD
