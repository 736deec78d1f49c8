#!/usr/bin/env python3
"""Structure-aware attack on a real 3-node cluster: hostile datagrams and HTTP requests,
then what they did to the nodes.

Three headless nodes (``python -m gossip_tui --headless``, node-0 the seed of the others,
gossip over UDP and the HTTP API over TCP on one port each, every address on 127.0.0.1)
are started as in ``scripts/bench/_cluster.py``, which this script reuses. Once they see
each other live, the selected cases run one after the other, each bounded in datagrams and
in time, every datagram sent to 127.0.0.1 only (fake nodes advertise 127.77.x.y addresses,
so the nodes' own gossip to them stays on the loopback too). In the default order, the
cases that leave the cluster broken today come last:

========================  ===============================================================
mutations                 ``--mutations`` field-level mutations of valid Syn/SynAck/Ack
                          (lengths, counts, tags, u64 values, strings, dropped, duplicated
                          and swapped fields, truncation), round-robin to the three nodes
http-deep-json / -bad-path / -h2c   a deeply nested JSON body, ``%ff`` paths, an h2c upgrade
bomb-setmax               65 KB Acks of zstd blocks of repeated SetMaxVersion ops (143 MB)
bomb-zeros                65 KB Acks of zstd blocks of zero bytes (195 MB)
flood-keys                200,000 tiny keys for one fake node, in full-size Acks
amplification             15-byte Syns from a 127.0.0.x source: reply bytes per byte sent
generation-max            a forged generation 2^64-1 of node-1
forge-keys / -leaving     node-1's state forged on node-0: keys / its leaving marker
forge-reset / -freeze     node-1's state reset by a forged gc / frozen at version 2^64-1
heartbeat-max             a Syn to node-0 naming node-2 with heartbeat 2^64-1
heartbeat-timebomb        the same naming node-1 with 2^64-1-3000 (a slow fuse)
digest-name-65260 / 65400 one fake node whose name is 65,260 / 65,400 bytes long
digest-many               about 1,500 short fake node ids
========================  ===============================================================

Mutated datagrams whose digest would teach a node an address outside 127.0.0.0/8 are not
sent. ``--isolate`` gives every case a fresh cluster, so that each case's figures are its
own; without it, later cases meet what earlier ones left.

Datagrams are paced: after every ~60 KB (or 64 datagrams) sent to a node, a probe (a Syn
of another cluster, answered with a 4-byte BadCluster) is sent from its own socket and
waited for. A node handles its datagrams in order, so the probe's answer means every
earlier datagram was handled: the pacing keeps our datagrams within the node's receive
buffer, the probe's round trip is the node's stall (a bomb's decoding time shows there),
and the counters read after the last probe are complete. The kernel's drops on the node's
socket (``/proc/net/udp``) are reported but not credited: while a node stalls, the kernel
drops whatever arrives, mostly its peers' gossip.

Measured per case: datagrams and bytes sent, replies, the worst stall, the target's drop
counters by reason (``GET /metrics``) against the datagrams that had to be refused, the
kernel's drops, new tracebacks in each node's
stderr, the peak RSS of each node (``/proc/PID/status`` VmRSS, polled), the time a key
written afterwards takes to reach the other nodes, and a case-specific check.

"Had to be refused" is known without trusting the node: a datagram the codec cannot decode
(or a bomb) must be counted; a valid Syn or SynAck that got no reply was refused, so it
must be counted too. Other datagrams (valid Acks) may be accepted silently.

Targets (the exit status is 1 when one is missed, 2 when the cluster could not be run):

* no node exits (crash) and no "Traceback" appears in any node's stderr;
* after the attack a key set on node-0 reaches node-1 and node-2 within 2 s;
* every node's peak RSS (VmHWM) stays under ``--rss-limit-mib`` (200 MiB by default: an
  idle node takes ~45 MiB, and the attack's state is bounded by the node's limits);
* every datagram that had to be refused is counted under a reason;
* the real nodes are live on every node and no fake node is live anywhere (waiting up to
  ``--fake-timeout`` seconds: a fake node that got a few heartbeats stays live for up to
  about 8 x (5 s x 5 + its intervals) / (5 + their count) + 3 s, by the failure
  detector's prior: 35 to 45 s).

Case checks (a forged key gone, no ghost generation, the node's own heartbeat sane...) are
reported beside the targets but do not decide the exit status.

    python scripts/attack.py                        # every case, one cluster
    python scripts/attack.py --isolate              # a fresh cluster for each case
    python scripts/attack.py --cases forge,bomb --json out.json
    python scripts/attack.py --list-cases
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import http.client
import ipaddress
import json
import random
import re
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
import zstandard

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "scripts" / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import _cluster as bench  # noqa: E402
from _cluster import Cluster, NodeProcess  # noqa: E402

from gossip_tui.core.codec import (  # noqa: E402
    BLOCK_COMPRESSED,
    BLOCK_END,
    BLOCK_RAW,
    BLOCK_THRESHOLD,
    MAGIC,
    MAX_DATAGRAM_SIZE,
    MSG_ACK,
    MSG_SYN,
    MSG_SYNACK,
    OP_KEY_VALUE,
    OP_NODE,
    OP_SET_MAX_VERSION,
    PROTOCOL_VERSION,
    DecodeError,
    DeltaWriter,
    decode,
    encode,
)
from gossip_tui.core.converter import converter  # noqa: E402
from gossip_tui.core.engine import LEAVING_KEY  # noqa: E402
from gossip_tui.core.messages import (  # noqa: E402
    Ack,
    Delta,
    Digest,
    KeyValueMutation,
    NodeDelta,
    NodeDigest,
    Syn,
    SynAck,
)
from gossip_tui.core.models import KeyStatus, NodeId, SocketAddress  # noqa: E402

HOST = bench.HOST
CLUSTER_ID = "testing"
U64_MAX = 2**64 - 1
# Fake nodes live here: still the loopback, where nobody listens.
FAKE_NET = "127.77"
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")

# Pacing: a probe after this many bytes or datagrams to one node (its receive buffer holds
# ~200 KB), and how long a probe may wait (a bomb takes seconds to decode today).
PACE_BYTES = 60_000
PACE_COUNT = 64
PROBE_TIMEOUT = 20.0
PROBE_CLUSTER = "attack-probe"
# A datagram is only sent once the node's receive buffer (~208 KB by default) holds less
# than this: after a stall it is full of the peers' gossip, and ours would be dropped.
RECEIVE_ROOM = 64 * 1024

_U16 = struct.Struct("<H")
_U64 = struct.Struct("<Q")
_GROUP_BAR = re.compile(r"^\s*\| ?")
_GROUP_PREFIXES = ("ExceptionGroup", "BaseExceptionGroup", "During handling", "The above")
_HEADER = struct.Struct("<HBB")


def log(message: str) -> None:
    bench.log(message)


# --------------------------------------------------------------------------- datagrams


class Expect(enum.Enum):
    """What a node must do with a datagram we send."""

    REFUSE = "refuse"  # malformed or a bomb: refused, and counted
    REPLY = "reply"  # a valid Syn/SynAck: answered, or refused and counted
    ANY = "any"  # a valid Ack: may be applied silently


def classify(datagram: bytes) -> Expect:
    """By our own decoder: what the node has to do with ``datagram``."""
    try:
        message = decode(datagram)
    except DecodeError:
        return Expect.REFUSE
    return Expect.REPLY if isinstance(message, (Syn, SynAck)) else Expect.ANY


def header(msg_type: int) -> bytes:
    return _HEADER.pack(MAGIC, PROTOCOL_VERSION, msg_type)


def fake_node(name: str, index: int, generation: int = 1) -> NodeId:
    addr = SocketAddress.parse(f"{FAKE_NET}.{index // 250 % 250 + 1}.{index % 250 + 1}:7")
    return NodeId(name, generation, addr)


def syn(entries: dict[NodeId, NodeDigest], cluster_id: str = CLUSTER_ID) -> bytes:
    return encode(Syn(cluster_id, Digest(entries)))


def syns_within_budget(entries: dict[NodeId, NodeDigest]) -> list[bytes]:
    """The entries spread over as few Syns as fit in a datagram each."""
    datagrams: list[bytes] = []
    batch: dict[NodeId, NodeDigest] = {}
    for node, digest in entries.items():
        batch[node] = digest
        if len(syn(batch)) > MAX_DATAGRAM_SIZE:
            del batch[node]
            datagrams.append(syn(batch))
            batch = {node: digest}
    if batch:
        datagrams.append(syn(batch))
    return datagrams


def ack(*node_deltas: NodeDelta) -> bytes:
    return encode(Ack(Delta(tuple(node_deltas))))


def zstd_frame(content: bytes) -> bytes:
    compressed: bytes = zstandard.ZstdCompressor(level=19).compress(content)
    return compressed


def bomb(block_content: bytes, first_block: bytes = b"") -> bytes:
    """An Ack filled up to the datagram limit with zstd blocks, each ``block_content``
    (``first_block`` first): megabytes of operations in 65 KB."""
    out = bytearray(header(MSG_ACK))
    if first_block:
        frame = zstd_frame(first_block)
        out += bytes((BLOCK_COMPRESSED,)) + _U16.pack(len(frame)) + frame
    frame = zstd_frame(block_content)
    block = bytes((BLOCK_COMPRESSED,)) + _U16.pack(len(frame)) + frame
    room = MAX_DATAGRAM_SIZE - 4 - len(out) + 4 - 1  # the end tag takes a byte
    out += block * (room // len(block))
    out.append(BLOCK_END)
    return bytes(out)


# --------------------------------------------------------------------------- fields


@attrs.frozen
class Field:
    """One wire field of a datagram: its kind (what a mutation may do to it) and bytes."""

    kind: str
    data: bytes

    @property
    def number(self) -> int:
        return int.from_bytes(self.data, "little")


def _u8(kind: str, value: int) -> Field:
    return Field(kind, bytes((value,)))


def _u16(kind: str, value: int) -> Field:
    return Field(kind, _U16.pack(value))


def _u64(kind: str, value: int) -> Field:
    return Field(kind, _U64.pack(value))


def _str(raw: bytes) -> list[Field]:
    return [_u16("len", len(raw)), Field("str", raw)]


def node_fields(node: NodeId) -> list[Field]:
    ip = node.gossip_addr.ip
    return [
        *_str(node.node_id.encode()),
        _u64("generation", node.generation),
        _u8("ip_version", ip.version),
        Field("ip", ip.packed),
        _u16("port", node.gossip_addr.port),
    ]


def digest_fields(digest: Digest) -> list[Field]:
    fields = [_u16("count", len(digest.nodes))]
    for node, nd in digest.nodes.items():
        fields += node_fields(node)
        fields += [
            _u64("heartbeat", nd.heartbeat),
            _u64("gc", nd.last_gc_version),
            _u64("version", nd.max_version),
        ]
    return fields


def op_fields(delta: Delta) -> list[Field]:
    fields: list[Field] = []
    for nd in delta.node_deltas:
        fields += [_u8("op_tag", OP_NODE), *node_fields(nd.node)]
        fields += [_u64("gc", nd.last_gc_version), _u64("from", nd.from_version_excluded)]
        for kv in nd.key_values:
            fields += [_u8("op_tag", OP_KEY_VALUE), *_str(kv.key.encode())]
            fields += [*_str(kv.value.encode()), _u64("version", kv.version)]
            fields.append(_u8("status", int(kv.status)))
        if not nd.key_values and nd.max_version > 0:
            fields += [_u8("op_tag", OP_SET_MAX_VERSION), _u64("version", nd.max_version)]
    return fields


def block_fields(stream: bytes, compress: bool) -> list[Field]:
    fields: list[Field] = []
    for start in range(0, len(stream), BLOCK_THRESHOLD):
        chunk = stream[start : start + BLOCK_THRESHOLD]
        data = zstd_frame(chunk) if compress else chunk
        tag = BLOCK_COMPRESSED if compress else BLOCK_RAW
        fields += [_u8("block_tag", tag), _u16("len", len(data)), Field("block", data)]
    return [*fields, _u8("block_tag", BLOCK_END)]


def join(fields: Iterable[Field]) -> bytes:
    return b"".join(f.data for f in fields)


_INTERESTING_U64 = (0, 1, 2, 2**32, 2**63 - 1, 2**63, U64_MAX - 3000, U64_MAX - 1, U64_MAX)
_BAD_UTF8 = (b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xe2\x82", b"ok\xfe", b"\x00" * 3)
_TAG_VALUES = {
    "op_tag": (0, 1, 2),
    "block_tag": (0, 1, 2),
    "ip_version": (4, 6),
    "status": (0, 1, 2),
    "msg_type": (0, 1, 2, 3),
    "proto": (0, 1),
}


class FieldMutator:
    """Field-level mutations: lengths and counts, tags, u64 values, strings, and the shape
    of the field list (drop, duplicate, swap two fields of a kind)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.by_name: dict[str, Callable[[list[Field]], list[Field] | None]] = {
            "length": self.length,
            "tag": self.tag,
            "u64": self.u64,
            "string": self.string,
            "drop": self.drop,
            "duplicate": self.duplicate,
            "swap": self.swap,
        }

    def _pick(self, fields: list[Field], kinds: Iterable[str]) -> int | None:
        wanted = set(kinds)
        places = [i for i, f in enumerate(fields) if f.kind in wanted]
        return self.rng.choice(places) if places else None

    def _replace(self, fields: list[Field], index: int, field: Field) -> list[Field]:
        return [*fields[:index], field, *fields[index + 1 :]]

    def length(self, fields: list[Field]) -> list[Field] | None:
        index = self._pick(fields, ("len", "count"))
        if index is None:
            return None
        value = fields[index].number
        choice = self.rng.choice((0, value + 1, value - 1, value * 2, 0xFFFF, 0xFFFE))
        new = max(0, min(0xFFFF, choice)) if self.rng.random() < 0.9 else self.rng.randrange(65536)
        return self._replace(fields, index, _u16(fields[index].kind, new))

    def tag(self, fields: list[Field]) -> list[Field] | None:
        index = self._pick(fields, (*_TAG_VALUES, "magic"))
        if index is None:
            return None
        field = fields[index]
        if field.kind == "magic":
            return self._replace(fields, index, _u16("magic", self.rng.randrange(65536)))
        valid = [v for v in _TAG_VALUES[field.kind] if v != field.number]
        value = self.rng.choice(valid) if valid and self.rng.random() < 0.5 else None
        if value is None:
            value = self.rng.choice((3, 5, 0x7F, 0x80, 0xFF, self.rng.randrange(256)))
        return self._replace(fields, index, _u8(field.kind, value))

    def u64(self, fields: list[Field]) -> list[Field] | None:
        index = self._pick(fields, ("generation", "heartbeat", "gc", "version", "from"))
        if index is None:
            return None
        value = fields[index].number
        new = self.rng.choice((*_INTERESTING_U64, max(0, value - 1), min(U64_MAX, value + 1)))
        return self._replace(fields, index, _u64(fields[index].kind, new))

    def string(self, fields: list[Field]) -> list[Field] | None:
        index = self._pick(fields, ("str",))
        if index is None:
            return None
        old = fields[index].data
        new = self.rng.choice(
            (
                self.rng.choice(_BAD_UTF8),
                old + self.rng.choice(_BAD_UTF8),
                b"",
                old * self.rng.randrange(2, 50),
            )
        )
        mutated = self._replace(fields, index, Field("str", new))
        if index > 0 and mutated[index - 1].kind == "len" and self.rng.random() < 0.8:
            # Keep the length honest: the string itself is what is tested.
            mutated[index - 1] = _u16("len", min(len(new), 0xFFFF))
        return mutated

    def drop(self, fields: list[Field]) -> list[Field] | None:
        if len(fields) < 2:
            return None
        index = self.rng.randrange(1, len(fields))
        return [*fields[:index], *fields[index + 1 :]]

    def duplicate(self, fields: list[Field]) -> list[Field] | None:
        if not fields:
            return None
        index = self.rng.randrange(len(fields))
        return [*fields[: index + 1], fields[index], *fields[index + 1 :]]

    def swap(self, fields: list[Field]) -> list[Field] | None:
        kinds = Counter(f.kind for f in fields)
        candidates = [k for k, n in kinds.items() if n >= 2]
        if not candidates:
            return None
        kind = self.rng.choice(candidates)
        places = [i for i, f in enumerate(fields) if f.kind == kind]
        a, b = self.rng.sample(places, 2)
        swapped = list(fields)
        swapped[a], swapped[b] = swapped[b], swapped[a]
        return swapped

    def mutate(self, fields: list[Field], names: list[str]) -> list[Field]:
        for _ in range(10):
            name = self.rng.choice(list(self.by_name))
            mutated = self.by_name[name](fields)
            if mutated is not None:
                names.append(name)
                return mutated
        return fields


