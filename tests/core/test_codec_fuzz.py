"""Property tests of the codec: hostile bytes only ever raise DecodeError; messages round-trip.

A gossip node decodes whatever arrives on its UDP port, so ``decode`` must turn every malformed
datagram into :class:`DecodeError` and nothing else. Mutations are applied to the golden
vectors at every layer: the datagram bytes, its length fields, the zstd frames inside its
blocks, and the decompressed operation stream (re-wrapped raw or recompressed so that the
corruption reaches the operation parser rather than dying in zstd).

Anything that does decode must encode again and decode to the same message, up to what the
wire cannot express twice (an explicit max version after key-values is implied on re-encode).
"""

from __future__ import annotations

import ipaddress
import itertools
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import attrs
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossip_tui.core.codec import DecodeError, EncodeError, decode, encode, encode_digest
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

U16 = struct.Struct("<H")
HEADER = b"\x53\xb0\x00"  # magic 45139 (LE), protocol version 0; the type byte follows
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- the oracle


def _canonical(message: Message) -> Message:
    """What ``message`` becomes after one encode/decode: an explicit max version is only
    sent for a node delta without key-values, so otherwise it is the last key-value's."""
    if isinstance(message, SynAck | Ack):
        node_deltas = tuple(
            attrs.evolve(nd, max_version=nd.key_values[-1].version) if nd.key_values else nd
            for nd in message.delta.node_deltas
        )
        return attrs.evolve(message, delta=Delta(node_deltas))
    return message


def _oversized_op(message: Message) -> bool:
    if not isinstance(message, SynAck | Ack):
        return False
    return any(
        15 + len(kv.key.encode()) + len(kv.value.encode()) > 0xFFFF
        for nd in message.delta.node_deltas
        for kv in nd.key_values
    )


def check_decode(datagram: bytes) -> Message | None:
    """Decode hostile bytes: DecodeError, or a message that survives a round trip."""
    try:
        message = decode(datagram)
    except DecodeError:
        return None
    # Any other exception propagates and fails the test.
    if _oversized_op(message):
        with pytest.raises(EncodeError):
            encode(message)
        return message
    assert decode(encode(message)) == _canonical(message)
    return message


# --------------------------------------------------------------------------- structure walkers


def _u16(data: bytes | bytearray, pos: int) -> int:
    value: int = U16.unpack_from(data, pos)[0]
    return value


def _walk_node_id(data: bytes, pos: int, fields: list[tuple[int, int]]) -> int:
    fields.append((pos, 2))  # name length
    pos += 2 + _u16(data, pos) + 8
    fields.append((pos, 1))  # IP version byte
    pos += 1 + (4 if data[pos] == 4 else 16) + 2
    return pos


