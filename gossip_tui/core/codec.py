"""Byte-exact codec for chitchat 0.10 datagrams (protocol version 0).

Layout, all integers little-endian::

    datagram  = magic:u16(45139) version:u8(0) type:u8 body
    Syn       = digest cluster_id:str
    SynAck    = digest delta
    Ack       = delta
    BadCluster= (empty)
    digest    = count:u16 (node_id node_digest)*
    node_id   = name:str generation:u64 ip port:u16
    ip        = 4 a.b.c.d | 6 sixteen-bytes
    str       = len:u16 utf8-bytes
    delta     = block* 0
    block     = 1 len:u16 zstd-frame | 2 len:u16 raw-bytes

A delta's blocks, once decompressed and joined, are a stream of operations: Node (tag 0),
KeyValue (tag 1) and SetMaxVersion (tag 2). The stream is cut into blocks of 16 KiB
regardless of operation boundaries. The writer tracks an upper bound of the encoded size
so a delta can be filled right up to the datagram budget.

Every decoding failure raises :class:`DecodeError`; nothing else escapes ``decode``.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable

import attrs
import zstandard

from .messages import (
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
from .models import KeyStatus, NodeId, SocketAddress

MAGIC = 45_139
PROTOCOL_VERSION = 0
MAX_DATAGRAM_SIZE = 65_507
BLOCK_THRESHOLD = 16_384
MAX_STR_LEN = 0xFFFF

MSG_SYN = 0
MSG_SYNACK = 1
MSG_ACK = 2
MSG_BAD_CLUSTER = 3

BLOCK_END = 0
BLOCK_COMPRESSED = 1
BLOCK_RAW = 2

OP_NODE = 0
OP_KEY_VALUE = 1
OP_SET_MAX_VERSION = 2

_HEADER = struct.Struct("<HBB")
_U16 = struct.Struct("<H")
_U64 = struct.Struct("<Q")
_U64X2 = struct.Struct("<QQ")
_U64X3 = struct.Struct("<QQQ")
_BLOCK_HEAD = struct.Struct("<BH")

# libzstd's default level, the one chitchat compresses with.
_ZSTD_LEVEL = 3
# What a single block may decompress to: chitchat decompresses into a u16::MAX buffer.
_MAX_BLOCK_OUTPUT = 0xFFFF

_STATUS_BY_CODE = {s.value: s for s in KeyStatus}


class DecodeError(ValueError):
    """A datagram that is not a valid chitchat message."""


class EncodeError(ValueError):
    """A value that the wire format cannot carry (a string over 65,535 bytes)."""


# --------------------------------------------------------------------------- encoding


def _str_bytes(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > MAX_STR_LEN:
        raise EncodeError(f"string of {len(raw)} bytes exceeds the 65535-byte wire limit")
    return _U16.pack(len(raw)) + raw


def _addr_bytes(addr: SocketAddress) -> bytes:
    ip = addr.ip
    return bytes((ip.version,)) + ip.packed + _U16.pack(addr.port)


def node_id_bytes(node: NodeId) -> bytes:
    return _str_bytes(node.node_id) + _U64.pack(node.generation) + _addr_bytes(node.gossip_addr)


def encode_digest(digest: Digest) -> bytes:
    items = sorted(digest.nodes.items(), key=lambda item: item[0].sort_key())
    if len(items) > 0xFFFF:
        raise EncodeError("a digest holds at most 65535 nodes")
    parts = [_U16.pack(len(items))]
    for node, nd in items:
        parts.append(node_id_bytes(node))
        parts.append(_U64X3.pack(nd.heartbeat, nd.last_gc_version, nd.max_version))
    return b"".join(parts)


def node_id_size(node: NodeId) -> int:
    ip_len = 5 if node.gossip_addr.ip.version == 4 else 17
    return 2 + len(node.node_id.encode()) + 8 + ip_len + 2


def digest_size(digest: Digest) -> int:
    """Encoded size of a digest, without encoding it."""
    return 2 + sum(node_id_size(node) + 24 for node in digest.nodes)


def _node_op(node: NodeId, last_gc_version: int, from_version_excluded: int) -> bytes:
    return b"\x00" + node_id_bytes(node) + _U64X2.pack(last_gc_version, from_version_excluded)


def _kv_op(key: str, value: str, version: int, status: KeyStatus) -> bytes:
    return (
        b"\x01"
        + _str_bytes(key)
        + _str_bytes(value)
        + _U64.pack(version)
        + bytes((int(status),))
    )


def _max_version_op(max_version: int) -> bytes:
    return b"\x02" + _U64.pack(max_version)


class DeltaWriter:
    """Builds a delta operation by operation without exceeding ``mtu`` encoded bytes.

    Each ``try_add_*`` returns False, adding nothing, when the operation could push the
    encoded delta past the budget. The bound is computed as if the pending block stayed
    uncompressed, so it is never exceeded, and matches chitchat's decisions exactly.
    """

    def __init__(self, mtu: int) -> None:
        if mtu < 100:
            raise ValueError("a delta budget below 100 bytes cannot hold anything useful")
        self._mtu = mtu
        self._threshold = min(BLOCK_THRESHOLD, mtu)
        self._output = bytearray()
        self._block = bytearray()
        self._compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
        self._node_deltas: list[NodeDelta] = []
        self._current: NodeDelta | None = None
        self._current_kvs: list[KeyValueMutation] = []

    def _fits(self, op_len: int) -> bool:
        pending = len(self._block)
        if pending + op_len > self._threshold:
            bound = 3 + len(self._output) + pending + 3 + op_len + 1
        else:
            bound = 3 + len(self._output) + pending + op_len + 1
        return bound <= self._mtu

    def _append(self, op: bytes) -> None:
        self._block += op
        while len(self._block) > self._threshold:
            self._flush_block()

    def _flush_block(self) -> None:
        if not self._block:
            return
        size = min(len(self._block), self._threshold)
        chunk = bytes(self._block[:size])
        compressed = self._compressor.compress(chunk)
        # chitchat compresses into a buffer the size of the input: whatever does not
        # shrink (or stay equal) is sent raw.
        if len(compressed) <= size:
            self._output += _BLOCK_HEAD.pack(BLOCK_COMPRESSED, len(compressed))
            self._output += compressed
        else:
            self._output += _BLOCK_HEAD.pack(BLOCK_RAW, size)
            self._output += chunk
        del self._block[:size]

    def _close_node(self) -> None:
        if self._current is not None:
            max_version = self._current.max_version
            if self._current_kvs:
                max_version = self._current_kvs[-1].version
            self._node_deltas.append(
                NodeDelta(
                    node=self._current.node,
                    from_version_excluded=self._current.from_version_excluded,
                    last_gc_version=self._current.last_gc_version,
                    key_values=tuple(self._current_kvs),
                    max_version=max_version,
                )
            )
            self._current = None
            self._current_kvs = []

    def try_add_node(self, node: NodeId, last_gc_version: int, from_version_excluded: int) -> bool:
        op = _node_op(node, last_gc_version, from_version_excluded)
        if not self._fits(len(op)):
            return False
        self._append(op)
        self._close_node()
        self._current = NodeDelta(node, from_version_excluded, last_gc_version)
        return True

    def try_add_kv(self, key: str, value: str, version: int, status: KeyStatus) -> bool:
        assert self._current is not None, "a key-value needs a node before it"
        op = _kv_op(key, value, version, status)
        if not self._fits(len(op)):
            return False
        self._append(op)
        self._current_kvs.append(KeyValueMutation(key, value, version, status))
        return True

    def try_set_max_version(self, max_version: int) -> bool:
        assert self._current is not None, "a max version needs a node before it"
        op = _max_version_op(max_version)
        if not self._fits(len(op)):
            return False
        self._append(op)
        self._current = attrs.evolve(self._current, max_version=max_version)
        return True

    def finish(self) -> Delta:
        self._close_node()
        self._flush_block()
        self._output.append(BLOCK_END)
        return Delta(tuple(self._node_deltas), encoded=bytes(self._output))


def _delta_ops(delta: Delta) -> Iterable[bytes]:
    for nd in delta.node_deltas:
        yield _node_op(nd.node, nd.last_gc_version, nd.from_version_excluded)
        for kv in nd.key_values:
            yield _kv_op(kv.key, kv.value, kv.version, kv.status)
        if not nd.key_values and nd.max_version > 0:
            yield _max_version_op(nd.max_version)


def encode_delta(delta: Delta) -> bytes:
    if delta.encoded is not None:
        return delta.encoded
    writer_output = bytearray()
    block = bytearray()
    compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)

    def flush() -> None:
        size = min(len(block), BLOCK_THRESHOLD)
        chunk = bytes(block[:size])
        compressed = compressor.compress(chunk)
        if len(compressed) <= size:
            writer_output.extend(_BLOCK_HEAD.pack(BLOCK_COMPRESSED, len(compressed)))
            writer_output.extend(compressed)
        else:
            writer_output.extend(_BLOCK_HEAD.pack(BLOCK_RAW, size))
            writer_output.extend(chunk)
        del block[:size]

    for op in _delta_ops(delta):
        if len(op) > 0xFFFF:
            raise EncodeError("a delta operation exceeds 65535 bytes")
        block.extend(op)
        while len(block) > BLOCK_THRESHOLD:
            flush()
    if block:
        flush()
    writer_output.append(BLOCK_END)
    return bytes(writer_output)


def encode(message: Message) -> bytes:
    """Turn a message into the exact datagram chitchat would send."""
    if isinstance(message, Syn):
        return (
            _HEADER.pack(MAGIC, PROTOCOL_VERSION, MSG_SYN)
            + encode_digest(message.digest)
            + _str_bytes(message.cluster_id)
        )
    if isinstance(message, SynAck):
        return (
            _HEADER.pack(MAGIC, PROTOCOL_VERSION, MSG_SYNACK)
            + encode_digest(message.digest)
            + encode_delta(message.delta)
        )
    if isinstance(message, Ack):
        return _HEADER.pack(MAGIC, PROTOCOL_VERSION, MSG_ACK) + encode_delta(message.delta)
    if isinstance(message, BadCluster):
        return _HEADER.pack(MAGIC, PROTOCOL_VERSION, MSG_BAD_CLUSTER)
    raise TypeError(f"not a chitchat message: {message!r}")


# --------------------------------------------------------------------------- decoding


class _Reader:
    """A cursor over bytes; every short read raises DecodeError."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise DecodeError(f"truncated: wanted {n} bytes at offset {self.pos}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u8(self) -> int:
        if self.pos >= len(self.data):
            raise DecodeError(f"truncated: wanted 1 byte at offset {self.pos}")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u16(self) -> int:
        end = self.pos + 2
        if end > len(self.data):
            raise DecodeError(f"truncated: wanted 2 bytes at offset {self.pos}")
        (value,) = _U16.unpack_from(self.data, self.pos)
        self.pos = end
        return int(value)

    def u64(self) -> int:
        end = self.pos + 8
        if end > len(self.data):
            raise DecodeError(f"truncated: wanted 8 bytes at offset {self.pos}")
        (value,) = _U64.unpack_from(self.data, self.pos)
        self.pos = end
        return int(value)

    def string(self) -> str:
        raw = self.take(self.u16())
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise DecodeError(f"invalid UTF-8 in string: {exc.reason}") from None

    def address(self) -> SocketAddress:
        version = self.u8()
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address
        if version == 4:
            ip = ipaddress.IPv4Address(self.take(4))
        elif version == 6:
            ip = ipaddress.IPv6Address(self.take(16))
        else:
            raise DecodeError(f"invalid IP version byte {version}")
        return SocketAddress(ip, self.u16())

    def node_id(self) -> NodeId:
        name = self.string()
        generation = self.u64()
        return NodeId(name, generation, self.address())