@attrs.frozen
class Mutant:
    datagram: bytes
    base: str  # Syn, SynAck or Ack
    mutations: tuple[str, ...]


class MutantFactory:
    """Valid messages about a small set of fake nodes, turned into fields and mutated
    field by field: before the delta is cut into blocks (so operations are hit), after it
    (block tags and lengths), and by truncation at or inside a field."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.mutator = FieldMutator(rng)
        self.fakes = [fake_node(f"fuzz-{i}", 1000 + i, 1 + i % 3) for i in range(16)]
        self.heartbeat = 1
        self.version = 1

    def _digest(self) -> Digest:
        nodes: dict[NodeId, NodeDigest] = {}
        for node in self.rng.sample(self.fakes, self.rng.randrange(0, 5)):
            self.heartbeat += 1
            nodes[node] = NodeDigest(self.heartbeat, 0, self.rng.randrange(0, 20))
        return Digest(nodes)

    def _delta(self) -> Delta:
        node_deltas = []
        for node in self.rng.sample(self.fakes, self.rng.randrange(1, 4)):
            start = self.rng.randrange(0, 10)
            kvs = []
            version = start
            for k in range(self.rng.randrange(0, 6)):
                version += self.rng.randrange(1, 3)
                status = self.rng.choice(list(KeyStatus))
                value = "" if status is KeyStatus.DELETED else f"v{self.rng.randrange(1000)}"
                kvs.append(KeyValueMutation(f"fuzz.k{k}", value, version, status))
            max_version = version if kvs else start + self.rng.randrange(0, 3)
            node_deltas.append(NodeDelta(node, start, 0, tuple(kvs), max_version))
        return Delta(tuple(node_deltas))

    def _base(self) -> tuple[str, list[Field], list[Field], list[Field] | None]:
        """(kind, header fields, body fields mutated before framing, delta op fields)."""
        kind = self.rng.choice(("Syn", "SynAck", "Ack"))
        msg_type = {"Syn": MSG_SYN, "SynAck": MSG_SYNACK, "Ack": MSG_ACK}[kind]
        head = [_u16("magic", MAGIC), _u8("proto", PROTOCOL_VERSION), _u8("msg_type", msg_type)]
        if kind == "Syn":
            return kind, head, [*digest_fields(self._digest()), *_str(CLUSTER_ID.encode())], None
        digest = digest_fields(self._digest()) if kind == "SynAck" else []
        return kind, head, digest, op_fields(self._delta())

    def make(self) -> Mutant:
        kind, head, body, ops = self._base()
        names: list[str] = []
        stage = self.rng.random()
        for _ in range(self.rng.choice((1, 1, 1, 2, 3))):
            if stage < 0.1:
                head = self.mutator.mutate(head, names)
            elif ops is not None and self.rng.random() < 0.7:
                ops = self.mutator.mutate(ops, names)
            else:
                body = self.mutator.mutate(body, names)
        tail: list[Field] = []
        if ops is not None:
            tail = block_fields(join(ops), compress=self.rng.random() < 0.4)
            if self.rng.random() < 0.25:
                tail = self.mutator.mutate(tail, names)
        fields = [*head, *body, *tail]
        if self.rng.random() < 0.15:
            cut = self.rng.randrange(len(fields))
            inside = self.rng.randrange(len(fields[cut].data) + 1)
            fields = [*fields[:cut], Field("cut", fields[cut].data[:inside])]
            names.append("truncate")
        return Mutant(join(fields)[:MAX_DATAGRAM_SIZE], kind, tuple(names) or ("none",))


def stays_on_loopback(datagram: bytes) -> bool:
    """Whether every node a node would learn from ``datagram`` (its digest) has a
    127.0.0.0/8 address: a mutation must never make a node gossip anywhere else."""
    try:
        message = decode(datagram)
    except DecodeError:
        return True
    if isinstance(message, (Syn, SynAck)):
        return all(node.gossip_addr.ip in LOOPBACK for node in message.digest.nodes)
    return True


# --------------------------------------------------------------------------- sockets


class ReplyCounter:
    """A UDP socket on 127.0.0.x that sends attack datagrams and counts the replies, per
    source port, from a thread."""

    def __init__(self, host: str = HOST) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.1)
        self.address = self.sock.getsockname()
        self._lock = threading.Lock()
        self.replies: Counter[int] = Counter()
        self.reply_bytes: Counter[int] = Counter()
        self.largest: Counter[int] = Counter()
        self.last_reply = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"replies-{host}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(65_536)
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                # An ICMP error from an earlier send (a node that is gone): keep reading.
                if self._stop.is_set():
                    return
                continue
            with self._lock:
                port = int(source[1])
                self.replies[port] += 1
                self.reply_bytes[port] += len(data)
                self.largest[port] = max(self.largest[port], len(data))
                self.last_reply = time.monotonic()

    def counts(self, port: int) -> tuple[int, int, int]:
        with self._lock:
            return self.replies[port], self.reply_bytes[port], self.largest[port]

    def quiet_for(self, seconds: float, limit: float) -> None:
        """Wait until no reply came for ``seconds`` (at most ``limit`` seconds)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            with self._lock:
                last = self.last_reply
            if time.monotonic() - last >= seconds:
                return
            time.sleep(seconds / 4)

    def send(self, data: bytes, port: int) -> bool:
        try:
            self.sock.sendto(data, (HOST, port))
        except OSError:
            return False
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


