"""Bounds that hold in bytes, on the running node (issue 11, part B): honest
acknowledgements past the per-node bound, and decompression bombs counted apart."""

from __future__ import annotations

import struct

import pytest
import trio
import zstandard

from gossip_tui.core.codec import MAGIC, MSG_ACK, node_id_bytes
from gossip_tui.core.models import SocketAddress
from gossip_tui.node import MemoryNetwork

from .helpers import open_cluster, wait_until


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
