"""Protocol V1 (chitchat after 0.10.1): the codec and the engine against captured datagrams.

The vectors come from a running chitchat at commit 2601fa8 (``../shared/chitchat-vectors-v1``
beside the repository; every test here skips, saying so, when it is absent). Compressed
bytes depend on the libzstd that made them, so re-encodings are compared by what they
decode to and by their decompressed block payloads, never by their compressed bytes.

A small walker of the V1 framing, written here apart from the codec, checks the layout
itself: block kinds and lengths, where the 16 KiB cuts fall, where the entries lie.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import struct
from pathlib import Path
from typing import Any

import attrs
import pytest
import zstandard

from gossip_tui.core.codec import (
    DecodeError,
    EncodeError,
    decode,
    digest_size,
    encode,
    encode_digest,
)
from gossip_tui.core.engine import GossipEngine
from gossip_tui.core.messages import (
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
from gossip_tui.core.models import KeyStatus, NodeId, SocketAddress

VECTORS_V1 = Path(__file__).resolve().parents[2].parent / "shared" / "chitchat-vectors-v1"
MISSING = "vectors-v1-missing"
MESSAGE_CLASSES: dict[str, type] = {"Syn": Syn, "SynAck": SynAck, "Ack": Ack}
BLOCK_THRESHOLD = 16_384
# chitchat's names for the deletion statuses (Rust's DeletionStatus).
STATUS_NAMES = {
    KeyStatus.SET: "Set",
    KeyStatus.DELETED: "Delete",
    KeyStatus.DELETE_AFTER_TTL: "DeleteAfterTtl",
}
U16 = struct.Struct("<H")


@pytest.fixture(scope="session")
def v1_dir() -> Path:
    if not VECTORS_V1.is_dir():
        pytest.skip(
            f"chitchat V1 vectors not found at {VECTORS_V1}: "
            "they live in the shared/ folder beside the repo"
        )
    return VECTORS_V1


def _index_names() -> list[str]:
    """Vector files to parametrize over, read at collection without failing if absent."""
    index = VECTORS_V1 / "index.json"
    if not index.is_file():
        return [MISSING]  # the v1_dir fixture skips these
    return [entry["file"] for entry in json.loads(index.read_text())["vectors"]]


@dataclasses.dataclass(frozen=True)
class Vector:
    name: str
    data: bytes
    entry: dict[str, Any]  # its index.json entry
    decoded: dict[str, Any]  # the capture driver's walk of it


def _load(v1_dir: Path, name: str) -> Vector:
    entries = {e["file"]: e for e in json.loads((v1_dir / "index.json").read_text())["vectors"]}
    entry = entries[name]
    if "decoded" in entry:
        decoded = entry["decoded"]
    else:
        decoded = json.loads((v1_dir / entry["decoded_file"]).read_text())
    return Vector(name, (v1_dir / name).read_bytes(), entry, decoded)


@pytest.fixture
def vector(v1_dir: Path, request: pytest.FixtureRequest) -> Vector:
    return _load(v1_dir, request.param)


every_vector = pytest.mark.parametrize("vector", _index_names(), indirect=True)


# --------------------------------------------------------------------------- independent walker


@dataclasses.dataclass(frozen=True)
class Block:
    tag: int  # 1 zstd, 2 raw
    payload: bytes  # as on the wire

    def plain(self) -> bytes:
        if self.tag == 1:
            return zstandard.ZstdDecompressor().decompress(self.payload, max_output_size=0xFFFF)
        return self.payload


def walk_blocks(data: bytes, pos: int) -> tuple[list[Block], int]:
    """The blocks of one stream at ``pos``, and the offset after its end tag."""
    blocks = []
    while data[pos] != 0:
        (length,) = U16.unpack_from(data, pos + 1)
        blocks.append(Block(data[pos], data[pos + 3 : pos + 3 + length]))
        pos += 3 + length
    return blocks, pos + 1


def joined(blocks: list[Block]) -> bytes:
    return b"".join(block.plain() for block in blocks)


@dataclasses.dataclass(frozen=True)
class Entry:
    start: int  # offset in the joined digest payload
    end: int
    node_id: str
    generation: int
    addr: str
    heartbeat: int
    last_gc_version: int
    max_version: int


def walk_entries(payload: bytes) -> list[Entry]:
    entries, pos = [], 0
    while pos < len(payload):
        start = pos
        (name_len,) = U16.unpack_from(payload, pos)
        name = payload[pos + 2 : pos + 2 + name_len].decode()
        pos += 2 + name_len
        generation, ip_version = struct.unpack_from("<QB", payload, pos)
        pos += 9
        ip_len = 4 if ip_version == 4 else 16
        ip = ipaddress.ip_address(payload[pos : pos + ip_len])
        (port,) = U16.unpack_from(payload, pos + ip_len)
        pos += ip_len + 2
        heartbeat, last_gc, max_version = struct.unpack_from("<QQQ", payload, pos)
        pos += 24
        addr = f"{ip}:{port}" if ip_version == 4 else f"[{ip}]:{port}"
        entries.append(Entry(start, pos, name, generation, addr, heartbeat, last_gc, max_version))
    assert pos == len(payload), "the last entry overruns the payload"
    return entries


@dataclasses.dataclass(frozen=True)
class Layout:
    version: int
    msg_type: int
    digest_blocks: list[Block]
    delta_blocks: list[Block]
    cluster_id: str | None


def walk(data: bytes) -> Layout:
    """A V1 datagram's framing: header, digest stream, then the cluster id or delta."""
    magic, version, msg_type = struct.unpack_from("<HBB", data, 0)
    assert magic == 45_139
    pos = 4
    digest_blocks: list[Block] = []
    delta_blocks: list[Block] = []
    cluster_id = None
    if msg_type in (0, 1):
        digest_blocks, pos = walk_blocks(data, pos)
    if msg_type == 0:
        (length,) = U16.unpack_from(data, pos)
        cluster_id = data[pos + 2 : pos + 2 + length].decode()
    elif msg_type in (1, 2):
        delta_blocks, pos = walk_blocks(data, pos)
    return Layout(version, msg_type, digest_blocks, delta_blocks, cluster_id)