class Prober:
    """Sends a Syn of another cluster and waits for the BadCluster: the node has handled
    everything sent to it before."""

    DATAGRAM = (
        header(MSG_SYN) + _U16.pack(0) + _U16.pack(len(PROBE_CLUSTER)) + PROBE_CLUSTER.encode()
    )

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))

    def probe(self, node: NodeProcess, timeout: float = PROBE_TIMEOUT) -> float | None:
        """The round trip in seconds, or None when the node did not answer in time."""
        self.sock.setblocking(False)
        with contextlib.suppress(OSError):
            while True:
                self.sock.recvfrom(65_536)  # late answers to earlier probes
        started = time.monotonic()
        deadline = started + timeout
        with contextlib.suppress(OSError):
            self.sock.sendto(self.DATAGRAM, (HOST, node.gossip_port))
        while node.alive():
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(min(left, 0.5))
            try:
                _data, source = self.sock.recvfrom(65_536)
            except TimeoutError:
                continue
            except OSError:
                return None
            if source[1] == node.gossip_port:
                return time.monotonic() - started
        return None

    def close(self) -> None:
        self.sock.close()


# --------------------------------------------------------------------------- node readings


@attrs.frozen
class UdpSocketStats:
    queued: int  # bytes waiting in the receive buffer (as the kernel counts them)
    drops: int  # datagrams the kernel dropped, the buffer being full


def udp_socket_stats(port: int) -> UdpSocketStats | None:
    """The kernel's view of the UDP socket bound to 127.0.0.1:``port``."""
    local = f"0100007F:{port:04X}"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 12 and fields[1] == local:
                return UdpSocketStats(int(fields[4].split(":")[1], 16), int(fields[-1]))
    return None


def kernel_drops(port: int) -> int | None:
    stats = udp_socket_stats(port)
    return None if stats is None else stats.drops


def proc_status_kib(pid: int, field: str) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


class RssSampler:
    """Polls every node's VmRSS; remembers the peak per node, overall and since reset()."""

    def __init__(self, nodes: Sequence[NodeProcess], period: float = 0.05) -> None:
        self.nodes = list(nodes)
        self.period = period
        self.peak_kib: dict[int, int] = {}
        self.case_peak_kib: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()

    def sample(self) -> None:
        """One look at every node (also called at the end of each case, however short)."""
        for node in self.nodes:
            if not node.alive():
                continue
            rss = proc_status_kib(node.pid, "VmRSS")
            if rss is None:
                continue
            with self._lock:
                self.peak_kib[node.index] = max(self.peak_kib.get(node.index, 0), rss)
                case = self.case_peak_kib.get(node.index, 0)
                self.case_peak_kib[node.index] = max(case, rss)

    def reset_case(self) -> None:
        with self._lock:
            self.case_peak_kib = {}

    def case_peaks_mib(self) -> dict[int, float]:
        with self._lock:
            return {i: kib / 1024 for i, kib in self.case_peak_kib.items()}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def read_metrics(node: NodeProcess) -> dict[str, float] | None:
    """``GET /metrics`` as {sample name with labels: value}, or None if the node is down."""
    if not node.alive():
        return None
    try:
        status, text = node.request("/metrics", timeout=10, text=True)
    except (OSError, ValueError, http.client.HTTPException):
        return None
    if status != 200:
        return None
    samples: dict[str, float] = {}
    for line in str(text).splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            samples[name] = float(value)
    return samples