def datagram_fields(data: bytes) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(offset, width) of the structural fields of a valid datagram (type byte, counts,
    lengths, IP versions, block tags and lengths), and (start, end) of each zstd frame."""
    fields: list[tuple[int, int]] = [(3, 1)]
    frames: list[tuple[int, int]] = []
    msg_type = data[3]
    if msg_type == 3:
        return fields, frames
    pos = 4
    if msg_type in (0, 1):
        fields.append((pos, 2))
        count = _u16(data, pos)
        pos += 2
        for _ in range(count):
            pos = _walk_node_id(data, pos, fields) + 24
    if msg_type == 0:
        fields.append((pos, 2))  # cluster id length
        return fields, frames
    while True:
        fields.append((pos, 1))
        if data[pos] == 0:
            return fields, frames
        fields.append((pos + 1, 2))
        length = _u16(data, pos + 1)
        if data[pos] == 1:
            frames.append((pos + 3, pos + 3 + length))
        pos += 3 + length


def split_stream(data: bytes) -> tuple[bytes, bytes] | None:
    """(bytes before the delta, decompressed operation stream), or None without a delta."""
    msg_type = data[3]
    if msg_type not in (1, 2):
        return None
    pos = 4
    if msg_type == 1:
        pos = 4 + 2
        for _ in range(_u16(data, 4)):
            pos = _walk_node_id(data, pos, []) + 24
    prefix = data[:pos]
    stream = b""
    while data[pos] != 0:
        length = _u16(data, pos + 1)
        payload = data[pos + 3 : pos + 3 + length]
        if data[pos] == 1:
            payload = zstandard.ZstdDecompressor().decompress(payload, max_output_size=0xFFFF)
        stream += payload
        pos += 3 + length
    return prefix, stream


def stream_fields(stream: bytes) -> list[tuple[int, int]]:
    """(offset, width) of tags, lengths, IP versions, versions and statuses in an op stream."""
    fields: list[tuple[int, int]] = []
    pos = 0
    while pos < len(stream):
        tag = stream[pos]
        fields.append((pos, 1))
        pos += 1
        if tag == 0:
            pos = _walk_node_id(stream, pos, fields)
            fields.append((pos, 8))  # last_gc_version
            fields.append((pos + 8, 8))  # from_version_excluded
            pos += 16
        elif tag == 1:
            for _ in range(2):  # key, value
                fields.append((pos, 2))
                pos += 2 + _u16(stream, pos)
            fields.append((pos, 8))  # version
            fields.append((pos + 8, 1))  # status
            pos += 9
        else:
            fields.append((pos, 8))  # max version
            pos += 8
    return fields


def wrap_stream(stream: bytes, cuts: list[int], compress: list[bool]) -> bytes:
    """Frame an op stream as blocks cut at ``cuts``, each raw or zstd-compressed."""
    out = bytearray()
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(stream)), len(stream)]
    for i, (start, end) in enumerate(itertools.pairwise(bounds)):
        chunk = stream[start:end]
        if not chunk:
            continue
        if compress[i % len(compress)]:
            chunk = zstandard.ZstdCompressor(level=3).compress(chunk)
            out += b"\x01"
        else:
            out += b"\x02"
        out += U16.pack(len(chunk)) + chunk
    out.append(0)
    return bytes(out)


# --------------------------------------------------------------------------- mutations


@st.composite
def byte_mutation(draw: st.DrawFn, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "set", "delete"]))
    if not data:
        return draw(st.binary(min_size=1, max_size=8))
    pos = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        return data[:pos] + bytes([data[pos] ^ (1 << draw(st.integers(0, 7)))]) + data[pos + 1 :]
    if kind == "truncate":
        return data[:pos]
    if kind == "insert":
        return data[:pos] + draw(st.binary(min_size=1, max_size=16)) + data[pos:]
    if kind == "delete":
        return data[:pos] + data[pos + draw(st.integers(1, 16)) :]
    return data[:pos] + bytes([draw(st.integers(0, 255))]) + data[pos + 1 :]


def _field_value(draw: st.DrawFn, old: int, width: int) -> int:
    top = (1 << (8 * width)) - 1
    return draw(
        st.one_of(
            st.integers(0, top),
            st.sampled_from([0, 1, 2, 3, 4, 5, 6, 0x7F, 0x80, 0xFF, top, top - 1]).map(
                lambda v: v & top
            ),
            st.integers(-3, 3).map(lambda d: (old + d) & top),
        )
    )


def _set_field(draw: st.DrawFn, data: bytes, field: tuple[int, int]) -> bytes:
    pos, width = field
    old = int.from_bytes(data[pos : pos + width], "little")
    new = _field_value(draw, old, width)
    return data[:pos] + new.to_bytes(width, "little") + data[pos + width :]


@st.composite
def structural_mutation(draw: st.DrawFn, data: bytes) -> bytes:
    fields, frames = datagram_fields(data)
    kinds = ["field"]
    if frames:
        kinds.append("zstd")
    parts = split_stream(data)
    if parts is not None:
        kinds += ["stream", "stream"]
    kind = draw(st.sampled_from(kinds))
    if kind == "field":
        return _set_field(draw, data, draw(st.sampled_from(fields)))
    if kind == "zstd":
        start, end = draw(st.sampled_from(frames))
        frame = data[start:end]
        mutated = draw(byte_mutation(frame))
        if draw(st.booleans()):  # keep the block length honest about the new frame size
            head = start - 3
            return (
                data[:head]
                + b"\x01"
                + U16.pack(min(len(mutated), 0xFFFF))
                + mutated[:0xFFFF]
                + data[end:]
            )
        mutated = (mutated + bytes(len(frame)))[: len(frame)]
        return data[:start] + mutated + data[end:]
    assert parts is not None
    prefix, stream = parts
    ops = stream_fields(stream)
    if ops and draw(st.booleans()):
        stream = _set_field(draw, stream, draw(st.sampled_from(ops)))
    else:
        stream = draw(byte_mutation(stream))
    cuts = draw(st.lists(st.integers(0, max(len(stream), 1)), max_size=3))
    compress = draw(st.lists(st.booleans(), min_size=1, max_size=4))
    return prefix + wrap_stream(stream, cuts, compress)


@st.composite
def mutated_datagrams(draw: st.DrawFn, data: bytes) -> bytes:
    if draw(st.integers(0, 3)) > 0:
        data = draw(structural_mutation(data))
    for _ in range(draw(st.integers(0 if data else 1, 2))):
        data = draw(byte_mutation(data))
    return data


# --------------------------------------------------------------------------- golden inputs


class Golden(dict[str, bytes]):
    """The golden datagrams by file name, with a short repr: Hypothesis prints the
    arguments of a failing example, and 80 kB of bytes would bury it (and warn)."""

    def __repr__(self) -> str:
        return f"<{len(self)} golden vectors>"

    def _repr_pretty_(self, printer: Any, _cycle: bool) -> None:
        printer.text(repr(self))


@pytest.fixture(scope="module")
def golden(vectors_dir: Path) -> Golden:
    vectors = Golden((p.name, p.read_bytes()) for p in sorted(vectors_dir.glob("*.bin")))
    assert vectors, f"no .bin files in {vectors_dir}"
    return vectors


@FAST
@given(data=st.data())
def test_mutated_golden_vectors_only_raise_decode_error(
    golden: Golden, data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(golden)), label="vector")
    datagram = data.draw(mutated_datagrams(golden[name]), label="mutated")
    check_decode(datagram)


def test_every_truncation_of_a_small_vector_is_a_decode_error(golden: Golden) -> None:
    # Every message ends with something mandatory (header, cluster id, end-of-blocks tag).
    for datagram in golden.values():
        if len(datagram) > 400:
            continue
        for end in range(len(datagram)):
            with pytest.raises(DecodeError):
                decode(datagram[:end])


def test_trailing_bytes_are_ignored(golden: Golden) -> None:
    for datagram in golden.values():
        assert decode(datagram + b"\x00\xff garbage") == decode(datagram)


def test_mutations_reach_the_operation_parser(golden: Golden) -> None:
    """Targeted corruptions of the op stream, raw and compressed, are each refused."""
    prefix, stream = split_stream(golden["synack_small_uncompressed.bin"])  # type: ignore[misc]
    assert stream[0] == 0
    ops = stream_fields(stream)
    name_len = ops[1][0]
    ip_version = ops[2][0]
    kv_tag = next(p for p, w in ops if w == 1 and p > 0 and stream[p] == 1)
    status = next(p for p, w in ops if w == 1 and p > kv_tag and stream[p] == 0)
    version = status - 8
    corrupt = {
        "first op not a node": stream[kv_tag:],
        "unknown op tag": stream[:kv_tag] + b"\x03" + stream[kv_tag + 1 :],
        "bad ip version": stream[:ip_version] + b"\x05" + stream[ip_version + 1 :],
        "bad status": stream[:status] + b"\x03" + stream[status + 1 :],
        "version 0": stream[:version] + bytes(8) + stream[version + 8 :],
        "name runs off the end": stream[:name_len] + b"\xff\xff" + stream[name_len + 2 :],
        "invalid utf-8": stream[: name_len + 2] + b"\xff" + stream[name_len + 3 :],
        "op cut short": stream[:-1],
        "node twice": stream + stream,
    }
    for label, bad in corrupt.items():
        for compress in (False, True):
            try:
                decode(prefix + wrap_stream(bad, [], [compress]))
            except DecodeError:
                continue
            pytest.fail(f"{label} (compressed={compress}) was accepted")
    # The same framing without corruption decodes: the refusals above are about content.
    assert decode(prefix + wrap_stream(stream, [7, 100], [True, False])) == decode(
        golden["synack_small_uncompressed.bin"]
    )


# --------------------------------------------------------------------------- zstd edge cases


def _zstd_rle_frame(blocks: int, block_size: int, content_size: int | None) -> bytes:
    """A zstd frame made of RLE blocks: tiny on the wire, ``blocks * block_size`` inflated."""
    frame = struct.pack("<I", 0xFD2FB528)
    if content_size is None:
        frame += bytes([0x00, 0x58])  # no content size, 2 MiB window
    else:
        frame += bytes([0x80, 0x58]) + struct.pack("<I", content_size)  # 4-byte content size
    for i in range(blocks):
        header = (block_size << 3) | (1 << 1) | (1 if i == blocks - 1 else 0)
        frame += header.to_bytes(3, "little") + b"a"
    return frame


def _ack_with_block(frame: bytes) -> bytes:
    return HEADER + b"\x02\x01" + U16.pack(len(frame)) + frame + b"\x00"


def test_a_decompression_bomb_is_refused_without_inflating_it() -> None:
    # 4 KiB of zstd that inflates to 256 MiB and says nothing of its size. chitchat
    # decompresses into a 65535-byte buffer; so must we, instead of inflating it all.
    datagram = _ack_with_block(_zstd_rle_frame(2_048, 128 * 1024, None))
    assert len(datagram) < 10_000
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError):
            decode(datagram)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


@pytest.mark.parametrize(
    "frame",
    [
        _zstd_rle_frame(1, 70_000, None),  # no declared size, inflates past 65535
        _zstd_rle_frame(1, 70_000, 70_000),  # declares more than 65535
        _zstd_rle_frame(2, 100, 100),  # declares less than it holds
        _zstd_rle_frame(1, 100, 200),  # declares more than it holds
        _zstd_rle_frame(1, 100, None)[:-1],  # cut short
        b"\x28\xb5\x2f\xfd",  # magic only
        b"not zstd at all",
        b"",
    ],
    ids=["bomb", "too-big", "short-claim", "long-claim", "truncated", "magic", "garbage", "empty"],
)
def test_bad_zstd_blocks_are_decode_errors(frame: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(_ack_with_block(frame))


def test_a_zstd_frame_without_content_size_is_accepted() -> None:
    # A valid frame from another zstd encoder need not declare its size.
    node = NodeId("n", 1, SocketAddress.parse("127.0.0.1:1"))
    op = b"\x00\x01\x00n" + struct.pack("<QB", 1, 4) + bytes([127, 0, 0, 1]) + U16.pack(1)
    op += struct.pack("<QQ", 0, 0) + b"\x02" + struct.pack("<Q", 9)
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(op)
    assert zstandard.get_frame_parameters(frame).content_size == zstandard.CONTENTSIZE_UNKNOWN
    assert decode(_ack_with_block(frame)) == Ack(Delta((NodeDelta(node, 0, 0, (), 9),)))


# --------------------------------------------------------------------------- random bytes


@FAST
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    check_decode(data)


@FAST
@given(st.integers(0, 255), st.binary(max_size=400))
def test_random_body_after_a_valid_header_only_raises_decode_error(
    msg_type: int, body: bytes
) -> None:
    check_decode(HEADER + bytes([msg_type]) + body)


@FAST
@given(
    st.sampled_from([1, 2]),
    st.binary(max_size=300),
    st.lists(st.integers(0, 300), max_size=3),
    st.lists(st.booleans(), min_size=1, max_size=3),
)
def test_random_op_streams_only_raise_decode_error(
    msg_type: int, stream: bytes, cuts: list[int], compress: list[bool]
) -> None:
    # Valid framing around random operations, so the operation parser sees them.
    digest = b"\x00\x00" if msg_type == 1 else b""
    check_decode(HEADER + bytes([msg_type]) + digest + wrap_stream(stream, cuts, compress))


@FAST
@given(st.integers(0, 255), st.binary(max_size=400))
def test_random_body_after_a_v1_header_only_raises_decode_error(msg_type: int, body: bytes) -> None:
    check_decode(b"\x53\xb0\x01" + bytes([msg_type]) + body)


@FAST
@given(
    st.data(),
    st.sampled_from([0, 1]),
    st.lists(st.integers(0, 300), max_size=3),
    st.lists(st.booleans(), min_size=1, max_size=3),
)
def test_random_v1_digest_streams_only_raise_decode_error(
    data: st.DataObject, msg_type: int, cuts: list[int], compress: list[bool]
) -> None:
    # A V1 digest is a block stream of entries: valid framing around random bytes or valid
    # entries cut anywhere, and a valid rest (cluster id, empty delta), so that the entry
    # parser is what sees them.
    stream = data.draw(st.one_of(st.binary(max_size=300), _cut_entries()))
    rest = b"\x07\x00testing" if msg_type == 0 else b"\x00"
    check_decode(b"\x53\xb0\x01" + bytes([msg_type]) + wrap_stream(stream, cuts, compress) + rest)


@st.composite
def _cut_entries(draw: st.DrawFn) -> bytes:
    entries = encode_digest(draw(digests))[2:]  # the V0 layout without its count
    return entries[: draw(st.integers(0, len(entries)))] + draw(st.binary(max_size=8))


# --------------------------------------------------------------------------- valid messages

u64 = st.integers(0, 2**64 - 1)
ip_addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))
socket_addresses = st.builds(SocketAddress, ip_addresses, st.integers(0, 0xFFFF))
node_ids = st.builds(NodeId, st.text(max_size=24), u64, socket_addresses)
digests = st.builds(
    Digest, st.dictionaries(node_ids, st.builds(NodeDigest, u64, u64, u64), max_size=8)
)
texts = st.one_of(
    st.text(max_size=40),
    st.tuples(st.text(min_size=1, max_size=3), st.integers(1, 3_000)).map(lambda t: t[0] * t[1]),
)


@st.composite
def node_deltas(draw: st.DrawFn, node: NodeId) -> NodeDelta:
    versions = sorted(draw(st.sets(st.integers(1, 2**64 - 1), max_size=6)))
    kvs = tuple(
        KeyValueMutation(
            draw(st.text(max_size=16)), draw(texts), v, draw(st.sampled_from(KeyStatus))
        )
        for v in versions
    )
    max_version = kvs[-1].version if kvs else draw(u64)
    return NodeDelta(node, draw(u64), draw(u64), kvs, max_version)


@st.composite
def deltas(draw: st.DrawFn) -> Delta:
    nodes = draw(st.lists(node_ids, max_size=5, unique=True))
    return Delta(tuple(draw(node_deltas(node)) for node in nodes))


messages = st.one_of(
    st.builds(Syn, st.text(max_size=30), digests),
    st.builds(SynAck, digests, deltas()),
    st.builds(Ack, deltas()),
    st.just(BadCluster()),
)


def _rust_order(node: NodeId) -> tuple[bytes, int, int, bytes, int]:
    # chitchat's BTreeMap<ChitchatId, _>: node_id as UTF-8 bytes, generation, then
    # SocketAddr (every V4 before every V6, then address bytes, then port).
    ip = node.gossip_addr.ip
    return (node.node_id.encode(), node.generation, ip.version, ip.packed, node.gossip_addr.port)


@FAST
@given(messages)
def test_valid_messages_round_trip(message: Message) -> None:
    datagram = encode(message)
    decoded = decode(datagram)
    assert decoded == message
    assert encode(decoded) == datagram
    if isinstance(decoded, Syn | SynAck):
        assert list(decoded.digest.nodes) == sorted(message.digest.nodes, key=_rust_order)


@FAST
@given(messages)
def test_valid_messages_round_trip_in_v1(message: Message) -> None:
    message = attrs.evolve(message, protocol_version=1)
    datagram = encode(message)
    assert datagram[2] == 1
    decoded = decode(datagram)
    assert decoded == message
    assert decode(encode(decoded)) == message
    if isinstance(decoded, Syn | SynAck):
        assert list(decoded.digest.nodes) == sorted(message.digest.nodes, key=_rust_order)


def test_every_status_and_both_address_families_round_trip() -> None:
    v4 = NodeId("a", 1, SocketAddress(ipaddress.ip_address("10.1.2.3"), 7))
    v6 = NodeId("a", 1, SocketAddress(ipaddress.ip_address("fe80::1:2"), 7))
    kvs = tuple(KeyValueMutation(f"k{s.value}", "v", s.value + 1, s) for s in KeyStatus)
    message = SynAck(
        Digest({v6: NodeDigest(1, 2, 3), v4: NodeDigest(4, 5, 6)}),
        Delta((NodeDelta(v6, 0, 0, kvs, 3), NodeDelta(v4, 1, 2, (), 0))),
    )
    decoded = decode(encode(message))
    assert decoded == message
    assert isinstance(decoded, SynAck)
    assert list(decoded.digest.nodes) == [v4, v6]
    assert [kv.status for kv in decoded.delta.node_deltas[0].key_values] == list(KeyStatus)
