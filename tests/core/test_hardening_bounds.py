"""Bounds that hold in bytes (issue 11, part B): the digest fits its datagram, a delta
decompresses to a bounded size, and state limits count the memory a key-value holds.

Each test reproduces, at small scale, a finding of the attack run on real nodes.
"""

from __future__ import annotations

import gc
import struct
import time
import tracemalloc

import pytest
import zstandard

from gossip_tui.core.codec import (
    MAGIC,
    MAX_DATAGRAM_SIZE,
    MAX_DELTA_STREAM,
    MSG_ACK,
    DecodeError,
    DecompressionBomb,
    DeltaWriter,
    decode,
    encode,
    encode_delta,
    node_id_bytes,
)
from gossip_tui.core.engine import SYNACK_DELTA_RESERVE, GossipEngine, max_digest_bytes
from gossip_tui.core.messages import (
    Ack,
    Delta,
    Digest,
    KeyValueMutation,
    NodeDelta,
    NodeDigest,
    Syn,
    SynAck,
)
from gossip_tui.core.models import KeyStatus, NodeId, SocketAddress
from gossip_tui.core.simulation import Simulation
from gossip_tui.core.state import (
    KEY_VALUE_OVERHEAD,
    ClusterState,
    DeltaStatus,
    StateLimits,
    key_value_cost,
)

ATTACKER = SocketAddress.parse("127.0.0.66:6666")


def node(name: str, port: int = 7000) -> NodeId:
    return NodeId(name, 1, SocketAddress.parse(f"127.0.0.1:{port}"))


def fake(i: int) -> NodeId:
    return NodeId(f"fake-{i:05d}", 1, ATTACKER)


def flood(count: int, heartbeat: int = 1) -> Digest:
    return Digest({fake(i): NodeDigest(heartbeat, 0, 0) for i in range(count)})


def syn_from_peer(engine: GossipEngine, peer: NodeId) -> SynAck:
    reply = engine.handle_message(
        Syn(engine.cluster_id, Digest({peer: NodeDigest(5, 0, 0)})), 2.0
    ).reply
    assert isinstance(reply, SynAck)
    return reply


# --------------------------------------------------------------------------- finding 2


def test_a_fake_node_with_a_huge_name_is_refused_and_our_syn_still_fits() -> None:
    # Attack: one fake node named with 65,400 bytes; peers then declared A dead in ~20 s
    # (A's Syns no longer fit a datagram).
    engine = GossipEngine(node("a"), "c", now=0.0)
    huge = NodeId("x" * 65_400, 1, ATTACKER)
    engine.handle_message(Syn("c", Digest({huge: NodeDigest(1, 0, 0)})), 1.0)
    assert engine.state.node_state(huge) is None
    assert engine.state.rejected["node_id_too_long"] == 1
    assert len(encode(engine.create_syn(1.0))) <= MAX_DATAGRAM_SIZE


def test_a_name_that_would_fill_the_digest_is_refused_as_digest_full() -> None:
    # Attack: a 65,260-byte name spread everywhere and every SynAck then failed with
    # "a delta budget below 100 bytes"; no key replicated. Here the name length bound is
    # lifted so that the digest bound alone has to stop it.
    limits = StateLimits(max_node_id_bytes=0xFFFF)
    engine = GossipEngine(node("a"), "c", now=0.0, limits=limits)
    engine.self_state.set("color", "blue")
    huge = NodeId("x" * 65_260, 1, ATTACKER)
    engine.handle_message(Syn("c", Digest({huge: NodeDigest(1, 0, 0)})), 1.0)
    assert engine.state.node_state(huge) is None
    assert engine.state.rejected["digest_full"] == 1
    reply = syn_from_peer(engine, node("b", 7001))
    assert len(encode(reply)) <= MAX_DATAGRAM_SIZE
    [own] = reply.delta.node_deltas
    assert [kv.key for kv in own.key_values] == ["color"]