def drops_by_reason(samples: dict[str, float]) -> Counter[str]:
    prefix = 'gossip_tui_dropped_total{reason="'
    return Counter(
        {k[len(prefix) : -2]: int(v) for k, v in samples.items() if k.startswith(prefix)}
    )


def labelled_totals(samples: dict[str, float]) -> dict[str, int]:
    """Every counter with a reason label but the drops (self-repairs and the like)."""
    return {
        k: int(v)
        for k, v in samples.items()
        if "reason=" in k and not k.startswith("gossip_tui_dropped_total")
    }


def _traceback_start(line: str) -> bool:
    # A top-level traceback: plain, or an exception group's (drawn with "+" and "|").
    return line.startswith("Traceback (most recent call last)") or line.lstrip().startswith(
        "+ Exception Group Traceback"
    )


def tracebacks(text: str) -> list[str]:
    """One line per traceback in a log: its (innermost) exception.

    A traceback runs until the next log record (a line starting with the date); inside
    it, an exception line is one that is not indented once the group's "|" is removed.
    """
    found: list[str] = []
    exceptions: list[str] | None = None
    for line in [*text.splitlines(), "0"]:
        if exceptions is not None and (line[:1].isdigit() or _traceback_start(line)):
            leaves = [e for e in exceptions if not e.startswith(_GROUP_PREFIXES)]
            found.append(((leaves or exceptions or ["(no exception line)"])[0])[:160])
            exceptions = None
        if _traceback_start(line):
            exceptions = []
        elif exceptions is not None:
            body = _GROUP_BAR.sub("", line, count=1)
            if (
                body
                and not body[0].isspace()
                and not body.startswith(("+", "Traceback", "Exception Group"))
            ):
                exceptions.append(body.strip())
    return found


@attrs.frozen
class Counters:
    """One node's counters at one moment."""

    dropped: Counter[str]
    other: dict[str, int]
    received: int
    kernel: int | None


# --------------------------------------------------------------------------- the attack


@attrs.define
class CaseRecord:
    """What one case did and what came of it."""

    name: str
    target: str
    sent: int = 0
    sent_bytes: int = 0
    expect: Counter[str] = attrs.field(factory=Counter)
    replies: int = 0
    reply_bytes: int = 0
    largest_reply: int = 0
    send_errors: int = 0
    stall_max: float = 0.0
    probes_lost: int = 0
    room_wait: float = 0.0  # seconds waited for room in a node's receive buffer
    must_count: int = 0
    counted: int = 0
    kernel_drops: int = 0
    dropped: dict[str, int] = attrs.field(factory=dict)
    other_counters: dict[str, int] = attrs.field(factory=dict)
    accounted: bool | None = None
    seconds: float = 0.0
    alive_after: dict[str, bool] = attrs.field(factory=dict)
    new_tracebacks: dict[str, list[str]] = attrs.field(factory=dict)
    rss_peak_mib: dict[str, float] = attrs.field(factory=dict)
    convergence: float | None = None
    convergence_writer: str = ""
    checks: list[tuple[bool, str]] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)
    error: str | None = None

    def note(self, text: str) -> None:
        self.notes.append(text)

    def check(self, ok: bool, text: str) -> None:
        self.checks.append((ok, text))


class Attack:
    """A running cluster, the attacker's sockets and the readings around each case."""

    def __init__(self, cluster: Cluster, args: argparse.Namespace, rng: random.Random) -> None:
        self.cluster = cluster
        self.args = args
        self.rng = rng
        self.nodes = cluster.nodes
        self.ids: dict[int, NodeId] = {}
        self.sender = ReplyCounter()
        self.prober = Prober()
        self.rss = RssSampler(self.nodes)
        self.fake_names: set[str] = set()
        self.refresh_ids()
        self._pace: Counter[int] = Counter()
        self._pace_count: Counter[int] = Counter()
        self.record: CaseRecord | None = None

    def close(self) -> None:
        self.rss.stop()
        self.sender.close()
        self.prober.close()

    # ---------------------------------------------------------------- reading nodes

    def get(self, node: NodeProcess, path: str, timeout: float = 10) -> Any | None:
        """A GET's JSON body, or None (node down, timeout, not 200)."""
        if not node.alive():
            return None
        try:
            status, body = node.request(path, timeout=timeout)
        except (OSError, ValueError, http.client.HTTPException):
            return None
        return body if status == 200 else None

    def refresh_ids(self) -> None:
        for node in self.nodes:
            body = self.get(node, "/health")
            if body is not None:
                self.ids[node.index] = converter.structure(body["chitchat_id"], NodeId)

    def view(self, observer: NodeProcess, subject: NodeId) -> dict[str, Any] | None:
        """What ``observer`` holds of exactly ``subject`` (name, generation and address)."""
        body = self.get(observer, "/nodes/" + quote(str(subject), safe=""))
        return None if body is None else dict(body)

    def own_keys(self, node: NodeProcess) -> dict[str, str] | None:
        body = self.get(node, "/keys")
        if body is None:
            return None
        return {k: v["value"] for k, v in body["keys"].items()}

    def counters(self, node: NodeProcess) -> Counters | None:
        samples = read_metrics(node)
        if samples is None:
            return None
        return Counters(
            dropped=drops_by_reason(samples),
            other=labelled_totals(samples),
            received=int(samples.get("gossip_tui_datagrams_received_total", 0)),
            kernel=kernel_drops(node.gossip_port),
        )

    def log_text(self, node: NodeProcess) -> str:
        path = self.cluster.workdir / f"node-{node.index}.log"
        try:
            text: str = path.read_text(errors="replace")
        except OSError:
            return ""
        return text

    # ---------------------------------------------------------------- sending

    def send(self, datagram: bytes, node: NodeProcess, expect: Expect | None = None) -> None:
        """Send one datagram (paced, see the module doc) and account for it."""
        record = self.record
        assert record is not None
        if not node.alive():
            record.send_errors += 1
            return
        kind = expect or classify(datagram)
        self.wait_for_room(node)
        if not self.sender.send(datagram, node.gossip_port):
            record.send_errors += 1
            return
        record.sent += 1
        record.sent_bytes += len(datagram)
        record.expect[kind.value] += 1
        self._pace[node.index] += len(datagram)
        self._pace_count[node.index] += 1
        if self._pace[node.index] >= PACE_BYTES or self._pace_count[node.index] >= PACE_COUNT:
            self.sync(node)

    def wait_for_room(self, node: NodeProcess) -> None:
        record = self.record
        assert record is not None
        started = time.monotonic()
        deadline = started + PROBE_TIMEOUT
        while node.alive() and time.monotonic() < deadline:
            stats = udp_socket_stats(node.gossip_port)
            if stats is None or stats.queued < RECEIVE_ROOM:
                break
            time.sleep(0.01)
        record.room_wait += time.monotonic() - started

    def sync(self, node: NodeProcess) -> None:
        """Wait until ``node`` has handled everything sent to it (see :class:`Prober`)."""
        record = self.record
        assert record is not None
        self._pace[node.index] = 0
        self._pace_count[node.index] = 0
        if not node.alive():
            return
        rtt = self.prober.probe(node)
        if rtt is None:
            record.probes_lost += 1
        else:
            record.stall_max = max(record.stall_max, rtt)

    def wait_until(self, condition: Callable[[], bool], timeout: float) -> float | None:
        """Seconds until ``condition`` held, or None after ``timeout``."""
        started = time.monotonic()
        while True:
            if condition():
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                return None
            time.sleep(0.02)

    # ---------------------------------------------------------------- checks

    def converge(self, writer: NodeProcess, timeout: float) -> float | None:
        """Set a new key on ``writer``; seconds until every other node shows it, or None."""
        writer_id = self.ids.get(writer.index)
        if writer_id is None or not writer.alive():
            return None
        key = f"attack.probe.{self.rng.getrandbits(32):08x}"
        value = str(time.time_ns())
        try:
            self.cluster.set_kv(writer, key, value)
        except (OSError, RuntimeError, ValueError, http.client.HTTPException):
            return None
        observers = [n for n in self.nodes if n is not writer]

        def everywhere() -> bool:
            for observer in observers:
                seen = self.view(observer, writer_id)
                entry = None if seen is None else seen.get("key_values", {}).get(key)
                if entry is None or entry.get("value") != value:
                    return False
            return True

        return self.wait_until(everywhere, timeout)

    def owner_truth(self, victim: NodeProcess) -> tuple[bool, str]:
        """Whether every other node holds exactly the keys ``victim`` holds, after it wrote
        a new one (its current identity: it may have taken a new generation)."""
        self.refresh_ids()
        victim_id = self.ids.get(victim.index)
        if victim_id is None or not victim.alive():
            return False, f"{victim.name} is down"
        waited = self.converge(victim, self.args.settle)
        truth = self.own_keys(victim) or {}
        mismatched = []
        for observer in self.nodes:
            if observer is victim:
                continue
            seen = self.view(observer, victim_id)
            held = {} if seen is None else _visible(seen.get("key_values", {}))
            if held != truth:
                extra = sorted(set(held) - set(truth))
                missing = sorted(set(truth) - set(held))
                wrong = sorted(k for k in set(held) & set(truth) if held[k] != truth[k])
                mismatched.append(
                    f"{observer.name} holds {len(held)} keys of {victim.name} "
                    f"(extra {extra[:3]}, missing {missing[:3]}, wrong {wrong[:3]})"
                )
        if mismatched:
            return False, "; ".join(mismatched)
        return True, f"peers hold {victim.name}'s {len(truth)} keys; new key in {waited:.2f} s"

    def liveness_problems(self) -> list[str]:
        """Real nodes not live somewhere, fake nodes live somewhere (now)."""
        self.refresh_ids()
        real = {(i.node_id, i.generation) for i in self.ids.values()}
        problems = []
        for observer in self.nodes:
            body = self.get(observer, "/nodes", timeout=20)
            if body is None:
                problems.append(f"{observer.name} does not answer")
                continue
            by_id = {
                (n["chitchat_id"]["node_id"], n["chitchat_id"]["generation_id"]): n["liveness"]
                for n in body["nodes"]
            }
            for index, node_id in self.ids.items():
                if index == observer.index:
                    continue
                liveness = by_id.get((node_id.node_id, node_id.generation), "absent")
                if liveness != "live":
                    problems.append(f"{observer.name} sees {self.nodes[index].name} {liveness}")
            fakes = [k for k, v in by_id.items() if v == "live" and k not in real]
            if fakes:
                problems.append(f"{observer.name} sees {len(fakes)} fake node(s) live")
        return problems