def _node(cid: dict[str, Any]) -> NodeId:
    return NodeId(
        cid["node_id"], cid["generation_id"], SocketAddress.parse(cid["gossip_advertise_addr"])
    )


def _digest_rows(digest: Digest) -> list[tuple[str, int, str, int, int, int]]:
    return [
        (n.node_id, n.generation, str(n.gossip_addr), d.heartbeat, d.last_gc_version, d.max_version)
        for n, d in digest.nodes.items()
    ]


def _expected_digest_rows(
    entries: list[dict[str, Any]],
) -> list[tuple[str, int, str, int, int, int]]:
    return [
        (
            e["chitchat_id"]["node_id"],
            e["chitchat_id"]["generation_id"],
            e["chitchat_id"]["gossip_advertise_addr"],
            e["heartbeat"],
            e["last_gc_version"],
            e["max_version"],
        )
        for e in entries
    ]


def _ops(delta: Delta) -> list[dict[str, Any]]:
    """A decoded delta as the capture driver lists operations."""
    ops: list[dict[str, Any]] = []
    for nd in delta.node_deltas:
        node = nd.node
        ops.append(
            {
                "chitchat_id": {
                    "generation_id": node.generation,
                    "gossip_advertise_addr": str(node.gossip_addr),
                    "node_id": node.node_id,
                },
                "from_version_excluded": nd.from_version_excluded,
                "last_gc_version": nd.last_gc_version,
                "op": "node",
            }
        )
        for kv in nd.key_values:
            status = STATUS_NAMES[kv.status]
            ops.append(
                {
                    "key": kv.key,
                    "op": "kv",
                    "status": status,
                    "value": kv.value,
                    "version": kv.version,
                }
            )
    return ops


# --------------------------------------------------------------------------- the vector set


