#!/usr/bin/env python3
"""Mutation fuzzer for a node's receive path: malformed datagrams must only ever be dropped.

Usage::

    python scripts/bench_fuzz.py [--count N] [--seed S] [--vectors DIR] [--json PATH]

Feeds ``--count`` datagrams (default 1,000,000) through the node's own receive path,
``gossip_tui.core.receive.receive_datagram`` and ``NodeStats.count_received``, as
``Node._receive_loop`` calls them: a datagram the decoder refuses is dropped and counted in
``stats.dropped["malformed"]``; anything else goes to ``GossipEngine.handle_message`` on an
engine that already holds a cluster (about 20 nodes with keys and tombstones, live and dead
ones; set back to that state every 100 accepted datagrams, so that junk nodes do not pile
up), and its reply is encoded. Every 1,000 datagrams the engine also runs a gossip round and
a liveness sweep, as the node's other tasks would.

The datagrams are mutations of a corpus: the chitchat golden vectors
(``../shared/chitchat-vectors/*.bin``; the run goes on without them, saying so) plus
messages made by a random generator of well-formed Syn, SynAck, Ack and BadCluster
(random names, generations, IPv4 and IPv6 addresses, digests, key-values of every status,
raw and zstd blocks). Mutations: bit flips, interesting bytes, u16 length and u64 fields
overwritten with edge values, truncation, extension, insertion, deletion, duplication,
splicing two messages, header changes, random bodies, mutation of the decompressed
operation stream of a delta (re-wrapped raw or recompressed, so that the corruption reaches
the operation parser), and stacks of several of these.

Checked, and the run fails (exit status 1) otherwise:

* nothing but ``DecodeError`` escapes ``decode``; ``handle_message``, the reply's encoding,
  the gossip round and the liveness sweep never raise;
* a datagram the decoder rejected leaves the engine exactly as it was (its digest-level
  state compared after every rejection; the whole state, key-values, failure detector and
  RNG included, for one datagram in 500);
* the drop counter counts exactly the rejected datagrams.

Printed: datagrams per second, and counts by outcome and by mutator.
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import struct
import sys
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import attrs
import zstandard

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from gossip_tui.core import codec  # noqa: E402
from gossip_tui.core import receive as receive_path  # noqa: E402
from gossip_tui.core.codec import (  # noqa: E402
    BLOCK_COMPRESSED,
    BLOCK_RAW,
    BLOCK_THRESHOLD,
    MAX_DATAGRAM_SIZE,
    DecodeError,
    EncodeError,
    encode,
    encode_digest,
)
from gossip_tui.core.engine import GossipEngine  # noqa: E402
from gossip_tui.core.failure_detector import FailureDetectorConfig  # noqa: E402
from gossip_tui.core.messages import (  # noqa: E402
    Ack,
    BadCluster,
    Delta,
    Digest,
    KeyValueMutation,
    Message,
    NodeDelta,
    NodeDigest,
    Syn,
    SynAck,
)
from gossip_tui.core.models import KeyStatus, NodeId, SocketAddress  # noqa: E402
from gossip_tui.core.receive import receive_datagram  # noqa: E402
from gossip_tui.node import NodeStats  # noqa: E402

DEFAULT_VECTORS = REPO.parent / "shared" / "chitchat-vectors"
DEFAULT_COUNT = 1_000_000
CLUSTER_ID = "testing"
TICK_EVERY = 1_000
FULL_CHECK_EVERY = 500
RESET_EVERY = 100  # accepted datagrams between two resets of the engine to its base state
MAX_FAILURES_KEPT = 20
_U16 = struct.Struct("<H")
_U64 = struct.Struct("<Q")
_INTERESTING_BYTES = (0x00, 0x01, 0x02, 0x03, 0x04, 0x06, 0x7F, 0x80, 0xFE, 0xFF)
_INTERESTING_U16 = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x3FFF, 0x4000, 0x7FFF, 0x8000, 0xFFFF)
_INTERESTING_U64 = (0, 1, 2, 0x7FFF_FFFF, 0xFFFF_FFFF, 1 << 63, (1 << 63) - 1, (1 << 64) - 1)

# --------------------------------------------------------------------------- corpus


def load_vectors(directory: Path) -> list[bytes]:
    """The golden vectors' payloads, or none if the directory is absent."""
    if not directory.is_dir():
        return []
    return [path.read_bytes() for path in sorted(directory.glob("*.bin"))]


_NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-_:.é漢🙂"


def random_text(rng: random.Random, max_len: int = 24) -> str:
    return "".join(rng.choice(_NAME_ALPHABET) for _ in range(rng.randrange(max_len + 1)))


def random_addr(rng: random.Random) -> SocketAddress:
    if rng.random() < 0.15:
        return SocketAddress.parse(f"[::1]:{rng.randrange(65536)}")
    return SocketAddress.parse(
        f"127.{rng.randrange(256)}.{rng.randrange(256)}.1:{rng.randrange(65536)}"
    )


def random_node(rng: random.Random, names: Sequence[NodeId] = ()) -> NodeId:
    if names and rng.random() < 0.5:
        return rng.choice(names)
    generation = rng.choice([0, 1, rng.randrange(1 << 32), rng.randrange(1 << 64)])
    return NodeId(random_text(rng) or "n", generation, random_addr(rng))


def random_digest(rng: random.Random, names: Sequence[NodeId]) -> Digest:
    nodes = {}
    for _ in range(rng.randrange(8)):
        nodes[random_node(rng, names)] = NodeDigest(
            rng.choice([0, 1, rng.randrange(1 << 20), rng.randrange(1 << 64)]),
            rng.choice([0, rng.randrange(50)]),
            rng.choice([0, rng.randrange(100), rng.randrange(1 << 64)]),
        )
    return Digest(nodes)


def random_delta(rng: random.Random, names: Sequence[NodeId]) -> Delta:
    node_deltas = []
    used = set()
    for _ in range(rng.randrange(5)):
        node = random_node(rng, names)
        if node in used:
            continue
        used.add(node)
        version = rng.randrange(20)
        kvs = []
        for _ in range(rng.randrange(6)):
            version += rng.randrange(1, 5)
            status = rng.choice(list(KeyStatus))
            value = "" if status is KeyStatus.DELETED else random_text(rng, 40)
            kvs.append(KeyValueMutation(random_text(rng, 12) or "k", value, version, status))
        max_version = kvs[-1].version if kvs else rng.randrange(50)
        node_deltas.append(
            NodeDelta(node, rng.randrange(10), rng.randrange(5), tuple(kvs), max_version)
        )
    return Delta(tuple(node_deltas))


def random_message(rng: random.Random, names: Sequence[NodeId]) -> Message:
    kind = rng.randrange(10)
    if kind < 3:
        cluster = CLUSTER_ID if rng.random() < 0.8 else random_text(rng)
        return Syn(cluster, random_digest(rng, names))
    if kind < 6:
        return SynAck(random_digest(rng, names), random_delta(rng, names))
    if kind < 9:
        return Ack(random_delta(rng, names))
    return BadCluster()


def generated_corpus(rng: random.Random, names: Sequence[NodeId], count: int) -> list[bytes]:
    corpus: list[bytes] = []
    while len(corpus) < count:
        try:
            corpus.append(encode(random_message(rng, names)))
        except EncodeError:
            continue
    return corpus


# --------------------------------------------------------------------------- delta streams


@attrs.frozen
class DeltaParts:
    """A datagram cut where its delta starts, with the delta's decompressed op stream."""

    prefix: bytes
    stream: bytes


def delta_parts(datagram: bytes) -> DeltaParts | None:
    try:
        message = codec.decode(datagram)
    except DecodeError:
        return None
    if isinstance(message, Ack):
        start = 4
    elif isinstance(message, SynAck):
        start = 4 + len(encode_digest(message.digest))
    else:
        return None
    stream = bytearray()
    pos = start
    decompressor = zstandard.ZstdDecompressor()
    while datagram[pos] != 0:
        tag = datagram[pos]
        (length,) = _U16.unpack_from(datagram, pos + 1)
        payload = datagram[pos + 3 : pos + 3 + length]
        if tag == BLOCK_COMPRESSED:
            stream += decompressor.decompress(payload, max_output_size=1 << 20)
        else:
            stream += payload
        pos += 3 + length
    return DeltaParts(datagram[:start], bytes(stream))