def _visible(key_values: dict[str, Any]) -> dict[str, str]:
    return {k: v["value"] for k, v in key_values.items() if v.get("status") != "Deleted"}


# --------------------------------------------------------------------------- cases


@attrs.frozen
class Case:
    name: str
    finding: str
    about: str
    run: Callable[[Attack, CaseRecord], None]
    target: int = 0  # the node the datagrams go to
    victim: int | None = None  # the node whose state the case forges
    spread: bool = False  # datagrams go to every node, not only the target


def _a(att: Attack) -> NodeProcess:
    return att.nodes[0]


def _id(att: Attack, index: int) -> NodeId:
    return att.ids[index]


def case_heartbeat(value: int, victim: int) -> Callable[[Attack, CaseRecord], None]:
    def run(att: Attack, rec: CaseRecord) -> None:
        victim_node = att.nodes[victim]
        victim_id = _id(att, victim)
        att.send(syn({victim_id: NodeDigest(value, 0, 0)}), _a(att))
        att.sync(_a(att))
        # The victim hears of it through node-0's gossip: give it a few rounds.
        exited = att.wait_until(lambda: not victim_node.alive(), att.args.settle)
        if exited is not None:
            code = victim_node.process.poll() if victim_node.process else None
            rec.check(False, f"{victim_node.name} exited (status {code}) {exited:.2f} s later")
            return
        att.refresh_ids()
        current = att.ids[victim]
        own = att.view(victim_node, current)
        heartbeat = None if own is None else int(own["node"]["heartbeat"])
        if current != victim_id:
            rec.note(f"{victim_node.name} took generation {current.generation}")
        if heartbeat is None:
            rec.check(False, f"{victim_node.name} does not answer")
            return
        headroom = U64_MAX - heartbeat
        ok = heartbeat < 2**63
        text = f"{victim_node.name}'s own heartbeat {heartbeat:,} ({headroom:,} ticks left)"
        rec.check(ok, text)

    return run


def case_long_name(length: int) -> Callable[[Attack, CaseRecord], None]:
    def run(att: Attack, rec: CaseRecord) -> None:
        prefix = f"attack-long-{length}-"
        name = prefix + "x" * (length - len(prefix))
        node = fake_node(name, 3)
        att.fake_names.add(name)
        for heartbeat in range(1, 6):
            att.send(syn({node: NodeDigest(heartbeat, 0, 0)}), _a(att))
            att.sync(_a(att))
            time.sleep(0.05)  # rising heartbeats over time: the fake node looks live
        rec.note(f"Syn of {len(syn({node: NodeDigest(1, 0, 0)})):,} bytes")

    return run


def run_digest_many(att: Attack, rec: CaseRecord) -> None:
    fakes = [fake_node(f"attack-many-{i:04d}", 10 + i) for i in range(att.args.fake_ids)]
    att.fake_names.update(n.node_id for n in fakes)
    for heartbeat in range(1, 4):
        for datagram in syns_within_budget({n: NodeDigest(heartbeat, 0, 0) for n in fakes}):
            att.send(datagram, _a(att))
        att.sync(_a(att))
        time.sleep(0.1)
    rec.note(f"{len(fakes):,} fake ids")


