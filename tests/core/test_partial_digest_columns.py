"""The partial-digest bookkeeping an engine keeps per node (the round each node last
changed, the peers that published the capability), in columns over a numbering shared by
the engines of a process: the same answers as the dicts a lone engine keeps, in a few
bytes a node where a dict slot took ~37 (N^2 of them in a simulation)."""

from __future__ import annotations

import gc
import random
import tracemalloc

import pytest

from gossip_tui.core.digest_window import CapsPeers, ChangeRounds, NodeNumbers
from gossip_tui.core.models import NodeId, SocketAddress
from gossip_tui.core.simulation import sim_address


def _nodes(count: int, addresses: int) -> list[NodeId]:
    # Generations of one node share its address: several nodes an address.
    return [
        NodeId(f"n{i % addresses}", 1 + i // addresses, sim_address(i % addresses))
        for i in range(count)
    ]


def _numbering(nodes: list[NodeId], rng: random.Random) -> NodeNumbers:
    # Numbered by other engines first, in another order, and not every node.
    numbers = NodeNumbers()
    for node in rng.sample(nodes, len(nodes) // 2):
        numbers.number(node)
    return numbers


@pytest.mark.parametrize("seed", range(30))
def test_change_rounds_in_columns_answer_as_the_dict(seed: int) -> None:
    rng = random.Random(seed)
    nodes = _nodes(12, 12)
    by_dict, in_columns = ChangeRounds(), ChangeRounds(_numbering(nodes, rng))
    round_ = 0
    for _ in range(400):
        round_ += rng.random() < 0.3
        op = rng.random()
        if op < 0.6:
            node = rng.choice(nodes)
            by_dict.note(node, round_)
            in_columns.note(node, round_)
        elif op < 0.7:
            node = rng.choice(nodes)
            by_dict.discard(node)
            in_columns.discard(node)
        else:
            oldest = round_ - rng.randrange(0, 6)
            known = set(rng.sample(nodes, rng.randrange(len(nodes) + 1)))
            assert in_columns.recent(oldest, known) == by_dict.recent(oldest, known)


@pytest.mark.parametrize("seed", range(30))
def test_caps_peers_in_columns_answer_as_the_dict(seed: int) -> None:
    rng = random.Random(seed)
    nodes = _nodes(15, 5)
    addrs = sorted({node.gossip_addr for node in nodes}, key=lambda addr: addr.port)
    # The engine's view: the nodes it knows by address, in the order learnt, and whether
    # each one's state shows the capability (a state learnt anew holds no key).
    known: dict[SocketAddress, list[NodeId]] = {addr: [] for addr in addrs}
    shows: dict[NodeId, bool] = {}

    def nodes_at(addr: SocketAddress) -> tuple[NodeId, ...]:
        return tuple(known[addr])

    by_dict = CapsPeers()
    in_columns = CapsPeers(_numbering(nodes, rng), nodes_at)
    for _ in range(400):
        node = rng.choice(nodes)
        at_addr = known[node.gossip_addr]
        op = rng.random()
        if op < 0.25 and node not in at_addr:  # learnt from a digest
            at_addr.append(node)
            shows[node] = False
        elif op < 0.7 and node in at_addr:  # a delta named it, which may set or drop the key
            shows[node] = rng.random() < 0.8 or not shows[node]
            if shows[node]:
                by_dict.note(node)
                in_columns.note(node)
        elif op < 0.8 and node in at_addr:  # garbage-collected
            at_addr.remove(node)
            by_dict.discard(node)
            in_columns.discard(node)
        elif op < 0.85 and node in at_addr:  # forgotten by hand (the engine's forget)
            at_addr.remove(node)
        for addr in addrs:
            # What the engine asks: whether the target takes partial digests.
            takes = [
                peer is not None and peer in known[addr] and shows[peer]
                for peer in (by_dict.at(addr), in_columns.at(addr))
            ]
            assert takes[0] == takes[1]


def test_a_simulation_s_engines_keep_a_few_bytes_a_node_for_their_windows() -> None:
    nodes = _nodes(600, 600)
    numbers = NodeNumbers()
    for node in nodes:
        numbers.number(node)  # the process's numbering, made once, not counted
    at_addr = {node.gossip_addr: (node,) for node in nodes}

    def build() -> tuple[ChangeRounds, CapsPeers]:
        changes, peers = ChangeRounds(numbers), CapsPeers(numbers, at_addr.__getitem__)
        for node in nodes:  # as a cluster forms: every node changes, every peer publishes
            changes.note(node, 0)
            peers.note(node)
        return changes, peers

    gc.collect()
    tracemalloc.start()
    try:
        built = build()
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert all(built[1].at(node.gossip_addr) is node for node in nodes)
    # ~11 bytes a node: two 4-byte columns and a byte of mark (8-byte columns: ~19; the
    # two dicts: ~62).
    assert held / len(nodes) < 16
