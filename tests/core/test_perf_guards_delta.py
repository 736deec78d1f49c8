"""Count guards of the delta path in a process of many states (the demo's 200 nodes, the
core's Simulation): what one state encoded, another state of the process holding the same
key-values takes as it is, and a delta's nodes are chosen and added without a Python call
per node beyond the writer's."""

from __future__ import annotations

import ipaddress
import random

from gossip_tui.core import codec
from gossip_tui.core.codec import decode, encode
from gossip_tui.core.messages import Ack, Delta, Digest, KeyValueMutation, NodeDelta, NodeDigest
from gossip_tui.core.models import SocketAddress
from gossip_tui.core.state import ClusterState, SharedObjects
from tests.core._counting import count_calls, state_with_keys

NODES = 100


def _addr(i: int) -> SocketAddress:
    return SocketAddress(ipaddress.IPv4Address("127.0.0.1"), 20_000 + i)


def _owners(keys: int = 3) -> ClusterState:
    """A state holding NODES nodes with ``keys`` keys each, as their owners wrote them."""
    return state_with_keys(NODES, keys, _addr)


def _replica(full: Delta, shared: SharedObjects | None) -> ClusterState:
    """A state that learnt every node of ``full`` (a decoded delta, as a node takes it)."""
    replica = ClusterState()
    replica.shared = shared
    for nd in full.node_deltas:
        replica.node_state_or_init(nd.node).heartbeat = 1
    replica.apply_delta(full, 1.0)
    replica.drain_changes()
    return replica


def _full_delta(owners: ClusterState) -> Delta:
    ack = decode(encode(Ack(owners.compute_delta(Digest(), 60_000, rng=random.Random(1)))))
    assert isinstance(ack, Ack)
    assert len(ack.delta.node_deltas) == NODES
    return ack.delta


def test_a_node_held_alike_by_two_states_of_the_process_is_encoded_once() -> None:
    # A forming cluster of N nodes in one process: each node's N states send it to the
    # newcomers, from the same floor. The second state takes the first one's encoding.
    full = _full_delta(_owners())
    shared = SharedObjects(8 * NODES + 1_024)
    first, second = _replica(full, shared), _replica(full, shared)
    alone = _replica(full, None)  # the reference: a state that makes its own
    first.compute_delta(Digest(), 60_000, rng=random.Random(5))
    taken: list[Delta] = []
    encodings = count_calls(
        lambda: taken.append(second.compute_delta(Digest(), 60_000, rng=random.Random(7))),
        names=("stale_key_values", "stale_mutations", "_kv_op"),
    )
    assert encodings == 0
    made = alone.compute_delta(Digest(), 60_000, rng=random.Random(7))
    assert taken == [made]
    assert taken[0].encoded == made.encoded
    assert made.encoded == codec.encode_delta(Delta(made.node_deltas))


def test_a_copy_that_differs_from_the_shared_one_encodes_its_own() -> None:
    # Two copies of a node at the same versions need not hold the same key-values (a
    # forged delta took one of them): each sends its own.
    owners = _owners()
    full = _full_delta(owners)
    shared = SharedObjects(8 * NODES + 1_024)
    honest = _replica(full, shared)
    forged_node = full.node_deltas[0].node
    forged = Delta(
        tuple(
            NodeDelta(
                nd.node,
                0,
                0,
                tuple(
                    KeyValueMutation(kv.key, "forged", kv.version, kv.status)
                    for kv in nd.key_values
                ),
                nd.max_version,
            )
            if nd.node == forged_node
            else nd
            for nd in full.node_deltas
        )
    )
    fooled = _replica(forged, shared)
    honest.compute_delta(Digest(), 60_000, rng=random.Random(5))
    sent = fooled.compute_delta(Digest(), 60_000, rng=random.Random(5))
    (carried,) = [nd for nd in sent.node_deltas if nd.node == forged_node]
    assert {kv.value for kv in carried.key_values} == {"forged"}
    assert sent == _replica(forged, None).compute_delta(Digest(), 60_000, rng=random.Random(5))
    # ...and the honest copy still sends the owner's values.
    again = honest.compute_delta(Digest(), 60_000, rng=random.Random(6))
    (honest_carried,) = [nd for nd in again.node_deltas if nd.node == forged_node]
    assert "forged" not in {kv.value for kv in honest_carried.key_values}


def test_a_delta_of_kept_nodes_makes_one_python_call_per_node_beyond_the_shuffle() -> None:
    # A newcomer's delta (it knows nothing) from a state that keeps every node for floor 0:
    # the writer's call per node, and the shuffle's draws; no ranking object, no call to
    # the state per node: 4.2 calls a node at ad58b37 (the rank, its object, the lookup of
    # the kept node, the writer), 1.2 now.
    owners = _owners()
    owners.compute_delta(Digest(), 60_000, rng=random.Random(1))
    draws = [0]

    class CountingRandom(random.Random):
        def shuffle(self, x: list[object]) -> None:  # type: ignore[override]
            draws[0] += max(0, len(x) - 1)
            super().shuffle(x)

    calls = count_calls(lambda: owners.compute_delta(Digest(), 60_000, rng=CountingRandom(2)))
    # (Each draw is one Python call, each shuffle is two: ours and Random's.)
    assert (calls - draws[0]) / NODES <= 1.3, (calls, draws[0])


def test_a_delta_is_decoded_without_a_python_call_per_node() -> None:
    # Every SynAck and Ack a node of the demo takes is decoded; a forming cluster's hold a
    # node delta per node (108 calls for these 100 at ad58b37, one _node_delta each).
    wire = encode(Ack(_owners().compute_delta(Digest(), 60_000, rng=random.Random(1))))
    decode(wire)  # the node ids and key-values met once, as a running node has them
    decoded: list[object] = []
    assert count_calls(lambda: decoded.append(decode(wire))) <= 12
    (ack,) = decoded
    assert isinstance(ack, Ack)
    assert encode(ack) == wire
    # A node whose key-values are the ones kept from before takes their very tuple: no
    # list of them built and copied back per node (130 -> 107 us for this decode).
    again = decode(wire)
    assert isinstance(again, Ack)
    assert all(
        first.key_values is second.key_values
        for first, second in zip(ack.delta.node_deltas, again.delta.node_deltas, strict=True)
    )


def test_a_delta_of_known_nodes_one_key_behind_makes_one_python_call_per_node() -> None:
    # The usual node of a forming cluster's delta: known to the peer, its newest key
    # lacking, the key-values kept for that floor since the last peer at it. Ranked and
    # added with the writer's one call: 5.2 calls a node at ad58b37 (the rank,
    # NodeState.stale_count and its look at what is kept, the kept node's, the writer's).
    owners = _owners()
    behind = Digest({node: NodeDigest(1, 0, 2) for node in owners.nodes()})
    owners.compute_delta(behind, 60_000, rng=random.Random(1))
    draws = [0]

    class CountingRandom(random.Random):
        def shuffle(self, x: list[object]) -> None:  # type: ignore[override]
            draws[0] += max(0, len(x) - 1)
            super().shuffle(x)

    delta: list[Delta] = []
    calls = count_calls(
        lambda: delta.append(owners.compute_delta(behind, 60_000, rng=CountingRandom(2)))
    )
    assert [len(nd.key_values) for nd in delta[0].node_deltas] == [1] * NODES
    assert (calls - draws[0]) / NODES <= 1.3, (calls, draws[0])