def _bomb_ops_block() -> tuple[bytes, bytes]:
    """(first block: a Node op then SetMaxVersion ops, every other block: SetMaxVersion
    ops), each a whole number of ops under 65,536 bytes."""
    node = fake_node("attack-bomb", 5)
    first_op = bytes((OP_NODE,)) + join(node_fields(node)) + _U64.pack(0) + _U64.pack(0)
    set_max = bytes((OP_SET_MAX_VERSION,)) + _U64.pack(1)
    per_block = 0xFFFF // len(set_max)
    first = first_op + set_max * ((0xFFFF - len(first_op)) // len(set_max))
    return first, set_max * per_block


def case_bomb(zeros: bool) -> Callable[[Attack, CaseRecord], None]:
    def run(att: Attack, rec: CaseRecord) -> None:
        if zeros:
            datagram = bomb(bytes(0xFFFF))
            inflated = (len(datagram) - 5) // (len(zstd_frame(bytes(0xFFFF))) + 3) * 0xFFFF
        else:
            first, rest = _bomb_ops_block()
            datagram = bomb(rest, first)
            blocks = (len(datagram) - 5 - len(zstd_frame(first)) - 3) // (len(zstd_frame(rest)) + 3)
            inflated = len(first) + blocks * len(rest)
        rec.note(f"{len(datagram):,}-byte datagram inflating to {inflated / 1e6:,.0f} MB")
        for _ in range(att.args.bombs):
            att.send(datagram, _a(att), Expect.REFUSE)
            att.sync(_a(att))
        rec.note(f"worst stall {rec.stall_max:.2f} s")

    return run


def run_flood(att: Attack, rec: CaseRecord) -> None:
    node = fake_node("attack-flood", 4)
    att.fake_names.add(node.node_id)
    for heartbeat in (1, 2):
        att.send(syn({node: NodeDigest(heartbeat, 0, 0)}), _a(att))
        att.sync(_a(att))
    a = _a(att)
    before_kib = proc_status_kib(a.pid, "VmRSS") if a.alive() else None
    total = att.args.flood_keys
    version = 0
    deadline = time.monotonic() + att.args.case_timeout
    started = time.monotonic()
    while version < total and time.monotonic() < deadline and a.alive():
        writer = DeltaWriter(MAX_DATAGRAM_SIZE - 4)
        writer.try_add_node(node, 0, version)
        while version < total and writer.try_add_kv(
            f"f{version + 1:06d}", "", version + 1, KeyStatus.SET
        ):
            version += 1
        # Each Ack continues the previous one: wait until it is handled, or a lost one
        # would leave a gap that makes every later Ack useless.
        att.send(encode(Ack(writer.finish())), a, Expect.ANY)
        att.sync(a)
        if rec.probes_lost:
            rec.note(f"node-0 stalled over {PROBE_TIMEOUT:g} s: flood stopped")
            break
    took = time.monotonic() - started
    after_kib = proc_status_kib(a.pid, "VmRSS") if a.alive() else None
    rec.note(f"{version:,} keys sent in {took:.1f} s ({version / max(took, 1e-9):,.0f} keys/s)")
    held = []
    held_on_a = 0
    for observer in att.nodes:
        body = att.get(observer, "/nodes", timeout=30)
        count = None
        if body is not None:
            for summary in body["nodes"]:
                if summary["chitchat_id"]["node_id"] == node.node_id:
                    count = summary["key_count"]
                    if observer is a:
                        held_on_a = int(count)
        held.append(f"{observer.name} {count if count is not None else '-'}")
    rec.note("flood keys held: " + ", ".join(held))
    if before_kib is not None and after_kib is not None and held_on_a:
        grown = (after_kib - before_kib) * 1024
        rec.note(f"node-0 RSS +{grown / 2**20:.0f} MiB ({grown / held_on_a:.0f} B per key held)")


def run_generation(att: Attack, rec: CaseRecord) -> None:
    victim = att.nodes[1]
    real = _id(att, 1)
    ghost = NodeId(real.node_id, U64_MAX, real.gossip_addr)
    for heartbeat in range(1, 4):
        att.send(syn({ghost: NodeDigest(heartbeat, 0, 0)}), _a(att))
        att.sync(_a(att))
        time.sleep(0.05)
    body = att.get(_a(att), "/nodes/" + quote(victim.name, safe=""))
    if body is None:
        rec.check(False, f"GET /nodes/{victim.name} on node-0 failed")
        return
    generation = int(body["node"]["chitchat_id"]["generation_id"])
    liveness = body["node"]["liveness"]
    ok = generation != U64_MAX
    rec.check(ok, f"GET /nodes/{victim.name} on node-0: generation {generation}, {liveness}")


def _forged(att: Attack, rec: CaseRecord, forge: Callable[[NodeId, int, int], NodeDelta]) -> None:
    """Send node-0 a forged delta about node-1 (built from node-0's view of node-1)."""
    victim = _id(att, 1)
    seen = att.view(_a(att), victim)
    if seen is None:
        rec.check(False, "node-0 does not know node-1")
        return
    max_version = int(seen["node"]["max_version"])
    last_gc = int(seen["node"]["last_gc_version"])
    att.send(ack(forge(victim, max_version, last_gc)), _a(att), Expect.ANY)
    att.sync(_a(att))


def case_forge(kind: str) -> Callable[[Attack, CaseRecord], None]:
    def forge(victim: NodeId, max_version: int, last_gc: int) -> NodeDelta:
        kvs: tuple[KeyValueMutation, ...]
        if kind == "keys":
            kvs = (
                KeyValueMutation("bind", "forged", min(max_version + 1, U64_MAX - 1)),
                KeyValueMutation("attack.forged", "1", min(max_version + 2, U64_MAX)),
            )
        elif kind == "freeze":
            kvs = (KeyValueMutation("attack.frozen", "1", U64_MAX),)
        elif kind == "leaving":
            kvs = (KeyValueMutation(LEAVING_KEY, "1", min(max_version + 1, U64_MAX)),)
        else:  # reset: a gc version past everything, no keys
            forged = min(max_version + 1000, U64_MAX)
            return NodeDelta(victim, 0, forged, (), forged)
        return NodeDelta(victim, max_version, last_gc, kvs, kvs[-1].version)

    def run(att: Attack, rec: CaseRecord) -> None:
        _forged(att, rec, forge)
        # Let the forgery spread as it would, then see whether the owner's truth is back.
        time.sleep(min(1.0, att.args.settle))
        ok, text = att.owner_truth(att.nodes[1])
        rec.check(ok, text)
        seen_as = []
        for observer in (att.nodes[0], att.nodes[2]):
            view = att.view(observer, att.ids[1])
            seen_as.append(f"{observer.name}: {'-' if view is None else view['node']['liveness']}")
        live = all(text.endswith(": live") for text in seen_as)
        rec.check(live, "node-1 seen " + ", ".join(seen_as))

    return run


def run_amplification(att: Attack, rec: CaseRecord) -> None:
    tiny = header(MSG_SYN) + _U16.pack(0) + _U16.pack(len(CLUSTER_ID)) + CLUSTER_ID.encode()
    assert len(tiny) == 15
    source = f"127.0.0.{att.rng.randrange(2, 250)}"
    counter = ReplyCounter(source)
    try:
        for node in att.nodes:
            if not node.alive():
                continue
            for _ in range(att.args.amplification_syns):
                counter.send(tiny, node.gossip_port)
                rec.sent += 1
                rec.sent_bytes += len(tiny)
                rec.expect[Expect.REPLY.value] += 1
            att.sync(node)
        counter.quiet_for(0.2, 2.0)
        factors = []
        for node in att.nodes:
            replies, size, largest = counter.counts(node.gossip_port)
            rec.replies += replies
            rec.reply_bytes += size
            rec.largest_reply = max(rec.largest_reply, largest)
            if replies:
                factors.append(f"{node.name} {largest / len(tiny):,.0f}x")
        rec.note(f"from {source}: largest reply / 15 bytes: " + ", ".join(factors))
    finally:
        counter.close()


def run_mutations(att: Attack, rec: CaseRecord) -> None:
    factory = MutantFactory(random.Random(att.rng.getrandbits(64)))
    att.fake_names.update(n.node_id for n in factory.fakes)
    by_mutation: Counter[str] = Counter()
    outcome: Counter[str] = Counter()
    deadline = time.monotonic() + att.args.case_timeout
    sent = 0
    while sent < att.args.mutations and time.monotonic() < deadline:
        mutant = factory.make()
        if not stays_on_loopback(mutant.datagram):
            outcome["skipped: left the loopback"] += 1
            continue
        node = att.nodes[sent % len(att.nodes)]
        kind = classify(mutant.datagram)
        outcome[f"{mutant.base}->{kind.value}"] += 1
        by_mutation.update(mutant.mutations)
        att.send(mutant.datagram, node, kind)
        sent += 1
    for node in att.nodes:
        att.sync(node)
    rec.note("by outcome: " + ", ".join(f"{k} {v}" for k, v in sorted(outcome.items())))
    rec.note("by mutation: " + ", ".join(f"{k} {v}" for k, v in sorted(by_mutation.items())))


def _http_exchange(port: int, payload: bytes, timeout: float = 10.0) -> str:
    """Send raw bytes to a node's HTTP port; the status line that came back."""
    with socket.create_connection((HOST, port), timeout=timeout) as conn:
        conn.sendall(payload)
        received = b""
        with contextlib.suppress(TimeoutError, OSError):
            while b"\r\n" not in received and len(received) < 65_536:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                received += chunk
    return received.split(b"\r\n", 1)[0].decode("latin-1") or "(no response)"


def _http_check(rec: CaseRecord, what: str, status_line: str) -> None:
    parts = status_line.split()
    code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    ok = code is not None and code < 500
    rec.check(ok, f"{what}: {status_line}")


def run_http_deep_json(att: Attack, rec: CaseRecord) -> None:
    depth = 30_000
    body = b'{"value": ' + b"[" * depth + b"]" * depth + b"}"
    request = (
        b"PUT /keys/attack.deep HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    ) + body
    _http_check(
        rec, f"PUT of a JSON body nested {depth:,} deep", _http_exchange(_a(att).http_port, request)
    )


def run_http_bad_path(att: Attack, rec: CaseRecord) -> None:
    for method, path in (("GET", "/keys/%ff"), ("PUT", "/keys/%ff%fe"), ("GET", "/nodes/%c0%80")):
        request = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            "Content-Length: 1\r\n\r\nx"
        ).encode()
        _http_check(rec, f"{method} {path}", _http_exchange(_a(att).http_port, request))


def run_http_h2c(att: Attack, rec: CaseRecord) -> None:
    upgrade = (
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    )
    _http_check(rec, "h2c upgrade", _http_exchange(_a(att).http_port, upgrade))
    # The upgrade again, then HTTP/2 garbage where the client preface should be.
    garbage = upgrade + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(range(256)) * 4
    line = _http_exchange(_a(att).http_port, garbage)
    rec.note(f"h2c upgrade followed by garbage: {line}")


CASES: tuple[Case, ...] = (
    Case(
        "mutations",
        "fuzz",
        "field-level mutations of valid Syn/SynAck/Ack",
        run_mutations,
        spread=True,
    ),
    Case("http-deep-json", "http", "PUT /keys with a deeply nested JSON body", run_http_deep_json),
    Case("http-bad-path", "http", "%ff and overlong UTF-8 in paths", run_http_bad_path),
    Case("http-h2c", "http", "an h2c upgrade, then garbage", run_http_h2c),
    Case("bomb-setmax", "3", "zstd blocks of SetMaxVersion ops", case_bomb(zeros=False)),
    Case("bomb-zeros", "3", "zstd blocks of zero bytes", case_bomb(zeros=True)),
    Case("flood-keys", "4", "tiny keys for one fake node", run_flood),
    Case(
        "amplification",
        "10",
        "15-byte Syns from a 127.0.0.x source",
        run_amplification,
        spread=True,
    ),
    Case("generation-max", "11", "a forged generation 2^64-1 of node-1", run_generation, victim=1),
    Case("forge-keys", "forge", "node-1's keys forged on node-0", case_forge("keys"), victim=1),
    Case(
        "forge-leaving", "forge", "node-1's leaving marker forged", case_forge("leaving"), victim=1
    ),
    Case(
        "forge-reset", "forge", "node-1's state reset by a forged gc", case_forge("reset"), victim=1
    ),
    Case(
        "forge-freeze", "forge", "node-1 frozen at version 2^64-1", case_forge("freeze"), victim=1
    ),
    Case(
        "heartbeat-max",
        "1",
        "Syn to node-0 naming node-2 at heartbeat 2^64-1",
        case_heartbeat(U64_MAX, 2),
        victim=2,
    ),
    Case(
        "heartbeat-timebomb",
        "1",
        "Syn to node-0 naming node-1 at heartbeat 2^64-1-3000",
        case_heartbeat(U64_MAX - 3000, 1),
        victim=1,
    ),
    Case("digest-name-65260", "2", "a fake node with a 65,260-byte name", case_long_name(65_260)),
    Case("digest-name-65400", "2", "a fake node with a 65,400-byte name", case_long_name(65_400)),
    Case("digest-many", "2", "about 1,500 short fake node ids", run_digest_many),
)
CASES_BY_NAME = {case.name: case for case in CASES}
GROUPS = {
    "all": [c.name for c in CASES],
    **{
        prefix: [c.name for c in CASES if c.name.startswith(prefix + "-")]
        for prefix in ("heartbeat", "digest", "bomb", "forge", "http")
    },
    "flood": ["flood-keys"],
    "generation": ["generation-max"],
}


def select_cases(spec: str) -> list[Case]:
    names: list[str] = []
    for word in (w.strip() for w in spec.split(",")):
        if not word:
            continue
        expanded = GROUPS.get(word, [word])
        for name in expanded:
            if name not in CASES_BY_NAME:
                raise SystemExit(f"unknown case {name!r}; --list-cases shows them")
            if name not in names:
                names.append(name)
    return [CASES_BY_NAME[n] for n in names]


# --------------------------------------------------------------------------- running


def run_case(att: Attack, case: Case) -> CaseRecord:
    target = att.nodes[case.target]
    rec = CaseRecord(case.name, "all" if case.spread else target.name)
    att.record = rec
    att.refresh_ids()
    accounted_on = att.nodes if case.spread else [target]
    before = {n.index: att.counters(n) for n in accounted_on}
    logs_before = {n.index: len(tracebacks(att.log_text(n))) for n in att.nodes}
    replies_before = {n.index: att.sender.counts(n.gossip_port) for n in accounted_on}
    att.rss.reset_case()
    log(f"case {case.name}: {case.about}")
    started = time.monotonic()
    try:
        case.run(att, rec)
    except Exception as exc:  # a broken case must not hide the others' figures
        rec.error = f"{type(exc).__name__}: {exc}"
        log(f"case {case.name} failed: {rec.error}")
    for node in att.nodes:
        if att._pace_count[node.index]:
            att.sync(node)
    att.sender.quiet_for(0.2, 2.0)
    rec.seconds = time.monotonic() - started
    for node in accounted_on:
        replies, size, largest = att.sender.counts(node.gossip_port)
        old_replies, old_size, _ = replies_before[node.index]
        rec.replies += replies - old_replies
        rec.reply_bytes += size - old_size
        rec.largest_reply = max(rec.largest_reply, largest)
    _account(att, accounted_on, rec, before)
    for node in att.nodes:
        rec.alive_after[node.name] = node.alive()
        found = tracebacks(att.log_text(node))[logs_before[node.index] :]
        if found:
            rec.new_tracebacks[node.name] = found
    att.rss.sample()
    rec.rss_peak_mib = {att.nodes[i].name: v for i, v in sorted(att.rss.case_peaks_mib().items())}
    if case.victim is None:
        writer = next((n for n in att.nodes if n.alive()), att.nodes[0])
        rec.convergence_writer = writer.name
        rec.convergence = att.converge(writer, att.args.probe_timeout)
    att.record = None
    return rec


def _account(
    att: Attack,
    nodes: Sequence[NodeProcess],
    rec: CaseRecord,
    before: dict[int, Counters | None],
) -> None:
    """Compare what the nodes had to refuse with what they counted (see the module doc)."""
    counted = 0
    kernel = 0
    dropped: Counter[str] = Counter()
    other: Counter[str] = Counter()
    complete = True
    for node in nodes:
        old, new = before.get(node.index), att.counters(node)
        if old is None or new is None:
            complete = False
            continue
        delta = new.dropped - old.dropped
        dropped.update(delta)
        counted += sum(delta.values())
        other.update({k: v - old.other.get(k, 0) for k, v in new.other.items()})
        if old.kernel is not None and new.kernel is not None:
            kernel += new.kernel - old.kernel
    unanswered = max(0, rec.expect[Expect.REPLY.value] - rec.replies)
    rec.must_count = rec.expect[Expect.REFUSE.value] + unanswered
    rec.counted = counted
    rec.kernel_drops = kernel
    rec.dropped = {k: v for k, v in sorted(dropped.items()) if v}
    rec.other_counters = {k: v for k, v in sorted(other.items()) if v}
    # The kernel's drops are not credited: paced, our datagrams find room in the node's
    # buffer; what the kernel drops while a node stalls is anyone's traffic (its peers').
    rec.accounted = (counted >= rec.must_count) if complete else None


@attrs.define
class FinalReport:
    """The cluster after the attack."""

    nodes: list[dict[str, Any]] = attrs.field(factory=list)
    convergence: float | None = None
    liveness_seconds: float | None = None
    liveness_problems: list[str] = attrs.field(factory=list)


def final_checks(att: Attack) -> FinalReport:
    report = FinalReport()
    att.refresh_ids()
    writer = att.nodes[0]
    log("after the attack: convergence of a new key set on node-0")
    report.convergence = att.converge(writer, att.args.converge_timeout)
    log(f"waiting (at most {att.args.fake_timeout:.0f} s) for real nodes live, fakes not")
    problems: list[str] = []

    def settled() -> bool:
        nonlocal problems
        problems = att.liveness_problems()
        return not problems

    started = time.monotonic()
    while True:
        if settled():
            report.liveness_seconds = time.monotonic() - started
            break
        if time.monotonic() - started > att.args.fake_timeout:
            break
        time.sleep(0.5)
    report.liveness_problems = problems
    for node in att.nodes:
        alive = node.alive()
        code = None if alive or node.process is None else node.process.poll()
        hwm = proc_status_kib(node.pid, "VmHWM") if alive else None
        sampled = att.rss.peak_kib.get(node.index)
        peak = hwm if hwm is not None else sampled
        found = tracebacks(att.log_text(node))
        report.nodes.append(
            {
                "name": node.name,
                "pid": node.pid,
                "port": node.gossip_port,
                "alive": alive,
                "exit_status": code,
                "tracebacks": len(found),
                "exceptions": sorted(Counter(found).items(), key=lambda kv: -kv[1]),
                "rss_peak_mib": None if peak is None else round(peak / 1024, 1),
                "rss_peak_source": "VmHWM" if hwm is not None else "sampled VmRSS",
            }
        )
    return report


# --------------------------------------------------------------------------- report


@attrs.frozen
class Target:
    name: str
    bound: str
    measured: str
    met: bool


def targets(
    records: Sequence[CaseRecord], finals: Sequence[FinalReport], args: Any
) -> list[Target]:
    nodes = [n for f in finals for n in f.nodes]
    crashed = [n["name"] for n in nodes if not n["alive"]]
    traces = sum(n["tracebacks"] for n in nodes)
    converged = [f.convergence for f in finals if f.convergence is not None]
    worst = max(converged) if converged and len(converged) == len(finals) else None
    peaks = [n["rss_peak_mib"] for n in nodes if n["rss_peak_mib"] is not None]
    unaccounted = [r.name for r in records if r.accounted is False]
    unknown = [r.name for r in records if r.accounted is None]
    problems = [p for f in finals for p in f.liveness_problems]
    return [
        Target("crashes", "0", f"{len(crashed)} {crashed if crashed else ''}".strip(), not crashed),
        Target("tracebacks in stderr", "0", str(traces), traces == 0),
        Target(
            "new key on node-0 reaches the others",
            f"< {args.converge_target:g} s",
            "never" if worst is None else f"{worst:.2f} s",
            worst is not None and worst < args.converge_target,
        ),
        Target(
            "RSS peak per node",
            f"<= {args.rss_limit_mib} MiB",
            f"{max(peaks):.0f} MiB" if peaks else "-",
            bool(peaks) and max(peaks) <= args.rss_limit_mib,
        ),
        Target(
            "refused datagrams counted",
            "all",
            "all" if not unaccounted else "missing in " + ", ".join(unaccounted),
            not unaccounted and not unknown,
        ),
        Target(
            "real nodes live, no fake node live",
            f"within {args.fake_timeout:g} s",
            "yes" if not problems else "; ".join(problems[:4]),
            not problems,
        ),
    ]


def _mib(values: dict[str, float]) -> str:
    return f"{max(values.values()):.0f}" if values else "-"


def print_report(
    records: Sequence[CaseRecord], finals: Sequence[FinalReport], goals: Sequence[Target]
) -> None:
    rows = []
    for r in records:
        dead = [name for name, alive in r.alive_after.items() if not alive]
        traces = sum(len(v) for v in r.new_tracebacks.values())
        accounted = {True: "ok", False: "MISSING", None: "n/a"}[r.accounted]
        checks = [c for c in r.checks if not c[0]]
        rows.append(
            [
                r.name,
                r.sent,
                f"{r.sent_bytes / 1e3:.0f}k",
                r.replies,
                f"{r.stall_max * 1e3:.0f}",
                r.must_count,
                r.counted,
                r.kernel_drops,
                accounted,
                ",".join(dead) or "-",
                traces,
                _mib(r.rss_peak_mib),
                "-"
                if r.convergence is None and r.convergence_writer == ""
                else ("never" if r.convergence is None else f"{r.convergence:.2f}"),
                "FAIL" if checks or r.error else ("ok" if r.checks else "-"),
            ]
        )
    bench.print_table(
        "attack cases (stall: worst probe round trip; must: datagrams that had to be counted)",
        [
            "case",
            "sent",
            "bytes",
            "replies",
            "stall ms",
            "must",
            "counted",
            "kdrop",
            "account",
            "dead",
            "tb",
            "rss MiB",
            "conv s",
            "check",
        ],
        rows,
    )
    print("\ndetails")
    for r in records:
        reasons = ", ".join(f"{k} {v}" for k, v in r.dropped.items()) or "none"
        print(f"  {r.name} ({r.seconds:.1f} s): dropped by reason: {reasons}")
        for name, value in r.other_counters.items():
            print(f"    counter {name} +{value}")
        for ok, text in r.checks:
            print(f"    check {'ok  ' if ok else 'FAIL'} {text}")
        for text in r.notes:
            print(f"    {text}")
        for node, found in r.new_tracebacks.items():
            for line in sorted(set(found)):
                print(f"    traceback on {node} (x{found.count(line)}): {line}")
        if r.room_wait >= 0.1:
            print(f"    waited {r.room_wait:.1f} s for room in receive buffers")
        if r.probes_lost:
            print(f"    {r.probes_lost} probe(s) unanswered within {PROBE_TIMEOUT:g} s")
        if r.error:
            print(f"    case error: {r.error}")
    for final in finals:
        print("\nnodes after the attack")
        for n in final.nodes:
            state = "alive" if n["alive"] else f"EXITED (status {n['exit_status']})"
            print(
                f"  {n['name']} pid {n['pid']}: {state}, {n['tracebacks']} traceback(s), "
                f"RSS peak {n['rss_peak_mib']} MiB ({n['rss_peak_source']})"
            )
            for line, count in n["exceptions"]:
                print(f"    x{count} {line}")
        conv = "never" if final.convergence is None else f"{final.convergence:.2f} s"
        print(f"  new key on node-0 seen by the others after {conv}")
        if final.liveness_problems:
            print("  liveness: " + "; ".join(final.liveness_problems))
        else:
            took = final.liveness_seconds or 0.0
            print(f"  liveness: real nodes live everywhere, no fake live ({took:.1f} s)")
    print("\nsummary")
    for goal in goals:
        verdict = "PASS" if goal.met else "FAIL"
        print(f"  {verdict}  {goal.name}: {goal.measured} (target {goal.bound})")
    met = sum(g.met for g in goals)
    print(f"  {met} of {len(goals)} targets met")
    sys.stdout.flush()


def to_json(
    records: Sequence[CaseRecord], finals: Sequence[FinalReport], goals: Sequence[Target], args: Any
) -> dict[str, Any]:
    return {
        "machine": bench.machine_info(),
        "options": {k: v for k, v in vars(args).items() if not k.startswith("_")},
        "cases": [attrs.asdict(r) for r in records],
        "clusters": [attrs.asdict(f) for f in finals],
        "nodes": [n for f in finals for n in f.nodes],
        "targets": [attrs.asdict(g) for g in goals],
        "passed": all(g.met for g in goals),
    }


# --------------------------------------------------------------------------- main


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Attack a real 3-node gossip-tui cluster on 127.0.0.1 and report.",
        epilog="Groups for --cases: " + ", ".join(sorted(GROUPS)),
    )
    parser.add_argument("--cases", default="all", help="comma-separated cases or groups")
    parser.add_argument("--list-cases", action="store_true", help="list the cases and exit")
    parser.add_argument("--mutations", type=int, default=3_000, help="mutated datagrams")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="machine output: JSON to PATH, or instead of the tables to stdout without PATH",
    )
    parser.add_argument("--interval-ms", type=int, default=100, help="gossip interval")
    parser.add_argument("--isolate", action="store_true", help="a fresh cluster per case")
    parser.add_argument("--bombs", type=int, default=3, help="datagrams per bomb case")
    parser.add_argument("--flood-keys", type=int, default=200_000, help="keys in flood-keys")
    parser.add_argument("--fake-ids", type=int, default=1_500, help="ids in digest-many")
    parser.add_argument("--amplification-syns", type=int, default=10, help="Syns per node")
    parser.add_argument("--case-timeout", type=float, default=60.0, help="seconds per case")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds a case's check may wait")
    parser.add_argument(
        "--probe-timeout", type=float, default=3.0, help="per-case convergence wait (s)"
    )
    parser.add_argument(
        "--converge-timeout", type=float, default=10.0, help="final convergence wait (s)"
    )
    parser.add_argument("--converge-target", type=float, default=2.0, help="seconds")
    parser.add_argument(
        "--fake-timeout", type=float, default=60.0, help="wait for fakes to die (s)"
    )
    parser.add_argument("--rss-limit-mib", type=int, default=200, help="RSS bound per node")
    parser.add_argument("--logs", type=Path, default=None, help="copy the nodes' stderr here")
    args = parser.parse_args(argv)
    if args.mutations < 0:
        parser.error("--mutations must not be negative")
    return args


