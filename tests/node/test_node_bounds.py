"""Bounds that hold in bytes, on the running node (issue 11, part B): honest
acknowledgements past the per-node bound, and decompression bombs counted apart."""

from __future__ import annotations

import struct

import pytest
import trio
import zstandard

from gossip_tui.core.codec import MAGIC, MSG_ACK, node_id_bytes
from gossip_tui.core.models import SocketAddress
from gossip_tui.node import KeyValueTooLarge, NodeStateFull
from gossip_tui.testing import MemoryNetwork

from .helpers import all_see_each_other, open_cluster, wait_until

_VALUE = "x" * 59_000


@pytest.mark.trio
async def test_writes_past_the_per_node_bound_are_refused_and_the_rest_replicates(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Attack: past the 8 MiB per-node bound, 151 PUTs were all acknowledged, peers stopped
    # at 142 and the next tiny key never arrived.
    network = MemoryNetwork(seed=11)
    async with open_cluster(2, transport=network.transport()) as (writer, reader):
        await wait_until(lambda: all_see_each_other([writer, reader]), 30, "both live")
        accepted: list[str] = []
        refusal: NodeStateFull | None = None
        for i in range(200):
            try:
                writer.set(f"big-{i:03d}", f"{i:03d}{_VALUE}")
            except NodeStateFull as exc:
                refusal = exc
                break
            accepted.append(f"big-{i:03d}")
        assert refusal is not None, "200 writes of 59 KB were all acknowledged"
        assert isinstance(refusal, KeyValueTooLarge)
        assert "peers would refuse" in str(refusal)
        assert 130 < len(accepted) < 145
        assert writer.get(f"big-{len(accepted):03d}") is None
        # Whatever fits still goes in, and arrives: a tiny key, or its honest refusal.
        try:
            writer.set("tiny", "t")
        except NodeStateFull:
            pass
        else:
            accepted.append("tiny")

        def replicated() -> bool:
            return all(reader.get(key, writer.self_id) is not None for key in accepted)

        await wait_until(replicated, 120, "every acknowledged key on the peer")
        assert reader.stats.dropped["over_limit"] == 0


def _bomb_datagram(sender_id: bytes) -> bytes:
    ops = (b"\x02" + struct.pack("<Q", 7)) * (0xFFFF // 9)
    frame = zstandard.ZstdCompressor(level=3).compress(ops)
    node_op = b"\x00" + sender_id + struct.pack("<QQ", 0, 0)
    parts = [struct.pack("<HBB", MAGIC, 0, MSG_ACK), struct.pack("<BH", 2, len(node_op)), node_op]
    parts += [struct.pack("<BH", 1, len(frame)) + frame] * 40  # 2.6 MB of operations
    parts.append(b"\x00")
    return b"".join(parts)


@pytest.mark.trio
async def test_a_decompression_bomb_is_counted_under_its_own_reason(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork(seed=12)
    async with open_cluster(1, transport=network.transport()) as (node,):
        node.set("k", "v")
        attacker = network.bind(SocketAddress.parse("127.0.0.1:0"))
        await attacker.send(_bomb_datagram(node_id_bytes(node.self_id)), node.gossip_addr)
        await attacker.send(b"garbage", node.gossip_addr)
        await wait_until(
            lambda: (
                node.stats.dropped["decompression_bomb"] == 1
                and node.stats.dropped["malformed"] == 1
            ),
            5,
            "the bomb and the garbage counted apart",
        )
        assert node.get("k") == "v"