def wrap_stream(stream: bytes, compress: bool) -> bytes:
    blocks = []
    compressor = zstandard.ZstdCompressor()
    for start in range(0, len(stream), BLOCK_THRESHOLD):
        chunk = stream[start : start + BLOCK_THRESHOLD]
        if compress:
            frame = compressor.compress(chunk)
            blocks.append(bytes([BLOCK_COMPRESSED]) + _U16.pack(len(frame)) + frame)
        else:
            blocks.append(bytes([BLOCK_RAW]) + _U16.pack(len(chunk)) + chunk)
    return b"".join(blocks) + b"\x00"


# --------------------------------------------------------------------------- mutators


class Mutator:
    """Applies one of several mutations to a corpus entry."""

    def __init__(self, rng: random.Random, corpus: Sequence[bytes]) -> None:
        self.rng = rng
        self.corpus = list(corpus)
        self.deltas = [p for p in map(delta_parts, self.corpus) if p is not None]
        self.simple: list[tuple[str, Callable[[bytes], bytes]]] = [
            ("bitflip", self.bitflip),
            ("byte", self.interesting_byte),
            ("u16", self.u16),
            ("u64", self.u64),
            ("truncate", self.truncate),
            ("extend", self.extend),
            ("insert", self.insert),
            ("delete", self.delete),
            ("duplicate", self.duplicate),
            ("splice", self.splice),
            ("header", self.header),
        ]

    def pick(self) -> bytes:
        return self.rng.choice(self.corpus)

    def __call__(self) -> tuple[str, bytes]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.12 and self.deltas:
            return "stream", self.stream()
        if roll < 0.17:
            return "random", self.random_body()
        if roll < 0.32:
            data = self.pick()
            for _ in range(rng.randrange(2, 7)):
                data = rng.choice(self.simple)[1](data)
            return "havoc", data
        name, mutate = rng.choice(self.simple)
        return name, mutate(self.pick())

    def _pos(self, data: bytes) -> int:
        return self.rng.randrange(len(data)) if data else 0

    def bitflip(self, data: bytes) -> bytes:
        if not data:
            return data
        mutable = bytearray(data)
        for _ in range(self.rng.choice((1, 1, 1, 2, 3, 8))):
            mutable[self._pos(data)] ^= 1 << self.rng.randrange(8)
        return bytes(mutable)

    def interesting_byte(self, data: bytes) -> bytes:
        if not data:
            return data
        mutable = bytearray(data)
        value = self.rng.choice((*_INTERESTING_BYTES, self.rng.randrange(256)))
        mutable[self._pos(data)] = value
        return bytes(mutable)

    def u16(self, data: bytes) -> bytes:
        if len(data) < 2:
            return data
        pos = self.rng.randrange(len(data) - 1)
        value = self.rng.choice((*_INTERESTING_U16, len(data) - pos, len(data) - pos - 3))
        return data[:pos] + _U16.pack(max(0, min(0xFFFF, value))) + data[pos + 2 :]

    def u64(self, data: bytes) -> bytes:
        if len(data) < 8:
            return data
        pos = self.rng.randrange(len(data) - 7)
        return data[:pos] + _U64.pack(self.rng.choice(_INTERESTING_U64)) + data[pos + 8 :]

    def truncate(self, data: bytes) -> bytes:
        return data[: self.rng.randrange(len(data) + 1)]

    def _random_bytes(self, most: int) -> bytes:
        return self.rng.randbytes(self.rng.randrange(1, most + 1))

    def extend(self, data: bytes) -> bytes:
        return data + self._random_bytes(64)

    def insert(self, data: bytes) -> bytes:
        pos = self._pos(data)
        return data[:pos] + self._random_bytes(16) + data[pos:]

    def delete(self, data: bytes) -> bytes:
        pos = self._pos(data)
        return data[:pos] + data[pos + self.rng.randrange(1, 17) :]

    def duplicate(self, data: bytes) -> bytes:
        pos = self._pos(data)
        chunk = data[pos : pos + self.rng.randrange(1, 65)]
        return data[:pos] + chunk * self.rng.randrange(2, 5) + data[pos:]

    def splice(self, data: bytes) -> bytes:
        other = self.pick()
        return data[: self._pos(data)] + other[self._pos(other) :]

    def header(self, data: bytes) -> bytes:
        head = bytearray(data[:4].ljust(4, b"\x00"))
        head[self.rng.randrange(4)] = self.rng.randrange(256)
        if self.rng.random() < 0.5:
            head[:3] = b"\x53\xb0\x00"
        return bytes(head) + data[4:]

    def random_body(self) -> bytes:
        head = b"\x53\xb0\x00" + bytes([self.rng.randrange(5)])
        return head + self.rng.randbytes(self.rng.randrange(300))

    def stream(self) -> bytes:
        parts = self.rng.choice(self.deltas)
        stream = parts.stream
        for _ in range(self.rng.randrange(1, 4)):
            stream = self.rng.choice(self.simple[:9])[1](stream)
        return parts.prefix + wrap_stream(stream, compress=self.rng.random() < 0.4)


