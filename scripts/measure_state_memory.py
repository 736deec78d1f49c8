"""Check the state bounds' memory estimate against what Python really holds.

Usage::

    python scripts/measure_state_memory.py [--keys N]

Fills one node's replicated state with N key-values of several shapes, each arriving as
real datagrams through the decoder (so every string is a fresh object, as from the
network), and prints, per shape, the bytes tracemalloc saw allocated and kept, the
estimate the state bounds count (``ClusterState.total_size``), and their ratio. Exits
non-zero when a ratio falls outside [0.5, 2]: the bounds would then be off by more than
a factor of two. The growth of the resident set (measured in a fresh process, without
tracemalloc) is printed too, for reference.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from gossip_tui.core.codec import decode, encode  # noqa: E402
from gossip_tui.core.messages import Ack, Delta, KeyValueMutation, NodeDelta  # noqa: E402
from gossip_tui.core.models import KeyStatus, NodeId, SocketAddress  # noqa: E402
from gossip_tui.core.state import ClusterState, StateLimits  # noqa: E402

_BATCH = 1_000
_SHAPES: dict[str, tuple[Callable[[int], str], Callable[[int], str], KeyStatus]] = {
    "tiny keys, one-char values": (lambda i: f"k{i}", lambda i: "v", KeyStatus.SET),
    "tombstones": (lambda i: f"k{i}", lambda i: "", KeyStatus.DELETED),
    "12-char keys, 100-char values": (
        lambda i: f"key/{i:08d}",
        lambda i: f"{i:08d}" + "x" * 92,
        KeyStatus.SET,
    ),
    "accented 100-char values": (lambda i: f"k{i}", lambda i: "é" * 100, KeyStatus.SET),
    "1 KB values": (lambda i: f"k{i}", lambda i: f"{i:08d}" + "y" * 1_016, KeyStatus.SET),
}


def _datagrams(owner: NodeId, count: int, shape: str) -> list[bytes]:
    key, value, status = _SHAPES[shape]
    out = []
    for first in range(0, count, _BATCH):
        last = min(first + _BATCH, count)
        kvs = tuple(KeyValueMutation(key(i), value(i), i + 1, status) for i in range(first, last))
        out.append(encode(Ack(Delta((NodeDelta(owner, first, 0, kvs, last),)))))
    return out


def _rss_kib() -> int:
    """The process's resident set now (Linux), in KiB; 0 where /proc is absent."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024


def _fill(owner: NodeId, datagrams: list[bytes]) -> ClusterState:
    cluster = ClusterState(StateLimits(max_node_state_bytes=1 << 40, max_total_state_bytes=1 << 40))
    cluster.node_state_or_init(owner)
    for datagram in datagrams:
        message = decode(datagram)
        assert isinstance(message, Ack)
        cluster.apply_delta(message.delta, now=1.0)
        cluster.changes.clear()
    gc.collect()
    return cluster


def measure(shape: str, count: int) -> tuple[int, int]:
    """(bytes traced, bytes estimated) for ``count`` key-values."""
    owner = NodeId("owner", 1, SocketAddress.parse("127.0.0.1:7000"))
    datagrams = _datagrams(owner, count, shape)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        cluster = _fill(owner, datagrams)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return held, cluster.total_size


def rss_growth(shape: str, count: int) -> int:
    """Bytes the resident set grew by for ``count`` key-values, without tracemalloc
    (whose traces take memory too): meaningful only in a fresh process (--rss)."""
    owner = NodeId("owner", 1, SocketAddress.parse("127.0.0.1:7000"))
    datagrams = _datagrams(owner, count, shape)
    gc.collect()
    before = _rss_kib()
    cluster = _fill(owner, datagrams)
    grown = (_rss_kib() - before) * 1024
    del cluster
    return grown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--rss", choices=list(_SHAPES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss:
        print(rss_growth(args.rss, args.keys))
        return 0
    print(f"{args.keys:,} key-values per shape, Python {sys.version.split()[0]}")
    print(f"{'shape':32} {'traced/key':>11} {'estimate/key':>13} {'ratio':>6} {'RSS+/key':>9}")
    worst_ok = True
    for shape in _SHAPES:
        held, estimate = measure(shape, args.keys)
        # Each shape's RSS in a process of its own: memory freed by an earlier shape would
        # be reused and read as no growth.
        rss = int(
            subprocess.run(
                [sys.executable, __file__, "--keys", str(args.keys), "--rss", shape],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        ratio = held / estimate
        worst_ok &= 0.5 <= ratio <= 2.0
        print(
            f"{shape:32} {held / args.keys:11.0f} {estimate / args.keys:13.0f} "
            f"{ratio:6.2f} {rss / args.keys:9.0f}"
        )
    return 0 if worst_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
