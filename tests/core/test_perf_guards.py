"""Guards on the idle round's cost, counted rather than timed (timings are benchmarks:
scripts/bench/core.py): the per-peer Python comparisons a round and a sweep used to make,
and the one encoding of the digest a SynAck is sized and sent with."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from gossip_tui.core import codec
from gossip_tui.core.codec import decode, encode
from gossip_tui.core.engine import GossipEngine, select_gossip_targets
from gossip_tui.core.messages import Syn, SynAck
from gossip_tui.core.models import NodeId, SocketAddress

PEERS = 100


def _addr(i: int) -> SocketAddress:
    ip = ipaddress.ip_address("127.0.0.1") if i % 3 else ipaddress.ip_address(f"::{i + 1:x}")
    return SocketAddress(ip, 10_000 + i)


def _engine_with_live_peers(count: int) -> GossipEngine:
    engine = GossipEngine(NodeId("me", 1, _addr(0)), "c", now=0.0, rng=random.Random(3))
    for i in range(1, count + 1):
        peer = NodeId(f"peer-{i}", 1, _addr(i))
        engine.state.node_state_or_init(peer).heartbeat = 1
        for t in (0.0, 1.0, 2.0):
            engine.detector.report_heartbeat(peer, t)
    engine.update_liveness(2.5)
    assert len(engine.live_nodes()) == count + 1
    return engine


@contextmanager
def _counting(cls: type, method: str) -> Iterator[list[int]]:
    calls = [0]
    original = cls.__dict__[method]

    def counted(self: Any, other: Any) -> Any:
        calls[0] += 1
        return original(self, other)

    setattr(cls, method, counted)
    try:
        yield calls
    finally:
        setattr(cls, method, original)


def test_a_round_compares_no_addresses_and_no_node_ids_in_python() -> None:
    engine = _engine_with_live_peers(PEERS)
    with (
        _counting(SocketAddress, "__lt__") as lt,
        _counting(NodeId, "__ne__") as ne,
    ):
        step = engine.start_round(3.0)
    assert len(step.targets.all()) >= 3
    assert (lt[0], ne[0]) == (0, 0)


def test_a_sweep_compares_no_node_ids_in_python() -> None:
    engine = _engine_with_live_peers(PEERS)
    with _counting(NodeId, "__ne__") as ne:
        engine.update_liveness(3.0)
    assert ne[0] == 0


@pytest.mark.parametrize("seed", range(5))
def test_targets_are_drawn_in_the_order_of_socket_addresses(seed: int) -> None:
    # The choice is chitchat's over the addresses in SocketAddress order: sorting by key
    # must draw exactly what sorting by __lt__ drew.
    rng = random.Random(seed)
    addrs = {_addr(rng.randrange(1_000)) for _ in range(60)}
    live = set(rng.sample(sorted(addrs), 40))
    dead = addrs - live
    seeds = set(rng.sample(sorted(addrs), 3))
    chosen = select_gossip_targets(random.Random(seed), addrs, live, dead, seeds)
    by_lt = random.Random(seed)
    expected = tuple(by_lt.sample(sorted(live), 3))
    assert chosen.peers == expected


def test_a_synack_digest_is_encoded_once_for_sizing_and_sending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = _engine_with_live_peers(PEERS)
    b = GossipEngine(NodeId("b", 1, _addr(500)), "c", now=0.0, rng=random.Random(4))
    syn = decode(encode(b.create_syn(3.0)))
    assert isinstance(syn, Syn)
    encodings = [0]
    original = codec._digest_entries

    def counted(digest: Any) -> list[bytes]:
        encodings[0] += 1
        return original(digest)

    monkeypatch.setattr(codec, "_digest_entries", counted)
    monkeypatch.setattr(codec, "node_id_size", _never_counted)
    reply = a.handle_message(syn, 3.0).reply
    assert isinstance(reply, SynAck)
    wire = encode(reply)
    assert decode(wire) == reply
    assert encodings[0] == 1


def _never_counted(_node: NodeId) -> int:
    raise AssertionError("the digest was counted entry by entry before being encoded")