# --------------------------------------------------------------------------- the engine


def _cluster(rng: random.Random, size: int) -> list[NodeId]:
    return [
        NodeId(f"peer-{i}", 1_700_000_000 + i, SocketAddress.parse(f"127.0.0.{20 + i}:7000"))
        for i in range(size)
    ]


def base_engine(vectors: Sequence[bytes], peers: Sequence[NodeId]) -> GossipEngine:
    """An engine that knows a cluster: the vectors' nodes and ``peers`` with keys and
    tombstones, most of them live, a few dead."""
    engine = GossipEngine(
        NodeId("fuzz-self", 1, SocketAddress.parse("127.0.0.1:7000")),
        CLUSTER_ID,
        now=0.0,
        failure_detector=FailureDetectorConfig(initial_interval=1.0),
        initial_key_values={"bind": "127.0.0.1:7000", "role": "fuzz-target"},
        rng=random.Random(0),
    )
    now = 0.0
    for data in vectors:
        try:
            engine.handle_message(codec.decode(data), now)
        except DecodeError:
            continue
    for beat in range(1, 8):
        now = float(beat)
        # The last few peers stop beating early: they end up dead.
        beating = peers if beat < 3 else peers[:-4]
        digest = Digest({p: NodeDigest(10 * beat, 0, 6 if p in beating else 0) for p in beating})
        node_deltas = []
        if beat == 1:
            for p in peers:
                kvs = (
                    KeyValueMutation("bind", str(p.gossip_addr), 1),
                    KeyValueMutation("load", f"{p.node_id}-load", 2),
                    KeyValueMutation("gone", "", 3, KeyStatus.DELETED),
                    KeyValueMutation("lease", "temporary", 4, KeyStatus.DELETE_AFTER_TTL),
                    KeyValueMutation("color", "teal", 6),
                )
                node_deltas.append(NodeDelta(p, 0, 0, kvs, 6))
        engine.handle_message(SynAck(digest, Delta(tuple(node_deltas))), now)
        engine.start_round(now)
        engine.update_liveness(now)
    engine.drain_changes()
    return engine


def state_digest(engine: GossipEngine) -> Hashable:
    """Cheap and checked after every rejection: heartbeats, versions, sizes, liveness."""
    state = engine.state
    return (
        tuple(
            (n, s.heartbeat, s.max_version, s.last_gc_version, s.last_update, s.size)
            for n, s in state.node_states.items()
        ),
        state.total_size,
        len(state.changes),
        tuple(sorted(state.rejected.items())),
        frozenset(engine.detector.live_nodes()),
        frozenset(engine.detector.dead_nodes()),
    )