def _keep_logs(cluster: Cluster, directory: Path | None, tag: str) -> None:
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    for node in cluster.nodes:
        source = cluster.workdir / f"node-{node.index}.log"
        with contextlib.suppress(OSError):
            (directory / f"{tag}node-{node.index}.log").write_bytes(source.read_bytes())


@contextlib.contextmanager
def attacking(args: argparse.Namespace, rng: random.Random) -> Iterator[Attack]:
    """A formed 3-node cluster and the attacker; every node stopped on the way out."""
    with Cluster(bench.GOSSIP_TUI, 3, args.interval_ms, rng=rng) as cluster:
        cluster.start(timeout=60)
        attack = Attack(cluster, args, rng)
        try:
            yield attack
        finally:
            attack.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.list_cases:
        for case in CASES:
            print(f"{case.name:20} finding {case.finding:6} {case.about}")
        return 0
    cases = select_cases(args.cases)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    args.seed = seed
    rng = random.Random(seed)
    log(f"seed {seed}; cases: {', '.join(c.name for c in cases)}")
    records: list[CaseRecord] = []
    finals: list[FinalReport] = []
    batches = [[c] for c in cases] if args.isolate else [cases]
    try:
        for batch in batches:
            with attacking(args, rng) as att:
                for case in batch:
                    records.append(run_case(att, case))
                finals.append(final_checks(att))
                tag = f"{batch[0].name}-" if args.isolate else ""
                _keep_logs(att.cluster, args.logs, tag)
    except (RuntimeError, TimeoutError) as exc:
        log(f"could not run the cluster: {exc!r}")
        return 2
    goals = targets(records, finals, args)
    if args.json != "-":
        print_report(records, finals, goals)
    if args.json is not None:
        payload = to_json(records, finals, goals, args)
        if args.json == "-":
            print(json.dumps(payload, indent=2, default=str))
        else:
            bench.write_json(Path(args.json), payload)
    return 0 if all(g.met for g in goals) else 1


if __name__ == "__main__":
    bench.run_main(main)