def _decode_digest(reader: _Reader) -> Digest:
    count = reader.u16()
    nodes: dict[NodeId, NodeDigest] = {}
    for _ in range(count):
        node = reader.node_id()
        if reader.pos + 24 > len(reader.data):
            raise DecodeError("truncated node digest")
        heartbeat, last_gc, max_version = _U64X3.unpack_from(reader.data, reader.pos)
        reader.pos += 24
        # A repeated node overwrites the earlier entry, as inserting into chitchat's map does.
        nodes[node] = NodeDigest(heartbeat, last_gc, max_version)
    return Digest(nodes)


def _decompress_block(frame: bytes) -> bytes:
    try:
        params = zstandard.get_frame_parameters(frame)
        if params.content_size > _MAX_BLOCK_OUTPUT and params.content_size != (
            zstandard.CONTENTSIZE_UNKNOWN
        ):
            raise DecodeError("compressed block claims more than 65535 bytes")
        dobj = zstandard.ZstdDecompressor().decompressobj()
        out = dobj.decompress(frame)
    except zstandard.ZstdError as exc:
        raise DecodeError(f"bad zstd block: {exc}") from None
    if len(out) > _MAX_BLOCK_OUTPUT:
        raise DecodeError("compressed block decompresses past 65535 bytes")
    return out


