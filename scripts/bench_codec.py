"""Micro-benchmark of the chitchat codec's hot paths.

Usage::

    python scripts/bench_codec.py [--runs N] [--json PATH] [--vectors DIR]

Prints, for each case, the median and 95th percentile time of one call in microseconds:

* a Syn carrying a full 100-node digest (encode, decode);
* a SynAck and an Ack carrying a delta filled by ``DeltaWriter`` up to the 65,507-byte
  datagram budget (100 nodes, values of 100-200 bytes, half compressible, half not): building
  it with the writer, encoding it from scratch, decoding it;
* decoding the largest golden vector captured from the Rust chitchat, when present.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from gossip_tui.core.codec import (  # noqa: E402
    MAX_DATAGRAM_SIZE,
    DeltaWriter,
    decode,
    digest_size,
    encode,
)
from gossip_tui.core.messages import Ack, Delta, Digest, NodeDigest, Syn, SynAck  # noqa: E402
from gossip_tui.core.models import KeyStatus, NodeId, SocketAddress  # noqa: E402

DEFAULT_VECTORS = REPO.parent / "shared" / "chitchat-vectors"
ADJECTIVES = ["brave", "calm", "eager", "fuzzy", "gentle", "happy", "jolly", "keen", "lucky"]
ANIMALS = ["otter", "lynx", "heron", "badger", "falcon", "marten", "ibex", "koala", "wren"]
HEADER_LEN = 4


def fleet(count: int, rng: random.Random) -> list[NodeId]:
    nodes = []
    for i in range(count):
        port = 10_001 + i
        name = f"server:127.0.0.1:{port}-{rng.choice(ADJECTIVES)}-{rng.choice(ANIMALS)}"
        addr = SocketAddress.parse(f"127.0.0.1:{port}")
        nodes.append(NodeId(name, 1_700_000_000 + rng.randrange(10_000_000), addr))
    return nodes


def full_digest(nodes: list[NodeId], rng: random.Random) -> Digest:
    return Digest(
        {
            node: NodeDigest(
                rng.randrange(1, 100_000), rng.randrange(0, 50), rng.randrange(50, 500)
            )
            for node in nodes
        }
    )


def value(rng: random.Random, compressible: bool) -> str:
    size = rng.randrange(100, 201)
    if compressible:
        text = '{"status":"ready","role":"indexer","zone":"eu-west-1a","load":0.42}'
        return (text * 4)[:size]
    return base64.b64encode(rng.randbytes(size)).decode()[:size]  # 6 bits of entropy a byte


Plan = list[tuple[NodeId, list[tuple[str, str, int]]]]


def delta_plan(nodes: list[NodeId], keys_per_node: int, rng: random.Random) -> Plan:
    """Keys and values for every node, generated once so that timing measures the codec."""
    return [
        (
            node,
            [
                (f"service.{k}.endpoint", value(rng, compressible=(k % 2 == 0)), k + 1)
                for k in range(keys_per_node)
            ],
        )
        for node in nodes
    ]


def fill_delta(plan: Plan, budget: int) -> Delta:
    """Feed the plan to a DeltaWriter, stopping at its first refusal, as chitchat does."""
    writer = DeltaWriter(budget)
    for node, kvs in plan:
        if not writer.try_add_node(node, 0, 0):
            break
        for key, val, version in kvs:
            if not writer.try_add_kv(key, val, version, KeyStatus.SET):
                return writer.finish()
    return writer.finish()


def op_stream_len(delta: Delta) -> int:
    return sum(
        1
        + 2
        + len(nd.node.node_id.encode())
        + 8
        + 5
        + 2
        + 16
        + sum(1 + 2 + len(kv.key) + 2 + len(kv.value.encode()) + 9 for kv in nd.key_values)
        for nd in delta.node_deltas
    )


def measure(fn: Callable[[], object], runs: int) -> dict[str, float]:
    for _ in range(max(3, runs // 20)):  # warm up caches and the allocator
        fn()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(runs):
        start = clock()
        fn()
        samples.append((clock() - start) / 1_000)
    samples.sort()
    return {
        "median_us": statistics.median(samples),
        "p95_us": samples[min(len(samples) - 1, int(len(samples) * 0.95))],
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500, help="timed calls per case")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    parser.add_argument("--vectors", type=Path, default=DEFAULT_VECTORS, help="golden vectors")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--keys-per-node", type=int, default=3, help="keys of each node in the ~60 KB delta"
    )
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    runs: int = args.runs

    nodes = fleet(100, rng)
    digest = full_digest(nodes, rng)
    results: list[dict[str, Any]] = []

    def case(name: str, size: int, fn: Callable[[], object], note: str = "") -> None:
        results.append({"case": name, "bytes": size, "note": note, **measure(fn, runs)})

    syn = Syn("production-cluster", digest)
    syn_bytes = encode(syn)
    assert decode(syn_bytes) == syn
    case("syn 100-node digest: encode", len(syn_bytes), lambda: encode(syn))
    case("syn 100-node digest: decode", len(syn_bytes), lambda: decode(syn_bytes))

    budget = MAX_DATAGRAM_SIZE - HEADER_LEN - digest_size(digest)
    deltas = [
        ("~60 KB delta", delta_plan(nodes, args.keys_per_node, rng)),
        # Every node has more than fits: the writer fills the datagram to the last byte its
        # bound allows. Compressed blocks make room, so the op stream far exceeds 64 KB.
        ("full delta", delta_plan(nodes, 40, rng)),
    ]
    notes = []
    for label, plan in deltas:
        delta = fill_delta(plan, budget)
        kv_count = sum(len(nd.key_values) for nd in delta.node_deltas)
        stream_len = op_stream_len(delta)
        note = f"{len(delta.node_deltas)} nodes, {kv_count} kvs, op stream {stream_len} B"
        notes.append(f"{label}: {note}")
        synack = SynAck(digest, delta)
        synack_bytes = encode(synack)
        assert len(synack_bytes) <= MAX_DATAGRAM_SIZE
        assert decode(synack_bytes) == synack
        scratch = SynAck(digest, Delta(delta.node_deltas))  # no cached bytes: compress again
        ack = Ack(Delta(delta.node_deltas))
        ack_bytes = encode(ack)

        def build(plan: Plan = plan) -> object:
            return fill_delta(plan, budget)

        def encode_synack(message: SynAck = scratch) -> object:
            return encode(message)

        def decode_synack(data: bytes = synack_bytes) -> object:
            return decode(data)

        def encode_ack(message: Ack = ack) -> object:
            return encode(message)

        def decode_ack(data: bytes = ack_bytes) -> object:
            return decode(data)

        case(f"{label}: build with DeltaWriter", len(synack_bytes), build, note)
        case(f"synack {label}: encode", len(synack_bytes), encode_synack, note)
        case(f"synack {label}: decode", len(synack_bytes), decode_synack, note)
        case(f"ack {label}: encode", len(ack_bytes), encode_ack, note)
        case(f"ack {label}: decode", len(ack_bytes), decode_ack, note)

    vectors = sorted(args.vectors.glob("*.bin"), key=lambda p: p.stat().st_size)
    if vectors:
        largest = vectors[-1]
        data = largest.read_bytes()
        case(f"golden {largest.stem}: decode", len(data), lambda: decode(data))
    else:
        print(f"(no golden vectors in {args.vectors}; skipping that case)", file=sys.stderr)

    width = max(len(r["case"]) for r in results)
    print(f"{'case':<{width}}  {'bytes':>6}  {'median µs':>10}  {'p95 µs':>8}")
    for r in results:
        print(
            f"{r['case']:<{width}}  {r['bytes']:>6}  {r['median_us']:>10.1f}  {r['p95_us']:>8.1f}"
        )
    for note in notes:
        print(f"  {note}")
    print(f"  {runs} runs per case, Python {sys.version.split()[0]}")
    if args.json:
        payload = {
            "python": sys.version,
            "runs": runs,
            "deltas": notes,
            "results": results,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