def full_state(engine: GossipEngine, now: float) -> Any:
    """Everything: every key-value (with its local deletion time), phi, seeds, the RNG."""
    return (
        state_digest(engine),
        engine.snapshot(now),
        tuple(
            (n, tuple((k, v, v.status_since) for k, v in s.key_values.items()))
            for n, s in engine.state.node_states.items()
        ),
        tuple(sorted(engine.seed_addrs)),
        engine.rng.getstate(),
    )


# --------------------------------------------------------------------------- the run


@attrs.define
class FuzzReport:
    count: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = attrs.field(factory=Counter)
    seconds_by_outcome: dict[str, float] = attrs.field(factory=lambda: defaultdict(float))
    mutators: Counter[str] = attrs.field(factory=Counter)
    messages: Counter[str] = attrs.field(factory=Counter)
    stats: NodeStats = attrs.field(factory=NodeStats)
    vectors: int = 0
    generated: int = 0
    digest_checks: int = 0
    full_checks: int = 0
    resets: int = 0
    failures: list[str] = attrs.field(factory=list)
    failure_count: int = 0

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def fail(self, what: str, data: bytes) -> None:
        self.failure_count += 1
        self.outcomes[what] += 1
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append(f"{what}: {data.hex()}\n{traceback.format_exc()}")

    def ok(self) -> bool:
        malformed = self.outcomes["malformed"]
        return (
            self.failure_count == 0
            and self.stats.dropped["malformed"] == malformed
            and self.stats.datagrams_in == self.count
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "seconds": round(self.seconds, 3),
            "datagrams_per_second": round(self.rate),
            "outcomes": dict(self.outcomes),
            "seconds_by_outcome": {k: round(v, 3) for k, v in self.seconds_by_outcome.items()},
            "mutators": dict(self.mutators),
            "accepted_messages": dict(self.messages),
            "dropped": dict(self.stats.dropped),
            "vectors": self.vectors,
            "generated": self.generated,
            "digest_checks": self.digest_checks,
            "full_checks": self.full_checks,
            "engine_resets": self.resets,
            "failures": self.failures,
            "ok": self.ok(),
        }


def receive(engine: GossipEngine, stats: NodeStats, data: bytes, now: float) -> Message | None:
    """The node's receive path for one datagram, without the socket: the product's own
    ``receive_datagram`` and ``NodeStats.count_received`` (a dropped datagram's
    DecodeError is re-raised for the caller), then the reply's encoding."""
    stats.datagrams_in += 1
    stats.bytes_in += len(data)
    received = receive_datagram(engine, data, now)
    stats.count_received(received)
    if received.decode_error is not None:
        raise received.decode_error
    reply = received.reply
    if reply is not None:
        encoded = encode(reply)
        if len(encoded) > MAX_DATAGRAM_SIZE:
            raise EncodeError(f"a reply of {len(encoded)} bytes does not fit a datagram")
        stats.datagrams_out += 1
    return received.message