def _read_stream(reader: _Reader) -> bytes:
    parts: list[bytes] = []
    while True:
        block_type = reader.u8()
        if block_type == BLOCK_END:
            return b"".join(parts)
        if block_type == BLOCK_COMPRESSED:
            parts.append(_decompress_block(reader.take(reader.u16())))
        elif block_type == BLOCK_RAW:
            parts.append(reader.take(reader.u16()))
        else:
            raise DecodeError(f"invalid block type {block_type}")


def _decode_delta(reader: _Reader) -> Delta:
    stream = _Reader(_read_stream(reader))
    data = stream.data
    end = len(data)
    node_deltas: list[NodeDelta] = []
    seen: set[NodeId] = set()
    current: NodeId | None = None
    from_version = last_gc = max_version = 0
    kvs: list[KeyValueMutation] = []

    def close() -> None:
        if current is not None:
            node_deltas.append(NodeDelta(current, from_version, last_gc, tuple(kvs), max_version))

    while stream.pos < end:
        tag = data[stream.pos]
        stream.pos += 1
        if tag == OP_KEY_VALUE:
            if current is None:
                raise DecodeError("key-value operation before any node operation")
            key = stream.string()
            value = stream.string()
            version = stream.u64()
            code = stream.u8()
            status = _STATUS_BY_CODE.get(code)
            if status is None:
                raise DecodeError(f"invalid deletion status {code}")
            if version <= max_version:
                raise DecodeError("key-value versions must strictly increase within a node")
            max_version = version
            kvs.append(KeyValueMutation(key, value, version, status))
        elif tag == OP_NODE:
            node = stream.node_id()
            if stream.pos + 16 > end:
                raise DecodeError("truncated node operation")
            new_last_gc, new_from = _U64X2.unpack_from(data, stream.pos)
            stream.pos += 16
            if node in seen:
                raise DecodeError(f"node {node} appears twice in one delta")
            close()
            seen.add(node)
            current, last_gc, from_version, max_version, kvs = node, new_last_gc, new_from, 0, []
        elif tag == OP_SET_MAX_VERSION:
            if current is None:
                raise DecodeError("max-version operation before any node operation")
            max_version = stream.u64()
        else:
            raise DecodeError(f"invalid delta operation tag {tag}")
    close()
    return Delta(tuple(node_deltas))


def decode(datagram: bytes) -> Message:
    """Parse one datagram; raise :class:`DecodeError` if it is not a chitchat message.

    Trailing bytes after a complete message are ignored, as chitchat ignores them.
    """
    if len(datagram) < 4:
        raise DecodeError("datagram too short for a chitchat header")
    magic, version, msg_type = _HEADER.unpack_from(datagram, 0)
    if magic != MAGIC:
        raise DecodeError(f"bad magic number {magic}")
    if version != PROTOCOL_VERSION:
        raise DecodeError(f"unsupported protocol version {version}")
    reader = _Reader(bytes(datagram), 4)
    if msg_type == MSG_SYN:
        digest = _decode_digest(reader)
        return Syn(reader.string(), digest)
    if msg_type == MSG_SYNACK:
        digest = _decode_digest(reader)
        return SynAck(digest, _decode_delta(reader))
    if msg_type == MSG_ACK:
        return Ack(_decode_delta(reader))
    if msg_type == MSG_BAD_CLUSTER:
        return BadCluster()
    raise DecodeError(f"invalid message type {msg_type}")