def test_index_lists_every_file(v1_dir: Path) -> None:
    entries = json.loads((v1_dir / "index.json").read_text())["vectors"]
    assert {e["file"] for e in entries} == {p.name for p in v1_dir.glob("*.bin")}
    for entry in entries:
        data = (v1_dir / entry["file"]).read_bytes()
        assert len(data) == entry["len"], entry["file"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["file"]
        assert data[:4].hex() == entry["header_hex"], entry["file"]


# --------------------------------------------------------------------------- decoding


@every_vector
def test_vector_decodes_with_its_version_and_content(vector: Vector) -> None:
    message = decode(vector.data)
    assert type(message) is MESSAGE_CLASSES[vector.entry["type"]]
    assert message.protocol_version == vector.entry["protocol_version"]
    if isinstance(message, Syn | SynAck):
        assert _digest_rows(message.digest) == _expected_digest_rows(vector.decoded["digest"])
    if isinstance(message, Syn):
        assert message.cluster_id == vector.decoded["cluster_id"]
    if isinstance(message, SynAck | Ack):
        assert _ops(message.delta) == vector.decoded["delta"]["ops"]


@every_vector
def test_vector_framing_is_what_the_capture_describes(vector: Vector) -> None:
    """The walker's view of the capture matches the driver's: so the walker can judge
    our own encodings below."""
    if vector.entry["protocol_version"] != 1:
        pytest.skip("a V0 datagram: the V0 vector tests cover its framing")
    layout = walk(vector.data)
    stream = vector.decoded.get("digest_stream")
    if stream is not None:
        kinds = [("zstd" if b.tag == 1 else "raw", len(b.payload)) for b in layout.digest_blocks]
        assert kinds == [(b["type"], b["len"]) for b in stream["blocks"]]
        assert [len(b.plain()) for b in layout.digest_blocks] == [
            b["raw_len"] for b in stream["blocks"]
        ]
        payload = joined(layout.digest_blocks)
        assert len(payload) == stream["raw_len"]
        assert [
            (e.node_id, e.generation, e.addr, e.heartbeat, e.last_gc_version, e.max_version)
            for e in walk_entries(payload)
        ] == _expected_digest_rows(vector.decoded["digest"])
    if "delta" in vector.decoded:
        kinds = [("zstd" if b.tag == 1 else "raw", len(b.payload)) for b in layout.delta_blocks]
        assert kinds == [(b["type"], b["len"]) for b in vector.decoded["delta"]["blocks"]]


@every_vector
def test_reencoding_gives_the_same_content(vector: Vector) -> None:
    message = decode(vector.data)
    again = encode(message)
    assert again[:4] == vector.data[:4]
    assert decode(again) == message
    if message.protocol_version == 0:
        assert again == vector.data  # nothing compressed: byte for byte
        return
    ours, theirs = walk(again), walk(vector.data)
    # The same raw payloads, cut at the same places; only the compressed bytes may differ.
    assert [b.plain() for b in ours.digest_blocks] == [b.plain() for b in theirs.digest_blocks]
    assert joined(ours.delta_blocks) == joined(theirs.delta_blocks)
    assert [len(b.plain()) for b in ours.delta_blocks] == [
        len(b.plain()) for b in theirs.delta_blocks
    ]
    assert ours.cluster_id == theirs.cluster_id


@every_vector
def test_digest_size_is_the_size_sent(vector: Vector) -> None:
    message = decode(vector.data)
    if not isinstance(message, Syn | SynAck):
        pytest.skip("no digest")
    version = message.protocol_version
    fresh = Digest(dict(message.digest.nodes))  # nothing cached yet
    size = digest_size(fresh, version)
    wire = encode_digest(fresh, version)
    assert size == len(wire)
    if version == 1:
        blocks, end = walk_blocks(wire, 0)
        assert end == len(wire)
        assert joined(blocks) == joined(walk(vector.data).digest_blocks)


def test_big_digest_spans_two_blocks_with_an_entry_across_the_cut(v1_dir: Path) -> None:
    vector = _load(v1_dir, "syn_v1_big_420nodes.bin")
    message = decode(vector.data)
    assert isinstance(message, Syn) and message.protocol_version == 1
    assert len(message.digest.nodes) == 420
    assert _digest_rows(message.digest) == _expected_digest_rows(vector.decoded["digest"])

    for datagram in (vector.data, encode(message)):
        blocks = walk(datagram).digest_blocks
        assert [len(b.plain()) for b in blocks] == [16_384, 4_086]
        entries = walk_entries(joined(blocks))
        assert len(entries) == 420
        across = [e for e in entries if e.start < BLOCK_THRESHOLD < e.end]
        assert len(across) == 1, "exactly one entry straddles the 16 KiB cut"
    # Compressed, the digest is far smaller than in V0 (2,675 bytes against ~20 KB there).
    assert digest_size(message.digest, 1) < digest_size(message.digest, 0) / 4


def test_the_big_synack_decodes_digest_then_delta(v1_dir: Path) -> None:
    vector = _load(v1_dir, "synack_v1_big_420nodes.bin")
    message = decode(vector.data)
    assert isinstance(message, SynAck) and message.protocol_version == 1
    assert len(message.digest.nodes) == 420
    assert _ops(message.delta) == vector.decoded["delta"]["ops"]
    layout = walk(encode(message))
    assert [len(b.plain()) for b in layout.delta_blocks] == [16_384, 14_409]


# --------------------------------------------------------------------------- encoding


N0 = NodeId("v1_only_V1-n0", 1000, SocketAddress.parse("127.0.0.1:29001"))
N1 = NodeId("v1_only_V1-n1", 1001, SocketAddress.parse("127.0.0.1:29002"))
N2 = NodeId("v1_only_V1-n2", 1002, SocketAddress.parse("127.0.0.1:29003"))


def test_each_message_encodes_in_its_own_version() -> None:
    digest = Digest({N0: NodeDigest(5, 0, 2), N1: NodeDigest(4, 0, 1)})
    messages: list[Message] = [
        Syn("testing", digest, protocol_version=1),
        SynAck(digest, Delta(), protocol_version=1),
        Ack(Delta(), protocol_version=1),
        BadCluster(protocol_version=1),
    ]
    for message in messages:
        data = encode(message)
        assert data[2] == 1
        assert decode(data) == message
        v0 = encode(attrs.evolve(message, protocol_version=0))
        assert v0[2] == 0 and decode(v0) == attrs.evolve(message, protocol_version=0)
    # A V1 digest is a block stream, a V0 digest a count: the Ack and BadCluster differ
    # in nothing but the header.
    assert encode(messages[2])[3:] == encode(Ack(Delta()))[3:]


def test_empty_v1_digest_is_the_end_tag_alone() -> None:
    assert encode_digest(Digest(), 1) == b"\x00"
    assert digest_size(Digest(), 1) == 1
    message = decode(encode(Syn("testing", Digest(), protocol_version=1)))
    assert isinstance(message, Syn) and message.digest == Digest()


def test_unknown_version_is_refused_both_ways() -> None:
    with pytest.raises(EncodeError):
        encode(Syn("testing", Digest(), protocol_version=2))
    with pytest.raises(DecodeError, match="protocol version"):
        decode(b"\x53\xb0\x02\x00\x00\x07\x00testing")


# --------------------------------------------------------------------------- malformed V1


def _v1_syn(stream: bytes, cluster: bytes = b"\x07\x00testing") -> bytes:
    return b"\x53\xb0\x01\x00" + stream + cluster


def _entry(node: NodeId) -> bytes:
    name = node.node_id.encode()
    return (
        U16.pack(len(name))
        + name
        + struct.pack("<QB", node.generation, 4)
        + node.gossip_addr.ip.packed
        + U16.pack(node.gossip_addr.port)
        + struct.pack("<QQQ", 7, 0, 3)
    )


def test_a_raw_block_digest_decodes() -> None:
    payload = _entry(N0) + _entry(N1)
    message = decode(_v1_syn(b"\x02" + U16.pack(len(payload)) + payload + b"\x00"))
    assert isinstance(message, Syn)
    assert message.digest.nodes == {N0: NodeDigest(7, 0, 3), N1: NodeDigest(7, 0, 3)}


def test_an_entry_split_over_two_blocks_decodes() -> None:
    payload = _entry(N0) + _entry(N1)
    cut = len(_entry(N0)) + 5
    blocks = b"".join(
        b"\x02" + U16.pack(len(part)) + part for part in (payload[:cut], payload[cut:])
    )
    message = decode(_v1_syn(blocks + b"\x00"))
    assert isinstance(message, Syn) and set(message.digest.nodes) == {N0, N1}


@pytest.mark.parametrize(
    "stream",
    [
        pytest.param(b"", id="no-digest-at-all"),
        pytest.param(b"\x02\x10\x00abc", id="block-cut-short"),
        pytest.param(b"\x02", id="block-header-cut-short"),
        pytest.param(b"\x07\x01\x00a\x00", id="bad-block-type"),
        pytest.param(b"\x01\x04\x00abcd\x00", id="garbage-zstd-block"),
        pytest.param(
            b"\x02" + U16.pack(len(_entry(N0)) - 1) + _entry(N0)[:-1] + b"\x00",
            id="entry-cut-at-the-end",
        ),
        pytest.param(
            b"\x02" + U16.pack(len(_entry(N0)) + 3) + _entry(N0) + b"\x02\x00\x00" + b"\x00",
            id="trailing-partial-entry",
        ),
        pytest.param(b"\x02\x05\x00\x01\x00a\x00\x00\x00", id="entry-cut-in-its-node-id"),
    ],
)
def test_malformed_v1_digest_is_a_decode_error(stream: bytes) -> None:
    # A valid rest after the digest: only the digest can be at fault.
    with pytest.raises(DecodeError):
        decode(_v1_syn(stream))
    with pytest.raises(DecodeError):
        decode(b"\x53\xb0\x01\x01" + stream + b"\x00")  # as a SynAck's, before a delta


def test_every_truncation_of_a_v1_vector_is_a_decode_error(v1_dir: Path) -> None:
    for name in ("syn_v1_3nodes.bin", "synack_v1_3nodes_with_delta.bin", "ack_v1_with_delta.bin"):
        data = (v1_dir / name).read_bytes()
        for end in range(len(data)):
            with pytest.raises(DecodeError):
                decode(data[:end])


# --------------------------------------------------------------------------- the engine in V1
#
# The captured 3-node cluster: n0 (port 29001) holds a key at version 1 and "verify-key" at
# version 2; n1 and n2 hold what the captured digests say. Our engine plays one of them,
# gets a captured V1 message (or one derived from it, with a peer a version behind), and
# must reply as the chitchat that captured the matching vector did.


def _remote(engine: GossipEngine, node: NodeId, max_version: int) -> None:
    """Give ``engine`` the state of a peer up to ``max_version``, as gossip would."""
    engine.state.node_state_or_init(node)
    kvs = tuple(KeyValueMutation(f"k{v}", f"v{v}", v) for v in range(1, max_version + 1))
    if node == N0:
        kvs = (KeyValueMutation("k1", "v1", 1), KeyValueMutation("verify-key", "hello-from-n0", 2))
    engine.state.apply_delta(Delta((NodeDelta(node, 0, 0, kvs, max_version),)), 0.0)


def _engine_n0() -> GossipEngine:
    engine = GossipEngine(N0, "testing", now=0.0)
    engine.self_state.set("k1", "v1")
    engine.self_state.set("verify-key", "hello-from-n0")
    _remote(engine, N1, 1)
    _remote(engine, N2, 2)
    return engine


def _lower(digest: Digest, node: NodeId, max_version: int) -> Digest:
    nodes = dict(digest.nodes)
    nodes[node] = attrs.evolve(nodes[node], max_version=max_version)
    return Digest(nodes)


def _versions(digest: Digest) -> list[tuple[NodeId, int, int]]:
    """A digest without its heartbeats (they depend on when each node was caught)."""
    return [(n, d.last_gc_version, d.max_version) for n, d in digest.nodes.items()]


def _reply(engine: GossipEngine, message: Message) -> bytes:
    reply = engine.handle_message(decode(encode(message)), 1.0).reply
    assert reply is not None
    return encode(reply)


def test_engine_answers_a_captured_v1_syn_in_v1(v1_dir: Path) -> None:
    syn = decode((v1_dir / "syn_v1_3nodes.bin").read_bytes())
    expected = _load(v1_dir, "synack_v1_3nodes_empty_delta.bin")
    assert isinstance(syn, Syn)
    engine = _engine_n0()
    engine.protocol_version = 0  # what we initiate with must not matter to a reply

    data = _reply(engine, syn)
    assert data[:4] == expected.data[:4]  # 53 b0 01 01: a V1 SynAck
    ours, theirs = decode(data), decode(expected.data)
    assert isinstance(ours, SynAck) and isinstance(theirs, SynAck)
    assert _versions(ours.digest) == _versions(theirs.digest)
    # In sync: the delta is the end tag alone, as chitchat sent it.
    assert walk(data).delta_blocks == [] and data.endswith(b"\x00")
    assert data[4 + digest_size(ours.digest, 1) :] == b"\x00"
    # Same node ids, fixed-width numbers: the digest's raw stream has chitchat's length.
    assert len(joined(walk(data).digest_blocks)) == expected.decoded["digest_stream"]["raw_len"]


def test_engine_sends_a_v1_peer_what_it_lacks_as_chitchat_did(v1_dir: Path) -> None:
    captured = decode((v1_dir / "syn_v1_3nodes.bin").read_bytes())
    expected = _load(v1_dir, "synack_v1_3nodes_with_delta.bin")
    assert isinstance(captured, Syn)
    # The same Syn from a peer that has n0 only up to version 1.
    syn = attrs.evolve(captured, digest=_lower(captured.digest, N0, 1))

    data = _reply(_engine_n0(), syn)
    assert data[:4] == expected.data[:4]
    ours, theirs = decode(data), decode(expected.data)
    assert isinstance(ours, SynAck) and isinstance(theirs, SynAck)
    assert ours.delta == theirs.delta
    # The delta's decompressed operation stream is chitchat's, byte for byte.
    assert joined(walk(data).delta_blocks) == joined(walk(expected.data).delta_blocks)


def test_engine_acks_a_v1_synack_in_v1(v1_dir: Path) -> None:
    captured = decode((v1_dir / "synack_v1_3nodes_empty_delta.bin").read_bytes())
    expected = _load(v1_dir, "ack_v1_with_delta.bin")
    assert isinstance(captured, SynAck)
    # n1 gossips with a peer that has n0 only up to version 1 (as the capture's n2 did).
    engine = GossipEngine(N1, "testing", now=0.0, initial_key_values={"k1": "v1"})
    _remote(engine, N0, 2)
    _remote(engine, N2, 2)
    synack = attrs.evolve(captured, digest=_lower(captured.digest, N0, 1))

    data = _reply(engine, synack)
    assert data[:4] == expected.data[:4]  # 53 b0 01 02: the Ack keeps the V1 header
    assert joined(walk(data).delta_blocks) == joined(walk(expected.data).delta_blocks)


def test_engine_initiates_in_its_configured_version() -> None:
    for version in (0, 1):
        engine = GossipEngine(N0, "testing", now=0.0, protocol_version=version)
        syn = engine.create_syn(1.0)
        assert syn.protocol_version == version
        assert encode(syn)[2] == version


def test_bad_cluster_goes_back_in_the_syns_version() -> None:
    engine = GossipEngine(N0, "testing", now=0.0)
    reply = engine.handle_message(Syn("elsewhere", Digest(), protocol_version=1), 1.0).reply
    assert reply == BadCluster(protocol_version=1)


@pytest.mark.parametrize("version", [0, 1])
def test_synack_budget_counts_the_digest_as_sent(version: int) -> None:
    """The delta of a SynAck gets the room the digest leaves in the version sent: V1's exact
    compressed size, not the V0 size, and never the size in the version we initiate with
    (chitchat reserves that one, and overshoots when it answers a V0 Syn while set to V1)."""
    limit = 4_000
    engine = GossipEngine(
        N0, "testing", now=0.0, max_datagram_size=limit, protocol_version=1 - version
    )
    for i in range(60):  # a digest of 60 nodes: ~2.5 KB in V0, far less in V1
        node = NodeId(f"peer-{i:03d}", 7, SocketAddress.parse(f"127.0.0.1:{20_000 + i}"))
        engine.state.node_state_or_init(node).try_set_heartbeat(3, 0.0)
    for i in range(400):  # more than fits
        engine.self_state.set(f"key-{i:03d}", hashlib.sha256(str(i).encode()).hexdigest())
    syn = Syn("testing", Digest(), protocol_version=version)

    reply = engine.handle_message(syn, 1.0).reply
    assert isinstance(reply, SynAck) and reply.protocol_version == version
    data = encode(reply)
    assert data[2] == version
    digest_len = digest_size(reply.digest, version)
    delta_wire = data[4 + digest_len :]
    blocks, end = walk_blocks(delta_wire, 0)
    assert end == len(delta_wire) and len(blocks) == 1
    # What the delta writer bounds: its one block as if left uncompressed, and the end tag.
    bound = 4 + digest_len + 3 + len(blocks[0].plain()) + 1
    assert bound <= limit
    # The room was used: another key-value (~83 bytes) would not have fitted.
    assert bound > limit - 90