def test_a_flood_of_short_ids_stops_at_the_digest_budget() -> None:
    # Attack: about 1,400 short fake ids did what the huge name did.
    engine = GossipEngine(node("a"), "c", now=0.0)
    engine.self_state.set("payload", "v" * 3_000)
    engine.handle_message(Syn("c", flood(1_400)), 1.0)
    budget = max_digest_bytes("c")
    assert engine.state.digest_bytes <= budget
    admitted = len(engine.state) - 1
    assert 1_000 < admitted < 1_400
    assert engine.state.rejected["digest_full"] == 1_400 - admitted
    assert len(encode(engine.create_syn(1.0))) <= MAX_DATAGRAM_SIZE
    # A real peer joining now is refused too: the digest is full (first come, first kept)...
    peer = node("b", 7001)
    reply = syn_from_peer(engine, peer)
    assert engine.state.node_state(peer) is None
    # ...but the SynAck still fits, with room for a delta of at least the reserve.
    data = encode(reply)
    assert len(data) <= MAX_DATAGRAM_SIZE
    assert MAX_DATAGRAM_SIZE - 4 - engine.state.digest_bytes >= SYNACK_DELTA_RESERVE
    assert any(kv.key == "payload" for nd in reply.delta.node_deltas for kv in nd.key_values)


def test_no_room_for_a_delta_gives_an_empty_delta_not_an_exception() -> None:
    # Our own name is exempt from the bounds; when it leaves no room, the SynAck is small.
    engine = GossipEngine(node("n" * 65_400), "c", now=0.0)
    reply = syn_from_peer(engine, node("b", 7001))
    assert reply.delta == Delta()
    assert encode_delta(reply.delta) == b"\x00"
    assert ClusterState().compute_delta(Digest(), 50) == Delta()


def test_a_fake_id_flood_neither_isolates_a_node_nor_stops_replication() -> None:
    # The simulation drops a datagram over the UDP limit, as the kernel does.
    sim = Simulation(4, seed=3, partial_digests=False)
    sim.run(10)
    assert sim.converged()
    victim = sim.engine(0)
    for beat in range(2, 12):
        # Rising heartbeats: the fake nodes look alive and spread through digests.
        victim.handle_message(Syn("sim", flood(1_500, beat)), sim.clock.now)
        sim.round()
    sim.engine(3).self_state.set("after", "the flood")
    assert sim.rounds_until(sim.converged, 30) is not None
    assert sum(sim.traffic.oversize.values()) == 0
    for engine in sim.engines.values():
        assert engine.state.digest_bytes <= max_digest_bytes("sim")
        assert {n for n in engine.live_nodes() if n.gossip_addr != ATTACKER} == {
            e.self_id for e in sim.engines.values()
        }
    assert victim.state.rejected["digest_full"] > 0


# --------------------------------------------------------------------------- finding 3


def _delta_datagram(blocks: list[bytes]) -> bytes:
    """An Ack: a raw block with one node operation, then ``blocks`` (compressed frames)."""
    node_op = b"\x00" + node_id_bytes(node("n")) + struct.pack("<QQ", 0, 0)
    parts = [struct.pack("<HBB", MAGIC, 0, MSG_ACK), struct.pack("<BH", 2, len(node_op)), node_op]
    for frame in blocks:
        parts.append(struct.pack("<BH", 1, len(frame)) + frame)
    parts.append(b"\x00")
    return b"".join(parts)


