"""The simulation's accelerations change nothing it measures, and what limits V1 clusters
is the datagram, not a bound made for V0."""

from __future__ import annotations

import random

import pytest

from gossip_tui.core.codec import MAX_DATAGRAM_SIZE, PROTOCOL_V0, PROTOCOL_V1
from gossip_tui.core.engine import GossipEngine
from gossip_tui.core.messages import Delta, Digest, NodeDigest, SynAck
from gossip_tui.core.models import NodeId
from gossip_tui.core.simulation import Simulation, chitchat_test_name, sim_address

MODES = {
    "V0": (PROTOCOL_V0, False, MAX_DATAGRAM_SIZE),
    "V1": (PROTOCOL_V1, False, MAX_DATAGRAM_SIZE),
    # A small datagram, so that 60 nodes already need partial windows.
    "V1+partial": (PROTOCOL_V1, True, 1_200),
}


def _run(
    mode: str, decode_replies: bool
) -> tuple[list[int | None], dict[str, object], list[object]]:
    version, partial, datagram = MODES[mode]
    sim = Simulation(
        60,
        seed=7,
        preformed=True,
        protocol_version=version,
        partial_digests=partial,
        max_datagram_size=datagram,
        naming=chitchat_test_name,
        decode_replies=decode_replies,
    )
    spread: list[int | None] = []
    for key, writer in enumerate((3, 41)):
        sim.engine(writer).self_state.set("k", str(key))
        node = sim.engine(writer).self_id

        def everywhere(node: NodeId = node, value: str = str(key)) -> bool:
            return all(
                (s := e.state.node_state(node)) is not None and s.get("k") == value
                for e in sim.active()
            )

        spread.append(sim.rounds_until(everywhere, 25))
    views = [
        sorted((n.node_id, s.heartbeat, s.max_version) for n, s in e.state.node_states.items())
        for e in sim.active()
    ]
    return spread, sim.traffic.as_dict(), views


@pytest.mark.parametrize("mode", list(MODES))
def test_handing_replies_over_measures_what_decoding_them_measures(mode: str) -> None:
    decoded = _run(mode, decode_replies=True)
    handed = _run(mode, decode_replies=False)
    assert handed[0] == decoded[0]  # rounds for each key to reach every node
    assert handed[1] == decoded[1]  # datagrams, bytes, the largest, oversize, errors
    assert handed[2] == decoded[2]  # every node's view of every node
    assert all(r is not None for r in decoded[0])


def _learns(version: int, size: int) -> int:
    ids = [NodeId(chitchat_test_name(i), 1, sim_address(i)) for i in range(size)]
    engine = GossipEngine(ids[0], "sim", now=0.0, protocol_version=version)
    rng = random.Random(size)
    digest = Digest({n: NodeDigest(rng.randrange(2, 30), 0, 1) for n in ids})
    engine.handle_message(SynAck(digest, Delta(()), protocol_version=version), 1.0)
    return len(engine.state)


def test_a_v1_node_learns_past_what_a_v0_digest_carries() -> None:
    # 2,000 chitchat-test ids: 164 KB of digest uncompressed, ~25 KB in V1.
    assert _learns(PROTOCOL_V0, 2_000) < 800
    assert _learns(PROTOCOL_V1, 2_000) == 2_000
