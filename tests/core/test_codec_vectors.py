"""The codec against packets captured from the real Rust chitchat 0.10.1, and the MTU writer.

Every ``<name>.bin`` in the shared vector folder is decoded; where a ``<name>.json`` describes
it, the decoded message must match that description field by field. Re-encoding must give the
same datagram: byte for byte outside compressed blocks, and the same decompressed operation
stream inside them (another libzstd may compress the same bytes differently).

The wire format is re-implemented here independently and small (framing walker, operation
serializers, a transcription of chitchat's ``CompressedStreamWriter``) so that the codec is
checked against something other than itself; the transcriptions are in turn pinned to the
golden streams.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import random
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import zstandard
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gossip_tui.core.codec import (
    DecodeError,
    DeltaWriter,
    EncodeError,
    decode,
    digest_size,
    encode,
    encode_delta,
    encode_digest,
)
from gossip_tui.core.messages import (
    Ack,
    BadCluster,
    Delta,
    Digest,
    KeyValueMutation,
    NodeDelta,
    NodeDigest,
    Syn,
    SynAck,
)
from gossip_tui.core.models import KeyStatus, NodeId, SocketAddress

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "chitchat-vectors"
MISSING = "vectors-missing"

MESSAGE_CLASSES: dict[str, type] = {
    "Syn": Syn,
    "SynAck": SynAck,
    "Ack": Ack,
    "BadCluster": BadCluster,
}
LIVE_KINDS: dict[str, type] = {"syn": Syn, "synack": SynAck, "ack": Ack, "badcluster": BadCluster}
# chitchat's names for the deletion statuses (Rust's DeletionStatus), with their wire codes.
STATUS_BY_NAME = {
    "Set": KeyStatus.SET,
    "Delete": KeyStatus.DELETED,
    "DeleteAfterTtl": KeyStatus.DELETE_AFTER_TTL,
}

U16 = struct.Struct("<H")
HEADER = {  # magic 45139 little-endian, protocol version 0, message type
    Syn: b"\x53\xb0\x00\x00",
    SynAck: b"\x53\xb0\x00\x01",
    Ack: b"\x53\xb0\x00\x02",
    BadCluster: b"\x53\xb0\x00\x03",
}
BLOCK_THRESHOLD = 16_384
MAX_DATAGRAM = 65_507


# --------------------------------------------------------------------------- vector loading


def _bin_names(*, described: bool = False) -> list[str]:
    """File names to parametrize over; computed at collection without failing if absent."""
    if not VECTORS.is_dir():
        return [MISSING]  # the vectors_dir fixture skips these
    names = sorted(
        p.name for p in VECTORS.glob("*.bin") if not described or p.with_suffix(".json").is_file()
    )
    return names or [MISSING]


@dataclasses.dataclass(frozen=True)
class Vector:
    name: str
    data: bytes
    meta: dict[str, Any] | None  # the <name>.json description, when there is one
    live: dict[str, Any] | None  # the live-index.json entry, for live captures


def _load(vectors_dir: Path, name: str) -> Vector:
    path = vectors_dir / name
    assert path.is_file(), f"no vector {name} in {vectors_dir}"
    described = path.with_suffix(".json")
    meta = json.loads(described.read_text()) if described.is_file() else None
    live_index = vectors_dir / "live-index.json"
    live = None
    if live_index.is_file():
        live = next((e for e in json.loads(live_index.read_text()) if e["file"] == name), None)
    return Vector(name, path.read_bytes(), meta, live)


@pytest.fixture
def vector(vectors_dir: Path, request: pytest.FixtureRequest) -> Vector:
    name: str = request.param
    return _load(vectors_dir, name)


all_vectors = pytest.mark.parametrize("vector", _bin_names(), indirect=True)
described_vectors = pytest.mark.parametrize("vector", _bin_names(described=True), indirect=True)


# --------------------------------------------------------------------------- independent wire model


@dataclasses.dataclass(frozen=True)
class Block:
    offset: int
    tag: int  # 0 NoMoreBlocks, 1 zstd, 2 raw
    payload: bytes  # the bytes after the u16 length field (empty for NoMoreBlocks)

    def plain(self) -> bytes:
        if self.tag == 1:
            return zstandard.ZstdDecompressor().decompress(self.payload, max_output_size=0xFFFF)
        return self.payload


def _skip_digest(data: bytes, pos: int) -> int:
    (count,) = U16.unpack_from(data, pos)
    pos += 2
    for _ in range(count):
        (name_len,) = U16.unpack_from(data, pos)
        pos += 2 + name_len + 8
        pos += 1 + (4 if data[pos] == 4 else 16) + 2
        pos += 24  # heartbeat, last_gc_version, max_version
    return pos


def split_datagram(data: bytes) -> tuple[bytes, list[Block]]:
    """(bytes before the delta stream, the delta's blocks); no blocks for Syn/BadCluster."""
    msg_type = data[3]
    if msg_type in (0, 3):
        return data, []
    pos = 4 if msg_type == 2 else _skip_digest(data, 4)
    prefix = data[:pos]
    blocks: list[Block] = []
    while True:
        tag = data[pos]
        if tag == 0:
            blocks.append(Block(pos, 0, b""))
            return prefix, blocks
        (length,) = U16.unpack_from(data, pos + 1)
        blocks.append(Block(pos, tag, data[pos + 3 : pos + 3 + length]))
        pos += 3 + length


def op_stream(blocks: list[Block]) -> bytes:
    return b"".join(block.plain() for block in blocks)


def ser_str(text: str) -> bytes:
    raw = text.encode()
    return U16.pack(len(raw)) + raw


def ser_node_id(node: NodeId) -> bytes:
    ip = node.gossip_addr.ip
    return (
        ser_str(node.node_id)
        + struct.pack("<QB", node.generation, ip.version)
        + ip.packed
        + U16.pack(node.gossip_addr.port)
    )


def op_node(node: NodeId, last_gc_version: int, from_version_excluded: int) -> bytes:
    return b"\x00" + ser_node_id(node) + struct.pack("<QQ", last_gc_version, from_version_excluded)


def op_kv(key: str, value: str, version: int, status: KeyStatus) -> bytes:
    return b"\x01" + ser_str(key) + ser_str(value) + struct.pack("<QB", version, status.value)


def op_max_version(max_version: int) -> bytes:
    return b"\x02" + struct.pack("<Q", max_version)


class ChitchatStreamModel:
    """``CompressedStreamWriter`` of chitchat 0.10.1 (serialize.rs), transcribed."""

    def __init__(self, mtu: int) -> None:
        self.threshold = min(BLOCK_THRESHOLD, mtu)
        self.output = bytearray()
        self.block = bytearray()

    def upper_bound_after(self, item_len: int) -> int:
        if len(self.block) + item_len > self.threshold:  # a new block is needed
            return 3 + len(self.output) + len(self.block) + 3 + item_len + 1
        return 3 + len(self.output) + len(self.block) + item_len + 1

    def append(self, item: bytes) -> None:
        self.block += item
        while len(self.block) > self.threshold:
            self._flush()

    def _flush(self) -> None:
        if not self.block:
            return
        size = min(len(self.block), self.threshold)
        chunk = bytes(self.block[:size])
        # zstd::bulk::compress_to_buffer into a buffer of `size` bytes, level 0 (= 3).
        compressed = zstandard.ZstdCompressor(level=3).compress(chunk)
        if len(compressed) <= size:
            self.output += b"\x01" + U16.pack(len(compressed)) + compressed
        else:
            self.output += b"\x02" + U16.pack(size) + chunk
        del self.block[:size]

    def finish(self) -> bytes:
        self._flush()
        return bytes(self.output) + b"\x00"


def _addr(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    host, _, port = text.rpartition(":")
    return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")), int(port)


def _node_from_json(cid: dict[str, Any]) -> NodeId:
    ip, port = _addr(cid["gossip_advertise_addr"])
    return NodeId(cid["node_id"], cid["generation_id"], SocketAddress(ip, port))


# --------------------------------------------------------------------------- the vector set


def test_vector_set_is_complete(vectors_dir: Path) -> None:
    index = json.loads((vectors_dir / "index.json").read_text())
    live_index = json.loads((vectors_dir / "live-index.json").read_text())
    listed = {e["file"] for e in index} | {e["file"] for e in live_index}
    on_disk = {p.name for p in vectors_dir.glob("*.bin")}
    assert listed == on_disk
    for entry in index:
        assert (vectors_dir / entry["file"]).with_suffix(".json").is_file(), entry["file"]
    for entry in [*index, *live_index]:
        assert (vectors_dir / entry["file"]).stat().st_size == entry["len"], entry["file"]
    # Every message type and every block kind chitchat emitted is represented.
    kinds = {e["message_type"] for e in index}
    assert kinds == set(MESSAGE_CLASSES)


# --------------------------------------------------------------------------- decoding


@all_vectors
def test_vector_decodes_to_the_right_message_type(vector: Vector) -> None:
    message = decode(vector.data)
    if vector.meta is not None:
        assert type(message) is MESSAGE_CLASSES[vector.meta["message_type"]]
        assert len(vector.data) == vector.meta["len"]
        header = vector.meta["header"]
        assert vector.data[:4] == struct.pack(
            "<HBB", header["magic_u16le"], header["protocol_version"], header["message_type_code"]
        )
    else:
        assert vector.live is not None, f"{vector.name} is described nowhere"
        assert type(message) is LIVE_KINDS[vector.live["kind"]]
        assert len(vector.data) == vector.live["len"]


def _assert_node(node: NodeId, cid: dict[str, Any], where: str) -> None:
    ip, port = _addr(cid["gossip_advertise_addr"])
    assert node.node_id == cid["node_id"], where
    assert node.generation == cid["generation_id"], where
    assert node.gossip_addr.ip == ip, where
    assert node.gossip_addr.port == port, where
    assert str(node.gossip_addr) == cid["gossip_advertise_addr"], where


def _assert_digest(digest: Digest, expected: list[dict[str, Any]]) -> None:
    # Decoding keeps wire order, which is chitchat's BTreeMap order.
    entries = list(digest.nodes.items())
    assert len(entries) == len(expected)
    for i, ((node, nd), exp) in enumerate(zip(entries, expected, strict=True)):
        _assert_node(node, exp["chitchat_id"], f"digest entry {i}")
        assert nd == NodeDigest(exp["heartbeat"], exp["last_gc_version"], exp["max_version"])


def _assert_kv(kv: KeyValueMutation, exp: dict[str, Any], where: str) -> None:
    assert kv.key == exp["key"], where
    assert kv.version == exp["version"], where
    assert kv.status is STATUS_BY_NAME[exp["status"]["name"]], where
    assert kv.status.value == exp["status"]["code"], where
    assert len(kv.value.encode()) == exp["value_len"], where
    if exp["value"] is not None:
        assert kv.value == exp["value"], where
    if "value_prefix" in exp:
        assert kv.value.startswith(exp["value_prefix"]), where


def _max_version_of(node_delta: dict[str, Any]) -> int:
    return next(v for k, v in node_delta.items() if k.startswith("max_version"))


def _assert_delta(delta: Delta, expected: dict[str, Any]) -> None:
    node_deltas = expected["node_deltas"]
    assert len(delta.node_deltas) == len(node_deltas)
    for i, (nd, exp) in enumerate(zip(delta.node_deltas, node_deltas, strict=True)):
        where = f"node delta {i}"
        _assert_node(nd.node, exp["chitchat_id"], where)
        assert nd.from_version_excluded == exp["from_version_excluded"], where
        assert nd.last_gc_version == exp["last_gc_version"], where
        assert nd.max_version == _max_version_of(exp), where
        assert len(nd.key_values) == len(exp["key_values"]), where
        for j, (kv, exp_kv) in enumerate(zip(nd.key_values, exp["key_values"], strict=True)):
            _assert_kv(kv, exp_kv, f"{where}, key-value {j}")

    # Replay the operations in stream order the way chitchat's DeltaBuilder does, and
    # check the decoded delta is what they build.
    rebuilt: list[tuple[dict[str, Any], list[dict[str, Any]], int]] = []
    for op in expected["ops_in_stream_order"]:
        if op["op"] == "Node":
            rebuilt.append((op, [], 0))
        elif op["op"] == "KeyValue":
            head, kvs, _ = rebuilt[-1]
            kvs.append(op)
            rebuilt[-1] = (head, kvs, op["version"])
        else:
            assert op["op"] == "SetMaxVersion"
            head, kvs, _ = rebuilt[-1]
            rebuilt[-1] = (head, kvs, op["max_version"])
    assert len(rebuilt) == len(delta.node_deltas)
    for nd, (head, kvs, max_version) in zip(delta.node_deltas, rebuilt, strict=True):
        _assert_node(nd.node, head["chitchat_id"], "op stream")
        assert nd.last_gc_version == head["last_gc_version"]
        assert nd.from_version_excluded == head["from_version_excluded"]
        assert nd.max_version == max_version
        for kv, exp_kv in zip(nd.key_values, kvs, strict=True):
            _assert_kv(kv, exp_kv, "op stream")


@described_vectors
def test_vector_content_matches_its_description(vector: Vector) -> None:
    assert vector.meta is not None
    message = decode(vector.data)
    body = vector.meta.get("body", {})
    if isinstance(message, Syn):
        assert message.cluster_id == body["cluster_id"]
        _assert_digest(message.digest, body["digest"])
    elif isinstance(message, SynAck):
        _assert_digest(message.digest, body["digest"])
        _assert_delta(message.delta, body["delta"])
    elif isinstance(message, Ack):
        _assert_delta(message.delta, body["delta"])
    else:
        assert isinstance(message, BadCluster)
        assert len(vector.data) == 4


@described_vectors
def test_vector_framing_matches_its_description(vector: Vector) -> None:
    """Pins the test's own framing walker to the description (it is the oracle below)."""
    assert vector.meta is not None
    prefix, blocks = split_datagram(vector.data)
    stream = vector.meta.get("delta_stream")
    if stream is None:
        assert blocks == []
        return
    assert len(prefix) == stream["offset"]
    expected_blocks = stream["blocks"]
    assert [b.offset for b in blocks] == [b["offset"] for b in expected_blocks]
    assert [b.tag for b in blocks] == [b["tag"] for b in expected_blocks]
    for block, exp in zip(blocks, expected_blocks, strict=True):
        if block.tag:
            assert len(block.payload) == exp["len_field_u16le"]
            assert len(block.plain()) == exp["payload_len_after_decompression"]
    assert op_stream(blocks).hex() == stream["decompressed_op_stream_hex"]
    assert len(op_stream(blocks)) == stream["decompressed_op_stream_len"]
    assert len(vector.data) - stream["offset"] == vector.meta["body"]["delta"]["serialized_len"]
    message = decode(vector.data)
    if isinstance(message, SynAck):
        assert digest_size(message.digest) == stream["offset"] - 4
        assert encode_digest(message.digest) == vector.data[4 : stream["offset"]]


def test_reference_serializers_match_the_golden_op_streams(vectors_dir: Path) -> None:
    """Pins this file's operation serializers to chitchat's bytes (used for the writer)."""
    checked = 0
    for name in _bin_names(described=True):
        meta = _load(vectors_dir, name).meta
        assert meta is not None
        delta = meta.get("body", {}).get("delta")
        if delta is None:
            continue
        ops = delta["ops_in_stream_order"]
        if any(op["op"] == "KeyValue" and op["value"] is None for op in ops):
            continue  # a value described only by its prefix
        out = b""
        for op in ops:
            if op["op"] == "Node":
                node = _node_from_json(op["chitchat_id"])
                out += op_node(node, op["last_gc_version"], op["from_version_excluded"])
            elif op["op"] == "KeyValue":
                status = STATUS_BY_NAME[op["status"]["name"]]
                out += op_kv(op["key"], op["value"], op["version"], status)
            else:
                out += op_max_version(op["max_version"])
        assert out.hex() == meta["delta_stream"]["decompressed_op_stream_hex"], name
        checked += 1
    assert checked >= 4


# --------------------------------------------------------------------------- re-encoding


@all_vectors
def test_reencoding_reproduces_the_datagram(vector: Vector) -> None:
    message = decode(vector.data)
    out = encode(message)
    prefix, blocks = split_datagram(vector.data)
    out_prefix, out_blocks = split_datagram(out)
    # Header, digest and cluster id carry no compression: always byte for byte.
    assert out_prefix == prefix
    if all(block.tag != 1 for block in blocks):
        assert out == vector.data
        return
    # Compressed blocks: same framing decisions, same decompressed operation stream.
    assert [b.tag for b in out_blocks] == [b.tag for b in blocks]
    assert [len(b.plain()) for b in out_blocks] == [len(b.plain()) for b in blocks]
    assert op_stream(out_blocks) == op_stream(blocks)
    if vector.meta is not None:
        expected_hex = vector.meta["delta_stream"]["decompressed_op_stream_hex"]
        assert op_stream(out_blocks).hex() == expected_hex
    assert out_blocks[-1] == Block(len(out) - 1, 0, b"")


@all_vectors
def test_reencoded_vector_decodes_to_an_equal_message(vector: Vector) -> None:
    message = decode(vector.data)
    again = decode(encode(message))
    assert again == message
    assert type(again) is type(message)
    if isinstance(message, Syn | SynAck):
        assert isinstance(again, Syn | SynAck)
        assert list(again.digest.nodes) == list(message.digest.nodes)


# --------------------------------------------------------------------------- raw and multi-block


def _node(
    name: str = "node-1", generation: int = 1_700_000_001, addr: str = "127.0.0.1:17001"
) -> NodeId:
    return NodeId(name, generation, SocketAddress.parse(addr))


def test_a_raw_block_is_encoded_byte_for_byte() -> None:
    # Tiny, high-entropy operations: zstd cannot shrink them, so the block stays raw (tag 2).
    node = _node("\u00e9\u4e2d-q7Zx", 0x9E3779B97F4A7C15, "[2001:db8::17]:40123")
    delta = Delta(
        (NodeDelta(node, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, (), 0x27D4EB2F165667C5),)
    )
    ops = op_node(node, 0x165667B19E3779F9, 0xC2B2AE3D27D4EB4F) + op_max_version(0x27D4EB2F165667C5)
    expected = HEADER[Ack] + b"\x02" + U16.pack(len(ops)) + ops + b"\x00"
    assert encode(Ack(delta)) == expected
    assert decode(expected) == Ack(delta)


def _values(count: int, size: int, seed: int) -> Iterator[str]:
    rng = random.Random(seed)
    for i in range(count):
        if i % 3 == 0:
            yield ("abc-" * size)[:size]  # compressible
        else:
            yield rng.randbytes(size // 2 + 1).hex()[:size]  # compresses about 2:1 only


def test_multi_block_delta_round_trips() -> None:
    node_deltas = []
    ops = b""
    for n in range(4):
        node = _node(f"node-{n}", 1_700_000_000 + n, f"10.0.0.{n + 1}:10001")
        kvs = tuple(
            KeyValueMutation(f"key-{i}", value, i + 1, KeyStatus(i % 3))
            for i, value in enumerate(_values(12, 1_000, seed=n))
        )
        node_deltas.append(NodeDelta(node, 0, 0, kvs, kvs[-1].version))
        ops += op_node(node, 0, 0) + b"".join(
            op_kv(kv.key, kv.value, kv.version, kv.status) for kv in kvs
        )
    # One value bigger than two blocks, cut across block boundaries.
    big = next(_values(2, 40_000, seed=99))
    node = _node("big", 5, "[::1]:7000")
    node_deltas.append(NodeDelta(node, 3, 1, (KeyValueMutation("big", big, 4),), 4))
    ops += op_node(node, 1, 3) + op_kv("big", big, 4, KeyStatus.SET)
    assert len(ops) > 4 * BLOCK_THRESHOLD

    message = Ack(Delta(tuple(node_deltas)))
    datagram = encode(message)
    _, blocks = split_datagram(datagram)
    sizes = [len(b.plain()) for b in blocks[:-1]]
    expected_count = -(-len(ops) // BLOCK_THRESHOLD)
    assert sizes == [BLOCK_THRESHOLD] * (expected_count - 1) + [len(ops) % BLOCK_THRESHOLD]
    assert blocks[-1].tag == 0
    assert op_stream(blocks) == ops
    assert decode(datagram) == message


def test_the_largest_value_a_delta_can_carry() -> None:
    # An operation is at most 65535 bytes: 1 + (2+1) + (2+len) + 8 + 1 for a 1-byte key.
    node = _node()
    fits = "v" * (0xFFFF - 15)
    message = Ack(Delta((NodeDelta(node, 0, 0, (KeyValueMutation("k", fits, 1),), 1),)))
    assert decode(encode(message)) == message
    too_big = fits + "v"
    with pytest.raises(EncodeError):
        encode(Ack(Delta((NodeDelta(node, 0, 0, (KeyValueMutation("k", too_big, 1),), 1),))))


@pytest.mark.parametrize(
    "value",
    ["x" * 65_536, "\u00e9" * 32_768, "\U0001f600" * 20_000],
    ids=["ascii-65536", "two-byte-65536", "four-byte-80000"],
)
def test_a_string_over_65535_bytes_raises_encode_error(value: str) -> None:
    node = _node()
    kv_delta = Delta((NodeDelta(node, 0, 0, (KeyValueMutation("k", value, 1),), 1),))
    with pytest.raises(EncodeError):
        encode(Ack(kv_delta))
    with pytest.raises(EncodeError):
        encode(
            SynAck(Digest(), Delta((NodeDelta(node, 0, 0, (KeyValueMutation(value, "", 1),), 1),)))
        )
    with pytest.raises(EncodeError):
        encode(Syn(value, Digest()))
    with pytest.raises(EncodeError):
        encode(Syn("c", Digest({_node(value): NodeDigest(1, 0, 0)})))
    writer = DeltaWriter(MAX_DATAGRAM)
    assert writer.try_add_node(node, 0, 0)
    with pytest.raises(EncodeError):
        writer.try_add_kv("k", value, 1, KeyStatus.SET)
    with pytest.raises(EncodeError):
        DeltaWriter(MAX_DATAGRAM).try_add_node(_node(value), 0, 0)


def test_a_string_of_exactly_65535_bytes_is_fine() -> None:
    cluster_id = "\u00e9" * 32_767 + "x"  # 65535 UTF-8 bytes
    message = Syn(cluster_id, Digest())
    datagram = encode(message)
    assert datagram[4:8] == b"\x00\x00\xff\xff"
    assert decode(datagram) == message


# --------------------------------------------------------------------------- the MTU writer


def test_writer_refuses_a_budget_below_100_bytes() -> None:
    with pytest.raises(ValueError, match="100"):
        DeltaWriter(99)
    DeltaWriter(100)


def test_writer_accepts_an_op_reaching_the_mtu_exactly() -> None:
    node = _node()
    kv = op_kv("key", "v" * 300, 1, KeyStatus.SET)
    mtu = 3 + len(op_node(node, 0, 0)) + len(kv) + 1
    exact = DeltaWriter(mtu)
    assert exact.try_add_node(node, 0, 0)
    assert exact.try_add_kv("key", "v" * 300, 1, KeyStatus.SET)
    assert len(encode_delta(exact.finish())) <= mtu
    short = DeltaWriter(mtu - 1)
    assert short.try_add_node(node, 0, 0)
    assert not short.try_add_kv("key", "v" * 300, 1, KeyStatus.SET)
    # Refusing adds nothing.
    assert short.finish() == Delta((NodeDelta(node, 0, 0, (), 0),))


def test_writer_counts_a_second_block_header_when_a_kv_crosses_the_threshold() -> None:
    node = _node()
    value = "w" * 16_390
    node_len = len(op_node(node, 0, 0))
    kv_len = len(op_kv("k", value, 1, KeyStatus.SET))
    assert node_len + kv_len > BLOCK_THRESHOLD
    # Two block headers (3 + 3) and the end tag: chitchat's bound.
    mtu = 3 + node_len + 3 + kv_len + 1
    writer = DeltaWriter(mtu)
    assert writer.try_add_node(node, 0, 0)
    assert writer.try_add_kv("k", value, 1, KeyStatus.SET)
    delta = writer.finish()
    assert len(encode_delta(delta)) <= mtu
    assert decode(HEADER[Ack] + encode_delta(delta)) == Ack(delta)
    # One byte less and it is refused, although a single block would still fit.
    writer = DeltaWriter(mtu - 1)
    assert writer.try_add_node(node, 0, 0)
    assert not writer.try_add_kv("k", value, 1, KeyStatus.SET)


@pytest.mark.parametrize("crossing", ["node", "kv", "max"])
def test_writer_counts_a_second_block_header_for_every_kind_of_op(crossing: str) -> None:
    first, second = _node("first"), _node("second", 2, "[::1]:2")
    filler_len = BLOCK_THRESHOLD - 5 - len(op_node(first, 0, 0))
    filler = "f" * (filler_len - len(op_kv("k", "", 1, KeyStatus.SET)))
    assert len(op_node(first, 0, 0) + op_kv("k", filler, 1, KeyStatus.SET)) == BLOCK_THRESHOLD - 5
    op = {
        "node": op_node(second, 0, 0),
        "kv": op_kv("key", "value", 2, KeyStatus.DELETED),
        "max": op_max_version(9),
    }[crossing]
    mtu = 3 + (BLOCK_THRESHOLD - 5) + 3 + len(op) + 1

    def attempt(budget: int) -> bool:
        writer = DeltaWriter(budget)
        assert writer.try_add_node(first, 0, 0)
        assert writer.try_add_kv("k", filler, 1, KeyStatus.SET)  # 5 bytes short of a block
        if crossing == "node":
            return writer.try_add_node(second, 0, 0)
        if crossing == "kv":
            return writer.try_add_kv("key", "value", 2, KeyStatus.DELETED)
        return writer.try_set_max_version(9)

    # Accepted at exactly chitchat's bound, refused one byte under it, although without
    # the second block header it would fit.
    assert attempt(mtu)
    assert not attempt(mtu - 1)


def test_writer_delta_is_sent_as_built() -> None:
    writer = DeltaWriter(MAX_DATAGRAM)
    assert writer.try_add_node(_node(), 0, 0)
    assert writer.try_add_kv("k", "v", 1, KeyStatus.SET)
    delta = writer.finish()
    assert delta.encoded is not None
    assert encode(Ack(delta)) == HEADER[Ack] + delta.encoded
    digest = Digest({_node(): NodeDigest(1, 0, 1)})
    assert encode(SynAck(digest, delta)) == HEADER[SynAck] + encode_digest(digest) + delta.encoded


u64 = st.integers(0, 2**64 - 1)
node_ids = st.builds(
    NodeId,
    st.text(max_size=16),
    u64,
    st.builds(SocketAddress, st.ip_addresses(), st.integers(0, 0xFFFF)),
)


@st.composite
def values(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["text", "repeat", "noise", "noise"]))
    if kind == "text":
        return draw(st.text(max_size=24))
    size = draw(st.integers(0, 6_000))
    if kind == "repeat":
        return draw(st.sampled_from(["a", "ab-", "\u00e9t\u00e9 "])) * (size // 3)
    return random.Random(draw(st.integers(0, 2**32))).randbytes(size // 2 + 1).hex()[:size]


@st.composite
def writer_plans(draw: st.DrawFn) -> tuple[int, list[tuple[Any, ...]]]:
    mtu = draw(
        st.one_of(
            st.integers(100, 1_000),
            st.integers(100, MAX_DATAGRAM),
            st.sampled_from([100, BLOCK_THRESHOLD, BLOCK_THRESHOLD + 7, MAX_DATAGRAM]),
        )
    )
    plan: list[tuple[Any, ...]] = []
    for node in draw(st.lists(node_ids, min_size=1, max_size=6, unique=True)):
        from_version = draw(st.integers(0, 2**62))
        plan.append(("node", node, draw(u64), from_version))
        count = draw(st.integers(0, 10))
        if count == 0:
            if draw(st.booleans()):
                plan.append(("max", draw(st.integers(1, 2**64 - 1))))
            continue
        version = from_version
        for _ in range(count):
            version += draw(st.integers(1, 3))
            status = draw(st.sampled_from(KeyStatus))
            plan.append(("kv", draw(st.text(max_size=10)), draw(values()), version, status))
    return mtu, plan


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(writer_plans())
@example((100, [("node", _node(), 0, 0), ("kv", "k", "v" * 60, 1, KeyStatus.SET)]))
def test_writer_respects_the_mtu_and_chitchats_bound(plan: tuple[int, list[Any]]) -> None:
    mtu, ops = plan
    writer = DeltaWriter(mtu)
    model = ChitchatStreamModel(mtu)
    for op in ops:
        if op[0] == "node":
            raw = op_node(*op[1:])
            expected = model.upper_bound_after(len(raw)) <= mtu
            added = writer.try_add_node(*op[1:])
        elif op[0] == "kv":
            raw = op_kv(*op[1:])
            expected = model.upper_bound_after(len(raw)) <= mtu
            added = writer.try_add_kv(*op[1:])
        else:
            raw = op_max_version(op[1])
            expected = model.upper_bound_after(len(raw)) <= mtu
            added = writer.try_set_max_version(op[1])
        assert added is expected, f"writer said {added} for {op[0]} of {len(raw)} bytes"
        if not added:
            break  # chitchat stops at the first refusal
        model.append(raw)
    delta = writer.finish()
    out = encode_delta(delta)
    assert len(out) <= mtu
    assert out == model.finish()
    # Encoding the same logical delta from scratch gives the same bytes.
    assert encode_delta(attrs.evolve(delta, encoded=None)) == out
    assert decode(HEADER[Ack] + out) == Ack(delta)


def test_decode_error_is_a_value_error() -> None:
    # Callers catch DecodeError; it must not be confused with other failures.
    assert issubclass(DecodeError, ValueError)
    assert not issubclass(EncodeError, DecodeError)
    with pytest.raises(DecodeError):
        decode(b"\x53\xb0\x00")


def test_decoded_instances_behave_like_constructed_ones() -> None:
    # The decoder may build instances without calling __init__; they must be the same.
    node = _node()
    kvs = (KeyValueMutation("a", "1", 3, KeyStatus.DELETE_AFTER_TTL), KeyValueMutation("b", "", 4))
    message = SynAck(
        Digest({node: NodeDigest(9, 2, 4)}),
        Delta((NodeDelta(node, 2, 1, kvs, 4), NodeDelta(_node("x"), 0, 0, (), 7))),
    )
    decoded = decode(encode(message))
    assert isinstance(decoded, SynAck)
    pairs: list[tuple[object, object]] = [
        (decoded.digest.nodes[node], message.digest.nodes[node]),
        *zip(decoded.delta.node_deltas, message.delta.node_deltas, strict=True),
        *zip(decoded.delta.node_deltas[0].key_values, kvs, strict=True),
    ]
    for got, built in pairs:
        assert type(got) is type(built)
        assert got == built
        assert hash(got) == hash(built)
        assert repr(got) == repr(built)
        assert attrs.asdict(got) == attrs.asdict(built)  # type: ignore[arg-type]
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            got.version = 0  # type: ignore[attr-defined]