def _max_version_frame() -> bytes:
    ops = (b"\x02" + struct.pack("<Q", 7)) * (0xFFFF // 9)  # 65,529 bytes of SetMaxVersion
    return zstandard.ZstdCompressor(level=3).compress(ops)


def _fill(frame: bytes, count: int | None = None) -> bytes:
    """A datagram of ``frame`` repeated ``count`` times, or as many as fit."""
    room = MAX_DATAGRAM_SIZE - len(_delta_datagram([]))
    most = room // (3 + len(frame))
    datagram = _delta_datagram([frame] * (most if count is None else count))
    assert len(datagram) <= MAX_DATAGRAM_SIZE
    return datagram


def test_repeated_set_max_version_blocks_are_a_bomb() -> None:
    # Attack: one 65,503-byte datagram of such blocks inflated to 143 MB (15.9 M ops).
    datagram = _fill(_max_version_frame())
    started = time.perf_counter()
    with pytest.raises(DecompressionBomb) as caught:
        decode(datagram)
    elapsed = time.perf_counter() - started
    assert caught.value.reason == "decompression_bomb"
    assert isinstance(caught.value, DecodeError)
    assert elapsed < 0.5, f"refusing the bomb took {elapsed:.3f} s"
    # At small scale: 17 such blocks already pass the cap.
    with pytest.raises(DecompressionBomb):
        decode(_fill(_max_version_frame(), 17))


def test_zero_filled_blocks_are_a_bomb() -> None:
    # Attack: zero-filled blocks, 195 MB per datagram.
    zeros = zstandard.ZstdCompressor(level=3).compress(bytes(0xFFFF))
    with pytest.raises(DecompressionBomb):
        decode(_fill(zeros))
    # A frame that does not declare its size is stopped by the room left, too.
    undeclared = zstandard.ZstdCompressor(level=3, write_content_size=False).compress(bytes(0xFFFF))
    with pytest.raises(DecompressionBomb):
        decode(_fill(undeclared, 17))


def test_the_worst_case_under_the_cap_decodes_quickly() -> None:
    # 16 blocks of 65,529 bytes: just under the 1 MiB cap, all SetMaxVersion operations
    # (the cheapest to send, 116 k of them).
    datagram = _fill(_max_version_frame(), 16)
    started = time.perf_counter()
    message = decode(datagram)
    elapsed = time.perf_counter() - started
    assert isinstance(message, Ack)
    assert elapsed < 1.0, f"decoding the worst case took {elapsed:.3f} s"


def test_our_writer_never_writes_past_what_a_receiver_decompresses() -> None:
    # Values that compress ~270:1 (a legitimate, if odd, state): without a stream bound
    # the writer fills a datagram with 11.8 MB of operations.
    writer = DeltaWriter(MAX_DATAGRAM_SIZE - 4)
    assert writer.try_add_node(node("n"), 0, 0)
    version = 0
    while True:
        version += 1
        if not writer.try_add_kv(f"{'k' * 1000}{version}", "v" * 5_000, version, KeyStatus.SET):
            break
    delta = writer.finish()
    message = decode(encode(Ack(delta)))
    assert isinstance(message, Ack) and message.delta == delta
    streamed = sum(len(kv.key) + len(kv.value) + 14 for kv in delta.node_deltas[0].key_values)
    assert MAX_DELTA_STREAM - 7_000 < streamed <= MAX_DELTA_STREAM


# --------------------------------------------------------------------------- finding 4


def _tiny_keys_delta(owner: NodeId, first: int, count: int) -> bytes:
    kvs = tuple(KeyValueMutation(f"k{i}", "v", i + 1) for i in range(first, first + count))
    return encode(Ack(Delta((NodeDelta(owner, first, 0, kvs, first + count),))))


def _apply_datagram(cluster: ClusterState, datagram: bytes) -> None:
    message = decode(datagram)
    assert isinstance(message, Ack)
    cluster.apply_delta(message.delta, now=1.0)
    cluster.changes.clear()


def test_the_size_estimate_matches_tracemalloc() -> None:
    # Attack: ~235 bytes of RSS were held per 7 counted characters.
    owner = node("owner")
    cluster = ClusterState(StateLimits(max_node_state_bytes=1 << 30))
    cluster.node_state_or_init(owner)
    datagrams = [_tiny_keys_delta(owner, i, 1_000) for i in range(0, 10_000, 1_000)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for datagram in datagrams:
            _apply_datagram(cluster, datagram)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert cluster.total_size == sum(key_value_cost(f"k{i}", "v") for i in range(10_000))
    ratio = held / cluster.total_size
    assert 0.5 < ratio < 2.0, f"held {held:,} bytes for an estimate of {cluster.total_size:,}"


def test_a_flood_of_tiny_keys_for_fake_nodes_stays_within_its_bound_in_memory() -> None:
    # Attack: 4 M tiny keys for one fake node took a node from 44 to 320 MB, and the
    # 512 MiB bound allowed ~17 GB. At small scale: a 128 KiB total bound.
    limits = StateLimits(max_node_state_bytes=64 * 1024, max_total_state_bytes=128 * 1024)
    cluster = ClusterState(limits)
    owners = [node(f"fake-{i}", 7100 + i) for i in range(3)]
    floods = [
        (owner, [_tiny_keys_delta(owner, first, 500) for first in range(0, 10_000, 500)])
        for owner in owners
    ]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for owner, datagrams in floods:
            cluster.node_state_or_init(owner)
            for datagram in datagrams:
                _apply_datagram(cluster, datagram)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert cluster.total_size <= limits.max_total_state_bytes
    assert cluster.rejected[DeltaStatus.OVER_LIMIT.value] > 0
    assert held < 2 * limits.max_total_state_bytes, f"held {held:,} bytes"


def test_rewriting_a_key_near_the_bound_is_not_refused() -> None:
    # Peers count the growth net of the values a delta replaces; the writer does the same.
    owner = node("owner")
    bound = 10 * key_value_cost("k0", "x" * 1_000)
    writer = ClusterState(StateLimits(max_node_state_bytes=bound))
    replica = ClusterState(StateLimits(max_node_state_bytes=bound))
    mine = writer.node_state_or_init(owner)
    theirs = replica.node_state_or_init(owner)
    for i in range(10):
        mine.set(f"k{i}", "x" * 1_000)
    mine.set("k3", "y" * 1_000)
    assert mine.size == bound
    first = NodeDelta(
        owner, 0, 0, tuple(KeyValueMutation(f"k{i}", "x" * 1_000, i + 1) for i in range(10)), 10
    )
    assert theirs.apply_delta(first, 1.0, replica.limits) is DeltaStatus.APPLY
    rewrite = NodeDelta(owner, 10, 0, (KeyValueMutation("k3", "y" * 1_000, 11),), 11)
    assert theirs.apply_delta(rewrite, 1.0, replica.limits) is DeltaStatus.APPLY
    assert theirs.size == mine.size == bound


def test_a_key_repeated_within_a_delta_is_released_once() -> None:
    owner = node("owner")
    limits = StateLimits(max_node_state_bytes=3 * key_value_cost("big", "x" * 10_000))
    state = ClusterState(limits).node_state_or_init(owner)
    first = NodeDelta(owner, 0, 0, (KeyValueMutation("big", "x" * 10_000, 1),), 1)
    assert state.apply_delta(first, 1.0, limits) is DeltaStatus.APPLY
    # "big" replaced 50 times would release its value 50 times if counted per operation.
    repeats = tuple(KeyValueMutation("big", "", v) for v in range(2, 52))
    news = tuple(KeyValueMutation(f"n{v}", "x" * 10_000, v) for v in range(52, 56))
    over = NodeDelta(owner, 1, 0, repeats + news, 55)
    assert state.apply_delta(over, 1.0, limits) is DeltaStatus.OVER_LIMIT


def test_the_estimate_counts_the_memory_of_wide_characters() -> None:
    assert key_value_cost("k", "") == KEY_VALUE_OVERHEAD + 1
    assert key_value_cost("k", "é" * 10) == KEY_VALUE_OVERHEAD + 1 + 10
    # One emoji makes CPython hold four bytes for every character of the string.
    assert key_value_cost("k", "a" * 1_000 + "😀") == KEY_VALUE_OVERHEAD + 1 + 4 * 1_001
