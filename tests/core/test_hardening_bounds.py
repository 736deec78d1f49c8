"""Bounds that hold in bytes (issue 11, part B): the digest fits its datagram, a delta
decompresses to a bounded size, and state limits count the memory a key-value holds.

Each test reproduces, at small scale, a finding of the attack run on real nodes.
"""

from __future__ import annotations

import struct
import time

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
    node_id_bytes,
)
from gossip_tui.core.engine import GossipEngine
from gossip_tui.core.messages import (
    Ack,
    Digest,
    NodeDigest,
    Syn,
    SynAck,
)
from gossip_tui.core.models import KeyStatus, NodeId, SocketAddress

ATTACKER = SocketAddress.parse("127.0.0.66:6666")


def node(name: str, port: int = 7000) -> NodeId:
    return NodeId(name, 1, SocketAddress.parse(f"127.0.0.1:{port}"))


def fake(i: int) -> NodeId:
    return NodeId(f"fake-{i:05d}", 1, ATTACKER)


def flood(count: int, heartbeat: int = 1) -> Digest:
    return Digest({fake(i): NodeDigest(heartbeat, 0, 0) for i in range(count)})


def syn_from_peer(engine: GossipEngine, peer: NodeId) -> SynAck:
    reply = engine.handle_message(Syn(engine.cluster_id, Digest({peer: NodeDigest(5, 0, 0)})), 2.0)
    assert isinstance(reply, SynAck)
    return reply


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


#
