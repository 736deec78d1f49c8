#!/usr/bin/env python3
"""How far stronger compression carries a V1 digest: for each id style, entry order
(chitchat's id order, or ids sorted on their reversed text) and zstd level, the largest
cluster whose Syn fits one datagram, and the CPU one Syn's digest costs at a given N.

The blocks stay chitchat's (16 KiB of entries each, every one a zstd frame its decoder
reads into a 65,535-byte buffer); only the level and the order of entries change, which
decoders do not see (chitchat collects the entries into a map). The codec's rule
(gossip_tui.core.codec.COMPACT_DIGEST_*) is chosen from this table.

    python scripts/bench/compression.py --levels 3 6 9 12 19 --at 5000
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import _cluster as bench
import zstandard
from scale import CLUSTER_ID, _digest

from gossip_tui.core.codec import (
    BLOCK_THRESHOLD,
    MAX_DATAGRAM_SIZE,
    PROTOCOL_V1,
    encode,
    node_id_bytes,
)
from gossip_tui.core.messages import Digest, NodeDigest, Syn
from gossip_tui.core.models import NodeId
from gossip_tui.core.simulation import NAMINGS, sim_address

# Header (4) and the cluster id ("sim": 2 + 3) beside the digest in a Syn.
SYN_TAIL = 4 + 2 + len(CLUSTER_ID)

ORDERS: dict[str, Callable[[tuple[NodeId, NodeDigest]], Any]] = {
    "id": lambda item: item[0].sort_key(),
    "reversed id": lambda item: (item[0].node_id[::-1], item[0].sort_key()),
}


def digest_bytes(digest: Digest, order: str, level: int) -> int:
    """The V1 digest's size on the wire with this order and level, as the codec frames it."""
    items = sorted(digest.nodes.items(), key=ORDERS[order])
    stream = b"".join(
        node_id_bytes(n)
        + nd.heartbeat.to_bytes(8, "little")
        + nd.last_gc_version.to_bytes(8, "little")
        + nd.max_version.to_bytes(8, "little")
        for n, nd in items
    )
    cctx = zstandard.ZstdCompressor(level=level)
    size = 1
    for start in range(0, len(stream), BLOCK_THRESHOLD):
        chunk = stream[start : start + BLOCK_THRESHOLD]
        size += 3 + min(len(cctx.compress(chunk)), len(chunk))
    return size


def capacity(ids: Sequence[NodeId], order: str, level: int) -> int:
    low, high = 1, len(ids)
    while low < high:
        mid = (low + high + 1) // 2
        digest = _digest(ids[:mid], True, random.Random(mid))
        if digest_bytes(digest, order, level) + SYN_TAIL <= MAX_DATAGRAM_SIZE:
            low = mid
        else:
            high = mid - 1
    return low


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[3, 6, 9, 12, 15, 19])
    parser.add_argument("--namings", nargs="+", choices=list(NAMINGS), default=list(NAMINGS))
    parser.add_argument("--at", type=int, default=5_000, help="N of the size / CPU columns")
    parser.add_argument("--max-nodes", type=int, default=12_000)
    parser.add_argument("--json", type=Path, default=Path("bench-results/compression.json"))
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for naming in args.namings:
        name_of = NAMINGS[naming]
        ids = [NodeId(name_of(i), 1, sim_address(i)) for i in range(args.max_nodes)]
        at = _digest(ids[: args.at], True, random.Random(args.at))
        for order in ORDERS:
            for level in args.levels:
                started = time.process_time()
                size = digest_bytes(at, order, level)
                cpu_ms = (time.process_time() - started) * 1000
                cap = capacity(ids, order, level)
                rows.append(
                    {
                        "naming": naming,
                        "order": order,
                        "level": level,
                        "capacity": cap,
                        f"bytes_at_{args.at}": size,
                        "cpu_ms": cpu_ms,
                    }
                )
                bench.log(f"{naming} {order} level {level}: {cap} nodes, {size} B, {cpu_ms:.0f} ms")
        # What the codec itself sends at that N (its rule applied).
        started = time.process_time()
        sent = len(encode(Syn(CLUSTER_ID, at, protocol_version=PROTOCOL_V1)))
        rows.append(
            {
                "naming": naming,
                "order": "codec rule",
                "level": None,
                "capacity": None,
                f"bytes_at_{args.at}": sent - SYN_TAIL,
                "cpu_ms": (time.process_time() - started) * 1000,
            }
        )
    bench.print_table(
        f"V1 digest: capacity (Syn <= {MAX_DATAGRAM_SIZE:,} B) per order and level, "
        f"size and CPU of one digest at {args.at:,} nodes (realistic heartbeats)",
        ["ids", "order", "level", "max nodes", f"digest B at {args.at}", "CPU ms"],
        [
            [
                r["naming"],
                r["order"],
                r["level"],
                r["capacity"],
                r[f"bytes_at_{args.at}"],
                r["cpu_ms"],
            ]
            for r in rows
        ],
    )
    bench.write_rows(args, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