def run_fuzz(
    count: int = DEFAULT_COUNT,
    *,
    seed: int = 0,
    vectors_dir: Path = DEFAULT_VECTORS,
    generated: int = 300,
    progress: Callable[[FuzzReport], None] | None = None,
) -> FuzzReport:
    rng = random.Random(seed)
    vectors = load_vectors(vectors_dir)
    peers = _cluster(rng, 12)
    corpus = vectors + generated_corpus(rng, peers, generated)
    report = FuzzReport(vectors=len(vectors), generated=generated)
    # Reset by unpickling: a deep copy takes ten times longer.
    template = pickle.dumps(base_engine(vectors, peers))
    engine: GossipEngine = pickle.loads(template)
    stats = report.stats
    mutate = Mutator(rng, corpus)
    now = 10.0
    accepted_since_reset = 0
    before = state_digest(engine)
    started = time.perf_counter()
    for i in range(count):
        name, data = mutate()
        report.mutators[name] += 1
        # Every FULL_CHECK_EVERY datagrams, the whole state is taken before, to compare
        # after if the datagram is rejected; the digest-level state is compared every time.
        full_before = full_state(engine, now) if i % FULL_CHECK_EVERY == 0 else None
        rejected = False
        received_at = time.perf_counter()
        try:
            message = receive(engine, stats, data, now)
        except DecodeError:
            report.seconds_by_outcome["malformed"] += time.perf_counter() - received_at
            report.outcomes["malformed"] += 1
            report.digest_checks += 1
            if state_digest(engine) != before:
                report.fail("state_changed_by_rejected", data)
                before = state_digest(engine)
            elif full_before is not None:
                report.full_checks += 1
                if full_state(engine, now) != full_before:
                    report.fail("state_changed_by_rejected", data)
            rejected = True
        except EncodeError:
            report.fail("reply_unencodable", data)
        except Exception:
            # decode raising anything else, or the engine failing (the node would count
            # it as "rejected" and log a traceback): a bug either way.
            try:
                receive_path.decode(data)  # the decoder the receive path calls
            except DecodeError:
                pass
            except Exception:
                report.fail("decode_raised", data)
            else:
                report.fail("engine_raised", data)
        else:
            report.seconds_by_outcome["accepted"] += time.perf_counter() - received_at
            report.outcomes["accepted"] += 1
            report.messages[type(message).__name__] += 1
            accepted_since_reset += 1
            now += 0.001
            if accepted_since_reset >= RESET_EVERY:
                engine = pickle.loads(template)
                report.resets += 1
                accepted_since_reset = 0
        if not rejected:
            before = state_digest(engine)
        if i % TICK_EVERY == TICK_EVERY - 1:
            now += 0.5
            try:
                engine.start_round(now)
                engine.update_liveness(now)
                encode(engine.create_syn(now))
                engine.drain_changes()
            except Exception:
                report.fail("tick_raised", b"")
            before = state_digest(engine)
            if progress is not None:
                report.count = i + 1
                report.seconds = time.perf_counter() - started
                progress(report)
    report.count = count
    report.seconds = time.perf_counter() - started
    return report


def print_report(report: FuzzReport, vectors_dir: Path) -> None:
    source = (
        f"{report.vectors} golden vectors from {vectors_dir}"
        if report.vectors
        else f"no golden vectors (none at {vectors_dir}): generated messages only"
    )
    print(f"corpus: {source} + {report.generated} generated messages")
    print(
        f"{report.count:,} datagrams in {report.seconds:.1f} s: "
        f"{report.rate:,.0f} datagrams/s through decode + handle_message"
    )
    for outcome, n in report.outcomes.most_common():
        spent = report.seconds_by_outcome.get(outcome, 0.0)
        speed = f"  {n / spent:>9,.0f}/s in the receive path alone" if spent else ""
        print(f"  {outcome:<28}{n:>10,}  {n / max(report.count, 1):7.2%}{speed}")
    print("accepted messages: " + ", ".join(f"{k} {v:,}" for k, v in report.messages.items()))
    print("by mutator: " + ", ".join(f"{k} {v:,}" for k, v in report.mutators.most_common()))
    print(
        f"node counters: datagrams_in {report.stats.datagrams_in:,}, "
        f"dropped {dict(report.stats.dropped)}, replies {report.stats.datagrams_out:,}"
    )
    print(
        f"state checks after rejections: {report.digest_checks:,} digest-level, "
        f"{report.full_checks:,} full; engine reset to its base state {report.resets:,} times"
    )
    if report.ok():
        print("OK: only DecodeError escaped; rejected datagrams changed nothing and were counted")
    else:
        print(f"FAILED: {report.failure_count} failures; first ones:")
        for failure in report.failures:
            print(failure)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="datagrams to feed")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generator")
    parser.add_argument("--vectors", type=Path, default=DEFAULT_VECTORS, help="golden vectors")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if not args.vectors.is_dir():
        print(f"golden vectors not found at {args.vectors}: fuzzing generated messages only")

    def progress(report: FuzzReport) -> None:
        if not args.quiet and report.count % 100_000 == 0:
            print(f"  ... {report.count:,} datagrams, {report.rate:,.0f}/s", flush=True)

    report = run_fuzz(args.count, seed=args.seed, vectors_dir=args.vectors, progress=progress)
    print_report(report, args.vectors)
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_dict(), indent=2))
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
