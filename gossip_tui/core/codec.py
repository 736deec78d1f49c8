"""Byte-exact codec for chitchat datagrams, protocol versions 0 and 1.

Layout, all integers little-endian::

    datagram  = magic:u16(45139) version:u8 type:u8 body
    Syn       = digest cluster_id:str
    SynAck    = digest delta
    Ack       = delta
    BadCluster= (empty)
    digest    = count:u16 (node_id node_digest)*      in version 0
              | block* 0                              in version 1
    node_id   = name:str generation:u64 ip port:u16
    ip        = 4 a.b.c.d | 6 sixteen-bytes
    str       = len:u16 utf8-bytes
    delta     = block* 0
    block     = 1 len:u16 zstd-frame | 2 len:u16 raw-bytes

A delta's blocks, once decompressed and joined, are a stream of operations: Node (tag 0),
KeyValue (tag 1) and SetMaxVersion (tag 2). The stream is cut into blocks of 16 KiB
regardless of operation boundaries. The writer tracks an upper bound of the encoded size
so a delta can be filled right up to the datagram budget.

Version 1 (chitchat after 0.10.1) frames the digest the same way: its blocks joined are the
entries ``node_id node_digest`` back to back, with no count, cut every 16 KiB wherever that
falls (inside an entry too). Only the digest differs; a message's version is the one of its
header, and :func:`encode` writes a message in its own ``protocol_version``.

Every decoding failure raises :class:`DecodeError`; nothing else escapes ``decode``.

The decoder is the hot path of a node (every datagram of every peer goes through it), so it
parses with index arithmetic over one ``bytes`` object rather than a cursor object, and it
remembers the node ids it has parsed (keyed by their wire bytes): the same few hundred
nodes come back in every digest and delta.

One concern, though over 400 lines: the wire format, both versions, with its bounds
(sizes, the decompression cap) and V1's compaction.
"""

from __future__ import annotations

import ipaddress
import struct
import types
from collections.abc import Callable, Iterable, Sequence
from itertools import compress, islice, repeat
from operator import delitem, getitem, is_, is_not, itemgetter, not_, setitem
from typing import TYPE_CHECKING, Any, cast

import attrs

from .errors import GossipTuiError
from .messages import (
    Ack,
    BadCluster,
    Delta,
    Digest,
    DigestColumns,
    EntryBytes,
    KeyValueMutation,
    Message,
    NodeDelta,
    NodeDigest,
    Syn,
    SynAck,
)
from .models import KeyStatus, NodeId, SocketAddress


class _ImportedOnFirstUse:
    """zstandard, imported when a block is first compressed or decompressed: an idle V0
    node (small deltas go raw) never needs it, and its start-up is spared the import."""

    def __getattr__(self, name: str) -> Any:
        import zstandard as module

        globals()["zstandard"] = module
        return getattr(module, name)


if TYPE_CHECKING:
    import zstandard
else:
    zstandard = _ImportedOnFirstUse()

MAGIC = 45_139
PROTOCOL_V0 = 0
PROTOCOL_V1 = 1
PROTOCOL_VERSIONS = (PROTOCOL_V0, PROTOCOL_V1)
# What 0.10.1 speaks, and what a node initiates with unless told otherwise.
PROTOCOL_VERSION = PROTOCOL_V0
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
# Versions, heartbeats and generations are u64 on the wire.
U64_MAX = 2**64 - 1
_BLOCK_HEAD = struct.Struct("<BH")
_VERSION_STATUS = struct.Struct("<QB")
_TAG_U16 = struct.Struct("<BH")

# libzstd's default level, the one chitchat compresses with.
_ZSTD_LEVEL = 3
# A V1 digest is compacted (see _compact_digest_stream) when chitchat's own encoding of it
# would not fit a default datagram beside a SynAck's smallest delta (4 bytes of header,
# 4,096 of delta): past that it would be lost or cut to a partial window. Decoders take
# any valid zstd frame of up to 65,535 bytes and any entry order (chitchat collects the
# entries into its map), so the content peers see is the same.
COMPACT_DIGEST_ABOVE = MAX_DATAGRAM_SIZE - 4 - 4_096
# The strongest level that helps: 20-22 ("ultra") only raise the window, which a 16 KiB
# block does not use, and cost more.
COMPACT_DIGEST_LEVEL = 19
# Compacting gains at most ~26% on the ids measured (scripts/bench/compression.py): a
# digest more than that over the threshold is not worth the CPU, it cannot fit anyway.
_COMPACT_GAIN = 0.7
# What a single block may decompress to: chitchat decompresses into a u16::MAX buffer.
_MAX_BLOCK_OUTPUT = 0xFFFF
# What the blocks of one delta may decompress to, together. The number of blocks has no
# bound of its own: 65 KB of tiny zstd frames of zeros inflate to ~200 MB. A sender
# budgets the delta with the pending block uncompressed and the flushed ones compressed,
# so a legitimate datagram holds more than 65 KB of stream only as far as its data
# compresses: 340 KB for a full datagram of empty values (tombstones), 2.6 MB for
# identical 200-byte values. 1 MiB is 16 datagrams' worth, three times the tombstone
# case; DeltaWriter never writes past it, so gossip-tui peers never trip it.
MAX_DELTA_STREAM = 1024 * 1024
# Below this, a delta budget cannot hold a node and a key-value worth sending.
MIN_DELTA_BUDGET = 100

_STATUS_BY_CODE = {s.value: s for s in KeyStatus}
# Indexed by wire code (the codes are 0, 1, 2: contiguous from zero).
_STATUSES = tuple(_STATUS_BY_CODE[code] for code in range(len(_STATUS_BY_CODE)))

# Parsed node ids by their wire bytes, and wire bytes (with sort keys) of node ids by
# identity. Both are bounded: a flood of distinct ids only empties them now and then.
_NODE_CACHE_MAX = 4_096
_NODES_BY_WIRE: dict[bytes, NodeId] = {}
_WIRE_BY_NODE: dict[int, tuple[NodeId, bytes, tuple[str, int, tuple[int, bytes, int]]]] = {}
# Whole digest entries (node id and its three versions): decoded ones by their wire bytes,
# and encoded ones by the identity of their NodeDigest (with its node, the sort key and the
# bytes). In an idle cluster most entries of a digest are the same as in the last one
# (only heartbeats move, about once a second per node, while digests come several times
# a second): those cost one lookup instead of a parse or a pack. Bounded like the above;
# frozen values, so sharing them between digests is safe.
_ENTRY_CACHE_MAX = 4_096
# The decoded entries' room within that bound: four a node known and some slack. A real
# idle node's digests (scripts/bench/idle_replay.py, 100 nodes) show as many entries a
# beat or a few behind ours (peers' views lag) as risen ones: with room for each node's
# last two, those had been dropped when they came again (48 % of entries parsed anew
# instead of 37 %, and room made at every other digest). A fixed room of 4,096 filled
# with old heartbeats in a cluster of any size (~290 bytes an entry: 1.2 MB). Set by
# _remember_node as the known ids change; when full, the oldest quarter goes at once: room
# is made once per many entries, not each one.
_ENTRY_ROOM_PER_NODE = 4
_ENTRY_ROOM_SLACK = 64
_entry_room_floor = _ENTRY_ROOM_SLACK
_entry_room = _ENTRY_ROOM_SLACK
# The last key-value operations decoded after each node (the wire of its id), with the
# key-values they read as (see _decode_ops). Bounded alike, and in what one entry holds:
# a few small key-values, what most nodes of a delta carry (kept whatever the peer sends,
# it must not hold whole states).
_KV_RUN_CACHE_MAX = 4_096
_KV_RUN_MAX_BYTES = 256
_KV_RUNS_BY_NODE: dict[bytes, tuple[bytes, tuple[KeyValueMutation, ...]]] = {}


def hold_nodes(count: int) -> None:
    """Let the caches above hold ``count`` nodes, for a process that runs that many itself
    (the simulation). A cluster larger than a cache empties it at every digest, so each
    id and entry is parsed and packed again (a 1,000-node simulation with room for 820
    took twice the CPU a round). An entry cache holds two entries a node: a heartbeat
    moves once a round. Never shrinks: a lone node keeps the defaults (and its decoded
    entries' room follows the nodes it knows, see _entry_room)."""
    global _NODE_CACHE_MAX, _ENTRY_CACHE_MAX, _KV_RUN_CACHE_MAX, _entry_room_floor
    _NODE_CACHE_MAX = max(_NODE_CACHE_MAX, count + 1_024)
    _ENTRY_CACHE_MAX = max(_ENTRY_CACHE_MAX, 2 * count + 1_024)
    _KV_RUN_CACHE_MAX = max(_KV_RUN_CACHE_MAX, count + 1_024)
    # A process of many nodes receives many views of each node: room as before.
    _entry_room_floor = max(_entry_room_floor, 2 * count + 1_024)
    _set_entry_room()


def _set_entry_room() -> None:
    global _entry_room
    known = _ENTRY_ROOM_PER_NODE * len(_NODES_BY_WIRE) + _ENTRY_ROOM_SLACK
    _entry_room = min(_ENTRY_CACHE_MAX, max(_entry_room_floor, known))


def _make_entry_room(incoming: int) -> None:
    """Drop the oldest decoded entries so that ``incoming`` more fit in three quarters of
    the room (dicts keep insertion order: the oldest are the stalest heartbeats)."""
    seen = _ENTRIES_BY_WIRE
    excess = len(seen) + incoming - (_entry_room - _entry_room // 4)
    if excess >= len(seen):
        seen.clear()
    elif excess > 0:
        # ``any`` runs the deletions in C (delitem returns None; operator's, not the
        # dict's __delitem__ slot wrapper, which builds an argument tuple a call).
        any(map(delitem, repeat(seen), list(islice(seen, excess))))


_ENTRIES_BY_WIRE: dict[bytes, tuple[NodeId, NodeDigest]] = {}
# Where the entries of the last digest decoded lay, by where it started and its count (its
# size in version 1, which has no count): the next digest of the same nodes lies the same
# way, and is cut into its entries in C (see _read_entries_laid_out). A settled cluster
# has a handful of shapes (the node sets in flight); bounded, as a layout of N nodes holds
# N slices.
_LAYOUT_CACHE_MAX = 16


class _Layout:
    """Where the entries of a digest lay: each entry's slice, and, made when first needed
    (see _read_known_ids), the slice of each entry's node id, one struct that reads the
    numbers of every entry at once, and the node ids the layout held then."""

    __slots__ = (
        "column_epoch",
        "column_ids",
        "column_index",
        "column_nodes",
        "cut",
        "end",
        "entries",
        "epoch",
        "id_bytes",
        "ids",
        "nodes",
        "numbers",
        "whole",
    )

    def __init__(self, entries: list[slice]) -> None:
        self.entries = entries
        self.end = entries[-1].stop
        # Every entry's bytes cut in one C call that reads one struct's codes, where
        # slicing by ``entries`` reads a slice object and its two ints per entry: in a
        # node woken after the rest of the machine ran, those are cache misses, about
        # three an entry. Made here, once per layout, as the parse that found the layout.
        ends = [0, *(piece.stop for piece in entries)]
        self.cut = struct.Struct(
            "<"
            + "".join(
                [
                    f"{p.start - end}x{p.stop - p.start}s"
                    for p, end in zip(entries, ends, strict=False)
                ]
            )
        )
        self.ids: list[slice] = []
        self.numbers: struct.Struct | None = None
        self.whole: struct.Struct | None = None
        # Each entry's node id and its bytes, as a digest read in C held them, while the
        # node ids known have not changed since (_node_ids_changed is still ``epoch``).
        self.nodes: list[NodeId] = []
        self.id_bytes: list[bytes] = []
        self.epoch = -1
        # The same for a digest read as columns (see _read_columns): the ids' bytes as the
        # tuple a read gives, the node ids, and each one's position, made once a layout.
        self.column_ids: tuple[bytes, ...] = ()
        self.column_nodes: list[NodeId] = []
        self.column_index: dict[NodeId, int] = {}
        self.column_epoch = -1

    def split(self) -> tuple[list[slice], struct.Struct]:
        """Each entry's node id slice, and the struct of all the numbers (from offset 0:
        whatever lies around them is skipped)."""
        if self.numbers is None:
            self.ids = [slice(piece.start, piece.stop - 24) for piece in self.entries]
            layout = ["<"]
            end = 0
            for piece in self.entries:
                layout.append(f"{piece.stop - 24 - end}x3Q")
                end = piece.stop
            self.numbers = struct.Struct("".join(layout))
        return self.ids, self.numbers

    def ids_and_numbers(self) -> struct.Struct:
        """One struct that reads every entry's node id bytes and numbers at once."""
        if self.whole is None:
            ends = [0] + [piece.stop for piece in self.entries]
            self.whole = struct.Struct(
                "<"
                + "".join(
                    [
                        f"{p.start - end}x{p.stop - 24 - p.start}s3Q"
                        for p, end in zip(self.entries, ends, strict=False)
                    ]
                )
            )
        return self.whole


_LAYOUTS: dict[tuple[int, int], _Layout] = {}
# Bumped whenever _NODES_BY_WIRE changes: a layout's node ids are those it hands out.
_node_ids_changed = 0
# The last Syns decoded, by their datagram's bytes, up to a total of _syn_cache_bytes. A
# node sends one round's Syn to each of its targets as the same bytes, so a process that
# runs many nodes (the demo: 200) decodes each Syn three to five times, a few hundred
# other Syns apart: a repeat is one hash of the bytes instead of a digest's parse. Equal
# bytes decode to equal messages and messages are frozen, so handing the same one to
# every receiver changes nothing. A node alone in its process never gets a repeat but a
# duplicated datagram: it holds none (the default, 0: no lookup, nothing kept); a process
# of many nodes turns it on (keep_repeated_syns).
_SYN_CACHE_DEFAULT_BYTES = 0
_syn_cache_bytes = _SYN_CACHE_DEFAULT_BYTES
_syns_held_bytes = 0
_SYNS_BY_WIRE: dict[bytes, Syn] = {}


def keep_repeated_syns(max_bytes: int = _SYN_CACHE_DEFAULT_BYTES) -> None:
    """Hold decoded Syns up to ``max_bytes`` of their datagrams (see _SYNS_BY_WIRE; 0, the
    default, holds none): for a process that runs many nodes, which receive each other's
    Syns several times over."""
    global _syn_cache_bytes
    _syn_cache_bytes = max_bytes
    _trim_syns()


def _hold_syn(data: bytes, syn: Syn) -> None:
    """Keep ``syn``, decoded from ``data``, within the bound."""
    global _syns_held_bytes
    _SYNS_BY_WIRE[data] = syn
    _syns_held_bytes += len(data)
    _trim_syns()


def _trim_syns() -> None:
    """Drop the oldest Syns held until the rest fit the bound."""
    global _syns_held_bytes
    held = _SYNS_BY_WIRE
    while _syns_held_bytes > _syn_cache_bytes and held:
        oldest = next(iter(held))
        del held[oldest]
        _syns_held_bytes -= len(oldest)


# The encoded ones are dropped by the state that held their NodeDigest once it replaces it
# (forget_digest_entry), so the cache holds about one entry per node per cluster state in
# the process (40,000 for 200 nodes in one process, which a bound of 4,096 emptied on
# nearly every digest) rather than old versions. The bound is a backstop for entries no
# state forgets (digests built by hand, states dropped whole).
_ENCODED_ENTRY_CACHE_MAX = 1 << 18
_WIRE_BY_ENTRY: dict[
    int, tuple[NodeDigest, NodeId, tuple[tuple[str, int, tuple[int, bytes, int]], bytes]]
] = {}


class DecodeError(GossipTuiError, ValueError):
    """A datagram that is not a valid chitchat message."""

    # The drop reason a node counts it under.
    reason = "malformed"


class DecompressionBomb(DecodeError):
    """A delta whose blocks decompress past :data:`MAX_DELTA_STREAM`."""

    reason = "decompression_bomb"


class EncodeError(GossipTuiError, ValueError):
    """A value that the wire format cannot carry (a string over 65,535 bytes)."""


# --------------------------------------------------------------------------- zstd contexts

# A zstd context costs about 10 µs to create and must not be used by two threads at once:
# these free lists hand each caller its own, without a lock (list.pop and list.append are
# atomic), and only ever hold as many contexts as there were concurrent callers.
_COMPRESSORS: list[zstandard.ZstdCompressor] = []
_STRONG_COMPRESSORS: list[zstandard.ZstdCompressor] = []
_DECOMPRESSORS: list[zstandard.ZstdDecompressor] = []


def _pooled_compress(pool: list[zstandard.ZstdCompressor], level: int, chunk: bytes) -> bytes:
    try:
        cctx = pool.pop()
    except IndexError:
        cctx = zstandard.ZstdCompressor(level=level)
    try:
        compressed: bytes = cctx.compress(chunk)
    finally:
        pool.append(cctx)
    return compressed


def _compress(chunk: bytes) -> bytes:
    return _pooled_compress(_COMPRESSORS, _ZSTD_LEVEL, chunk)


def _compress_strong(chunk: bytes) -> bytes:
    return _pooled_compress(_STRONG_COMPRESSORS, COMPACT_DIGEST_LEVEL, chunk)


def _compressed_block(chunk: bytes, compress: Callable[[bytes], bytes] = _compress) -> bytes:
    """One framed block: zstd if that does not grow it, as chitchat decides, else raw."""
    compressed = compress(chunk)
    # chitchat compresses into a buffer the size of the input: whatever does not
    # shrink (or stay equal) is sent raw.
    if len(compressed) <= len(chunk):
        return _BLOCK_HEAD.pack(BLOCK_COMPRESSED, len(compressed)) + compressed
    return _BLOCK_HEAD.pack(BLOCK_RAW, len(chunk)) + chunk


# --------------------------------------------------------------------------- fast instances

_Setter = Callable[[Any, Any], None]


def _slot_setters(cls: type, names: tuple[str, ...]) -> tuple[_Setter, ...] | None:
    """The slot setters of a frozen attrs class, when filling a bare instance through them is
    the same as calling the class: exactly ``names`` as fields, in that order, and no
    validator, converter, hook or cached hash. ``None`` when that does not hold (anymore).

    The generated ``__init__`` of a frozen class goes through ``object.__setattr__`` once
    per field, which doubles the cost of the thousands of instances a delta can hold.
    """
    fields = attrs.fields(cls)
    if tuple(f.name for f in fields) != names:
        return None
    if any(f.validator is not None or f.converter is not None for f in fields):
        return None
    if any(hasattr(cls, hook) for hook in ("__attrs_pre_init__", "__attrs_post_init__")):
        return None
    if set(getattr(cls, "__slots__", ())) - {*names, "__weakref__"}:
        return None  # e.g. the slot of a cached hash, which __init__ would reset
    setters: list[_Setter] = []
    for name in names:
        descriptor = cls.__dict__.get(name)
        if not isinstance(descriptor, types.MemberDescriptorType):
            return None
        setters.append(descriptor.__set__)
    return tuple(setters)


def _never(_instance: Any, _value: Any) -> None:
    """Stands in for slot setters that were not found; never called."""
    raise AssertionError("slot setters are only used when _slot_setters found them")


_KV_SETTERS = _slot_setters(KeyValueMutation, ("key", "value", "version", "status"))
_ND_SETTERS = _slot_setters(
    NodeDelta, ("node", "from_version_excluded", "last_gc_version", "key_values", "max_version")
)
_DIGEST_SETTERS = _slot_setters(NodeDigest, ("heartbeat", "last_gc_version", "max_version"))
# The same, for the state's hot path, which makes the entries it takes from a digest read as
# columns itself (with no Python call each).
DIGEST_SLOT_SETTERS = _DIGEST_SETTERS


def _new_node_digest(heartbeat: int, last_gc_version: int, max_version: int) -> NodeDigest:
    """A NodeDigest filled in through its slots (see _slot_setters)."""
    if _DIGEST_SETTERS is None:
        return NodeDigest(heartbeat, last_gc_version, max_version)
    nd = object.__new__(NodeDigest)
    set_heartbeat, set_last_gc, set_max_version = _DIGEST_SETTERS
    set_heartbeat(nd, heartbeat)
    set_last_gc(nd, last_gc_version)
    set_max_version(nd, max_version)
    return nd


def _new_kv(key: str, value: str, version: int, status: KeyStatus) -> KeyValueMutation:
    if _KV_SETTERS is None:
        return KeyValueMutation(key, value, version, status)
    kv: KeyValueMutation = object.__new__(KeyValueMutation)
    set_key, set_value, set_version, set_status = _KV_SETTERS
    set_key(kv, key)
    set_value(kv, value)
    set_version(kv, version)
    set_status(kv, status)
    return kv


def _node_delta(
    node: NodeId,
    from_version_excluded: int,
    last_gc_version: int,
    key_values: tuple[KeyValueMutation, ...],
    max_version: int,
) -> NodeDelta:
    if _ND_SETTERS is None:
        return NodeDelta(node, from_version_excluded, last_gc_version, key_values, max_version)
    nd: NodeDelta = object.__new__(NodeDelta)
    set_node, set_from, set_gc, set_kvs, set_max = _ND_SETTERS
    set_node(nd, node)
    set_from(nd, from_version_excluded)
    set_gc(nd, last_gc_version)
    set_kvs(nd, key_values)
    set_max(nd, max_version)
    return nd


# --------------------------------------------------------------------------- encoding


def _str_bytes(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > MAX_STR_LEN:
        raise EncodeError(f"string of {len(raw)} bytes exceeds the 65535-byte wire limit")
    return _U16.pack(len(raw)) + raw


def _addr_bytes(addr: SocketAddress) -> bytes:
    ip = addr.ip
    return bytes((ip.version,)) + ip.packed + _U16.pack(addr.port)


def _node_entry(node: NodeId) -> tuple[NodeId, bytes, tuple[str, int, tuple[int, bytes, int]]]:
    entry = _WIRE_BY_NODE.get(id(node))
    # The entry holds the node itself, so its id cannot be reused while it is cached.
    if entry is None or entry[0] is not node:
        raw = _str_bytes(node.node_id) + _U64.pack(node.generation) + _addr_bytes(node.gossip_addr)
        entry = (node, raw, node.sort_key())
        if len(_WIRE_BY_NODE) >= _NODE_CACHE_MAX:
            _WIRE_BY_NODE.clear()
        _WIRE_BY_NODE[id(node)] = entry
        # The id as this process sends it is the one its digests come back with (ours
        # above all: every peer's digest lists it): decoded as this very object, the
        # state's lookups and digest walk find it by identity, not by three Python __eq__
        # calls (NodeId's, SocketAddress's, the ip's). Once per object, as the entry.
        _remember_node(raw, node)
    return entry


def node_id_bytes(node: NodeId) -> bytes:
    return _node_entry(node)[1]


def _digest_entries(digest: Digest) -> list[bytes]:
    """The wire entries of a digest in chitchat's order (its BTreeMap of node ids)."""
    cache = _WIRE_BY_ENTRY
    keyed = []
    for node, nd in digest.nodes.items():
        entry = cache.get(id(nd))
        # The entry holds the NodeDigest itself, so its id cannot be reused while cached;
        # one NodeDigest may stand for two nodes in a hand-built digest: check the node.
        if entry is None or entry[0] is not nd or entry[1] is not node:
            _node, raw, sort_key = _node_entry(node)
            wire = raw + _U64X3.pack(nd.heartbeat, nd.last_gc_version, nd.max_version)
            entry = (nd, node, (sort_key, wire))
            if len(cache) >= _ENCODED_ENTRY_CACHE_MAX:
                cache.clear()
            cache[id(nd)] = entry
        keyed.append(entry[2])
    # Sort keys are distinct within a digest (they cover a node id's whole identity), so
    # the tuples sort by key alone, with no key function called per entry.
    keyed.sort()
    return [wire for _key, wire in keyed]


# forget_digest_entry by the entry's id, a C call: (id(nd), None).
forget_digest_entry_at = _WIRE_BY_ENTRY.pop


def forget_digest_entry(nd: NodeDigest) -> None:
    """Drop the cached encoding of ``nd``, which its holder no longer hands out. (While
    cached, ``nd`` is kept alive by the cache, so no other object can have its id.)"""
    _WIRE_BY_ENTRY.pop(id(nd), None)


def renew_digest_entry(
    node: NodeId,
    old: NodeDigest,
    heartbeat: int,
    last_gc_version: int,
    max_version: int,
    old_wire: bytes | None = None,
) -> tuple[NodeDigest, bytes | None]:
    """A holder's new entry for ``node`` in place of ``old`` (forgotten), with its wire
    bytes: what a cluster state keeps per node so that its digests are joined, not
    encoded. The bytes are None when the entry cannot be encoded (a name past the wire's
    length field, a number past u64): encoding such a digest raises, as it always did.
    ``old_wire``, the old entry's bytes when the holder has them, gives the node id's
    (the part that never changes) without looking the node up."""
    _WIRE_BY_ENTRY.pop(id(old), None)
    if _DIGEST_SETTERS is None:
        nd = NodeDigest(heartbeat, last_gc_version, max_version)
    else:
        nd = object.__new__(NodeDigest)
        set_heartbeat, set_last_gc, set_max_version = _DIGEST_SETTERS
        set_heartbeat(nd, heartbeat)
        set_last_gc(nd, last_gc_version)
        set_max_version(nd, max_version)
    # The node's wire bytes looked up inline (see _node_entry): this runs for every node
    # whose heartbeat moved, on every digest.
    entry = _WIRE_BY_NODE.get(id(node))
    try:
        raw = entry[1] if entry is not None and entry[0] is node else _node_entry(node)[1]
        wire = raw + _U64X3.pack(heartbeat, last_gc_version, max_version)
    except (EncodeError, struct.error):
        return nd, None
    return nd, wire


def encode_digest(digest: Digest, protocol_version: int = PROTOCOL_V0) -> bytes:
    """The digest as it goes on the wire in ``protocol_version``; computed once per
    version and digest (a responder sizes its digest, then sends it)."""
    cached = digest.wire_cache.get(protocol_version)
    if cached is not None:
        return cached
    _check_version(protocol_version)
    wire = _joined_digest(digest, protocol_version)
    digest.wire_cache[protocol_version] = wire
    return wire


def _joined_digest(digest: Digest, protocol_version: int) -> bytes:
    """The digest's entries, encoded (or as its maker kept them) and framed."""
    entries = digest.wire_entries
    if entries is None:
        entries = _digest_entries(digest)
    if protocol_version == PROTOCOL_V0:
        if len(entries) > 0xFFFF:
            raise EncodeError("a digest holds at most 65535 nodes")
        wire = _U16.pack(len(entries)) + b"".join(entries)
    else:
        wire = _block_stream(b"".join(entries))
        if COMPACT_DIGEST_ABOVE < len(wire) <= COMPACT_DIGEST_ABOVE / _COMPACT_GAIN:
            wire = _compact_digest_stream(digest, wire)
    return wire


def _compact_digest_stream(digest: Digest, default_wire: bytes) -> bytes:
    """A V1 digest too large in chitchat's encoding, made smaller with the same content.

    Two levers, tried cheapest first, stopping once the digest is under the threshold:
    the entry order (ids sorted on their reversed text, so that those sharing a suffix,
    such as chitchat-test's three words, lie side by side: 20% smaller on those ids; the
    name order is better for ids that differ only at the end, like numbered pods), then
    level 19 on the better order (5-15% more, at ~50x the CPU of level 3: ~150 ms for
    400 KB of entries, once per digest since the wire is cached). The 16 KiB blocks stay
    where chitchat cuts them."""
    pack = _U64X3.pack
    by_suffix = sorted(
        digest.nodes.items(), key=lambda item: (item[0].node_id[::-1], item[0].sort_key())
    )
    stream = b"".join(
        node_id_bytes(node) + pack(nd.heartbeat, nd.last_gc_version, nd.max_version)
        for node, nd in by_suffix
    )
    reordered = _block_stream(stream)
    if len(reordered) <= COMPACT_DIGEST_ABOVE:
        return reordered
    if len(reordered) > len(default_wire):
        stream = b"".join(_digest_entries(digest))
    strong = _block_stream(stream, _compress_strong)
    return min((strong, reordered, default_wire), key=len)


def node_id_size(node: NodeId) -> int:
    entry = _WIRE_BY_NODE.get(id(node))
    if entry is not None and entry[0] is node:
        return len(entry[1])
    ip_len = 5 if node.gossip_addr.ip.version == 4 else 17
    return 2 + len(node.node_id.encode()) + 8 + ip_len + 2


def digest_size(digest: Digest, protocol_version: int = PROTOCOL_V0) -> int:
    """Exact encoded size of a digest in ``protocol_version``: counted in version 0, where
    every entry has a known length; in version 1 the size of the compressed stream, so
    the digest is encoded (once: :func:`encode_digest` reuses it)."""
    if protocol_version == PROTOCOL_V0 and PROTOCOL_V0 not in digest.wire_cache:
        return 2 + sum(node_id_size(node) + 24 for node in digest.nodes)
    return len(encode_digest(digest, protocol_version))


def _node_op(node: NodeId, last_gc_version: int, from_version_excluded: int) -> bytes:
    # The node's wire bytes looked up inline (see _node_entry): one per node of a delta.
    entry = _WIRE_BY_NODE.get(id(node))
    raw = entry[1] if entry is not None and entry[0] is node else _node_entry(node)[1]
    return b"\x00" + raw + _U64X2.pack(last_gc_version, from_version_excluded)


def _kv_op(key: str, value: str, version: int, status: KeyStatus) -> bytes:
    raw_key = key.encode()
    raw_value = value.encode()
    if len(raw_key) > MAX_STR_LEN or len(raw_value) > MAX_STR_LEN:
        size = max(len(raw_key), len(raw_value))
        raise EncodeError(f"string of {size} bytes exceeds the 65535-byte wire limit")
    return b"".join(
        (
            _TAG_U16.pack(OP_KEY_VALUE, len(raw_key)),
            raw_key,
            _U16.pack(len(raw_value)),
            raw_value,
            _VERSION_STATUS.pack(version, status),
        )
    )


def encode_key_values(kvs: Iterable[KeyValueMutation]) -> bytes:
    """The delta operations of ``kvs``, back to back, as :class:`DeltaWriter` writes them."""
    return b"".join(_kv_op(kv.key, kv.value, kv.version, kv.status) for kv in kvs)


def _max_version_op(max_version: int) -> bytes:
    return b"\x02" + _U64.pack(max_version)


# A node as a delta carries it to one peer: the NodeDelta the receiver will read, the
# operations of its key-values (None when they cannot be encoded, or are too large to be
# kept), and the node's own operation (None when there are no key-values to send whole
# after it). What a state keeps for the node it holds, so that a delta joins bytes.
StaleNode = tuple[NodeDelta, bytes | None, bytes | None]


def stale_node(
    node: NodeId,
    last_gc_version: int,
    from_version_excluded: int,
    kvs: tuple[KeyValueMutation, ...],
    kv_ops: bytes | None,
    max_version: int,
) -> StaleNode:
    """``node`` with ``kvs`` (its key-values newer than ``from_version_excluded``, oldest
    first, ``kv_ops`` their operations) for :meth:`DeltaWriter.try_add_stale_node`;
    ``max_version`` is what an emptied node (no key-value) carries instead."""
    if kvs:
        max_version = kvs[-1].version
    nd = _node_delta(node, from_version_excluded, last_gc_version, kvs, max_version)
    if kv_ops is None or not kvs:
        return nd, kv_ops, None
    return nd, kv_ops, _node_op(node, last_gc_version, from_version_excluded)


class DeltaWriter:
    """Builds a delta operation by operation without exceeding ``mtu`` encoded bytes.

    Each ``try_add_*`` returns False, adding nothing, when the operation could push the
    encoded delta past the budget. The bound is computed as if the pending block stayed
    uncompressed, so it is never exceeded, and matches chitchat's decisions exactly.
    """

    def __init__(self, mtu: int) -> None:
        if mtu < MIN_DELTA_BUDGET:
            raise ValueError("a delta budget below 100 bytes cannot hold anything useful")
        self._mtu = mtu
        self._threshold = min(BLOCK_THRESHOLD, mtu)
        # Bytes of operations written, before compression: kept within what a receiver
        # agrees to decompress (MAX_DELTA_STREAM).
        self._streamed = 0
        self._output = bytearray()
        self._block = bytearray()
        self._node_deltas: list[NodeDelta] = []
        # The node being written: (node, from_version_excluded, last_gc_version, max_version).
        self._current: tuple[NodeId, int, int, int] | None = None
        self._current_kvs: list[KeyValueMutation] = []

    def _fits(self, op_len: int) -> bool:
        if self._streamed + op_len > MAX_DELTA_STREAM:
            return False
        pending = len(self._block)
        if pending + op_len > self._threshold:
            bound = 3 + len(self._output) + pending + 3 + op_len + 1
        else:
            bound = 3 + len(self._output) + pending + op_len + 1
        return bound <= self._mtu

    def _append(self, op: bytes) -> None:
        self._streamed += len(op)
        self._block += op
        while len(self._block) > self._threshold:
            self._flush_block()

    def _flush_block(self) -> None:
        if not self._block:
            return
        size = min(len(self._block), self._threshold)
        self._output += _compressed_block(bytes(self._block[:size]))
        del self._block[:size]

    def _close_node(self) -> None:
        if self._current is not None:
            node, from_version_excluded, last_gc_version, max_version = self._current
            if self._current_kvs:
                max_version = self._current_kvs[-1].version
            self._node_deltas.append(
                _node_delta(
                    node,
                    from_version_excluded,
                    last_gc_version,
                    tuple(self._current_kvs),
                    max_version,
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
        self._current = (node, from_version_excluded, last_gc_version, 0)
        return True

    def try_add_stale_node(self, stale: StaleNode) -> bool:
        """Add a node and its key-values (see :func:`stale_node`), as much of them as fits;
        False once the delta is full (the node may be in it with part of its key-values,
        or not at all): nothing more should be added.

        A node whose operations fit whole in the pending block is one budget check and
        one copy. Otherwise the node goes piece by piece, which decides the same way:
        within a block each operation's bound only grows, so all fit exactly when the last
        one does, and pieces also handle a cut or a block boundary."""
        node_delta, kv_ops, node_op = stale
        if node_op is not None and kv_ops is not None:
            block = self._block
            size = len(node_op) + len(kv_ops)
            pending = len(block) + size
            if (
                pending <= self._threshold
                and 4 + len(self._output) + pending <= self._mtu
                and self._streamed + size <= MAX_DELTA_STREAM
            ):
                if self._current is not None:
                    self._close_node()
                self._streamed += size
                block += node_op
                block += kv_ops
                self._node_deltas.append(node_delta)
                return True
        if not self.try_add_node(
            node_delta.node, node_delta.last_gc_version, node_delta.from_version_excluded
        ):
            return False
        kvs = node_delta.key_values
        if not kvs:
            # An emptied (all collected) state still has to carry its max version.
            self.try_set_max_version(node_delta.max_version)
            return True
        if kv_ops is not None and self.try_add_encoded_kvs(kv_ops, kvs):
            return True
        return all(self.try_add_kv(kv.key, kv.value, kv.version, kv.status) for kv in kvs)

    def try_add_kv(self, key: str, value: str, version: int, status: KeyStatus) -> bool:
        assert self._current is not None, "a key-value needs a node before it"
        op = _kv_op(key, value, version, status)
        # _fits and _append, inlined: this is called for every key-value of every delta.
        block = self._block
        pending = len(block) + len(op)
        bound = 4 + len(self._output) + pending
        if pending > self._threshold:
            bound += 3
        if bound > self._mtu or self._streamed + len(op) > MAX_DELTA_STREAM:
            return False
        self._streamed += len(op)
        block += op
        if pending > self._threshold:
            while len(self._block) > self._threshold:
                self._flush_block()
        self._current_kvs.append(_new_kv(key, value, version, status))
        return True

    def try_add_encoded_kvs(self, ops: bytes, kvs: Sequence[KeyValueMutation]) -> bool:
        """Add the current node's key-values ``kvs`` at once, ``ops`` being their operations
        as :meth:`try_add_kv` encodes them, when they fit whole in the pending block. False,
        adding nothing, otherwise: then the caller adds them one by one as before, which
        decides the same way (within a block each operation's bound only grows, so all fit
        exactly when the last one does) and handles a cut or a block boundary."""
        assert self._current is not None, "key-values need a node before them"
        pending = len(self._block) + len(ops)
        if (
            pending > self._threshold
            or 4 + len(self._output) + pending > self._mtu
            or self._streamed + len(ops) > MAX_DELTA_STREAM
        ):
            return False
        self._streamed += len(ops)
        self._block += ops
        self._current_kvs.extend(kvs)
        return True

    def try_set_max_version(self, max_version: int) -> bool:
        assert self._current is not None, "a max version needs a node before it"
        op = _max_version_op(max_version)
        if not self._fits(len(op)):
            return False
        self._append(op)
        self._current = (*self._current[:3], max_version)
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


def _block_stream(stream: bytes, compress: Callable[[bytes], bytes] = _compress) -> bytes:
    """A whole stream as blocks ended by the end tag: cut every BLOCK_THRESHOLD bytes,
    whatever the items (operations, digest entries) the cut falls in."""
    parts = [
        _compressed_block(stream[start : start + BLOCK_THRESHOLD], compress)
        for start in range(0, len(stream), BLOCK_THRESHOLD)
    ]
    parts.append(b"\x00")
    return b"".join(parts)


def encode_delta(delta: Delta) -> bytes:
    if delta.encoded is not None:
        return delta.encoded
    ops = list(_delta_ops(delta))
    if any(len(op) > 0xFFFF for op in ops):
        raise EncodeError("a delta operation exceeds 65535 bytes")
    return _block_stream(b"".join(ops))


def _check_version(protocol_version: int) -> None:
    if protocol_version not in PROTOCOL_VERSIONS:
        raise EncodeError(f"unknown protocol version {protocol_version}")


def encode(message: Message) -> bytes:
    """Turn a message into the exact datagram chitchat would send.

    A number outside the u64 range raises :class:`EncodeError`, like every other value
    the wire cannot carry: the caller drops that one message and goes on."""
    try:
        return _encode_message(message)
    except struct.error as exc:
        raise EncodeError(f"a number does not fit its wire field: {exc}") from None


def _encode_message(message: Message) -> bytes:
    # The message's protocol_version lays out the digest; the rest is the same in both.
    version = message.protocol_version
    _check_version(version)
    if isinstance(message, Syn):
        return (
            _HEADER.pack(MAGIC, version, MSG_SYN)
            + encode_digest(message.digest, version)
            + _str_bytes(message.cluster_id)
        )
    if isinstance(message, SynAck):
        return (
            _HEADER.pack(MAGIC, version, MSG_SYNACK)
            + encode_digest(message.digest, version)
            + encode_delta(message.delta)
        )
    if isinstance(message, Ack):
        return _HEADER.pack(MAGIC, version, MSG_ACK) + encode_delta(message.delta)
    if isinstance(message, BadCluster):
        return _HEADER.pack(MAGIC, version, MSG_BAD_CLUSTER)
    raise TypeError(f"not a chitchat message: {message!r}")


# --------------------------------------------------------------------------- decoding
#
# Parsers take the whole buffer and an offset and return (value, next offset). Reads past
# the end surface as IndexError or struct.error, which the entry points turn into
# DecodeError; slices never raise, so every string is followed by a read that would.


def _truncated(what: str) -> DecodeError:
    return DecodeError(f"truncated {what}")


def _parse_node_id(raw: bytes, name_len: int) -> NodeId:
    try:
        name = raw[2 : 2 + name_len].decode()
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid UTF-8 in string: {exc.reason}") from None
    (generation,) = _U64.unpack_from(raw, 2 + name_len)
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    if raw[10 + name_len] == 4:
        ip = ipaddress.IPv4Address(raw[11 + name_len : 15 + name_len])
    else:
        ip = ipaddress.IPv6Address(raw[11 + name_len : 27 + name_len])
    (port,) = _U16.unpack_from(raw, len(raw) - 2)
    return NodeId(name, generation, SocketAddress(ip, port))


def _read_node_id(data: bytes, pos: int) -> tuple[NodeId, bytes, int]:
    """A node id at ``pos``: (node, its wire bytes, offset after it)."""
    if pos + 2 > len(data):
        raise _truncated("node id")
    name_len = data[pos] | data[pos + 1] << 8
    version_pos = pos + 10 + name_len
    if version_pos >= len(data):
        raise _truncated("node id")
    ip_version = data[version_pos]
    if ip_version == 4:
        end = version_pos + 7
    elif ip_version == 6:
        end = version_pos + 19
    else:
        raise DecodeError(f"invalid IP version byte {ip_version}")
    if end > len(data):
        raise _truncated("node id")
    raw = data[pos:end]
    node = _NODES_BY_WIRE.get(raw)
    if node is None:
        node = _parse_node_id(raw, name_len)
        _remember_node(raw, node)
    return node, raw, end


def _remember_node(raw: bytes, node: NodeId) -> None:
    global _node_ids_changed
    if len(_NODES_BY_WIRE) >= _NODE_CACHE_MAX:
        _NODES_BY_WIRE.clear()
    _NODES_BY_WIRE[raw] = node
    _node_ids_changed += 1
    _set_entry_room()


def _decode_digest(data: bytes, pos: int) -> tuple[Digest, int]:
    """A version 0 digest: a count, then that many entries."""
    if pos + 2 > len(data):
        raise _truncated("digest")
    count = data[pos] | data[pos + 1] << 8
    return _read_digest_entries(data, pos + 2, count)


def _decode_digest_v1(data: bytes, pos: int) -> tuple[Digest, int]:
    """A version 1 digest: a block stream whose joined payload is nothing but entries."""
    stream, end = _read_stream(data, pos)
    digest, _ = _read_digest_entries(stream, 0, None)
    return digest, end


def _read_digest_entries(data: bytes, pos: int, count: int | None) -> tuple[Digest, int]:
    """``count`` digest entries from ``pos``, or, when ``count`` is None, entries up to the
    end of ``data`` (where one cut short is an error)."""
    size = len(data)
    layout_key = (pos, count) if count is not None else (pos, -size)
    layout = _LAYOUTS.get(layout_key)
    if layout is not None:
        columns = _read_columns(data, layout)
        if columns is not None:
            return Digest(columns, received_entries=EntryBytes(columns)), layout.end
    entries: list[tuple[NodeId, NodeDigest]]
    bounds: list[slice] | None
    pieces: list[bytes] | None = None
    if layout is None:
        entries, bounds, pos = _read_entries_from(data, pos, count)
    else:
        entries, bounds, pieces, pos = _read_entries_laid_out(data, layout, count)
    if bounds is not None and entries:
        if len(_LAYOUTS) >= _LAYOUT_CACHE_MAX:
            _LAYOUTS.clear()
        _LAYOUTS[layout_key] = _Layout(bounds)
    # A repeated node overwrites the earlier entry, as inserting into chitchat's map does.
    nodes = dict(entries)
    if pieces is not None and len(pieces) == len(nodes):
        return Digest(nodes, received_entries=pieces), pos
    return Digest(nodes), pos


def _read_columns(data: bytes, laid_out: _Layout) -> DigestColumns | None:
    """A digest laid out as ``laid_out`` whose every node id is the one the layout held
    last (the usual digest: the same nodes, their numbers moved), read as columns in one
    C call, its ids compared with the layout's as one tuple (memcmp each). A known id's
    bytes are a well-formed id of their length, and the numbers are any u64s, so such a
    digest is well-formed. None when that does not hold: the digest is read entry by entry."""
    try:
        read = laid_out.ids_and_numbers().unpack_from(data)
    except struct.error:  # a shorter datagram
        return None
    ids = read[0::4]
    if laid_out.column_epoch != _node_ids_changed or ids != laid_out.column_ids:
        # Another digest of this layout, or the known ids changed since: its ids looked up
        # (in C). Held when all are known and none is listed twice.
        nodes: list[Any] = list(map(_NODES_BY_WIRE.get, ids))
        if not all(map(is_not, nodes, repeat(None))):
            return None
        index = dict(zip(nodes, range(len(nodes)), strict=True))
        if len(index) != len(nodes):
            return None
        laid_out.column_ids, laid_out.column_nodes, laid_out.column_index = ids, nodes, index
        laid_out.column_epoch = _node_ids_changed
    return DigestColumns(
        laid_out.column_nodes,
        laid_out.column_index,
        read[1::4],
        read[2::4],
        read[3::4],
        data,
        laid_out.entries,
        _new_node_digest,
    )


def _read_entries_laid_out(
    data: bytes, laid_out: _Layout, count: int | None
) -> tuple[list[tuple[NodeId, NodeDigest]], list[slice] | None, list[bytes] | None, int]:
    """The entries of a digest laid out as the last one with the same start and count
    (or size) was: the usual case, since peers that know the same nodes write the same
    ids in the same order. Every piece is cut and looked up in C; a piece that is a known
    entry is one (only well-formed entries are stored), so the pieces before a new one
    are what a parse from the start finds. So is a piece that is a known node id and its
    numbers (see _read_known_ids). Any other new entry is parsed where it lies; one that
    ends elsewhere than the layout says ends the layout: the rest is parsed in turn.
    Returns the layout to keep (None: the same one still holds), and, when it held, the
    bytes of each entry."""
    layout = laid_out.entries
    pieces: list[bytes]
    try:
        pieces = list(laid_out.cut.unpack_from(data))
        holds_layout = True
    except struct.error:  # a shorter datagram: what it holds of the layout
        # (operator.getitem is called without an argument tuple, bytes.__getitem__ is not.)
        pieces = cast("list[bytes]", list(map(getitem, repeat(data), layout)))
        holds_layout = False
    found: list[Any] = list(map(_ENTRIES_BY_WIRE.get, pieces))
    # Every entry known or of a known node (the usual digest): nothing left to look for
    # (a scan of the entries, and an exception to end it).
    if None not in found or (holds_layout and _read_known_ids(data, laid_out, pieces, found)):
        return found, None, pieces, laid_out.end
    missing = -1
    while True:
        try:
            missing = found.index(None, missing + 1)
        except ValueError:
            break
        start = layout[missing].start
        node, nd, end = _read_entry(data, start, len(data))
        if end != layout[missing].stop:
            rest = None if count is None else count - missing
            tail, tail_bounds, pos = _read_entries_from(data, start, rest)
            return found[:missing] + tail, layout[:missing] + tail_bounds, None, pos
        found[missing] = (node, nd)
    return found, None, pieces, laid_out.end


def _read_known_ids(data: bytes, laid_out: _Layout, pieces: list[bytes], found: list[Any]) -> bool:
    """Fill in ``found`` (the entries of ``pieces``, None where new) the new entries whose
    node id is a known one, all in C: in an idle cluster every heartbeat has risen since
    the last digest, so every entry is new but none of its nodes, and a parse per entry
    (two Python calls) was most of a digest's decoding. A known id's bytes are a
    well-formed id of their length, so such a piece is an entry that ends where the
    layout says (``data`` holds the whole layout: no number is cut short). True when no
    entry of ``found`` is left None."""
    missing = list(compress(range(len(found)), map(is_, found, repeat(None))))
    ids, numbers = laid_out.split()
    held = laid_out.nodes if laid_out.epoch == _node_ids_changed else None
    nodes: list[Any]
    every_missing = len(missing) == len(found)
    read: tuple[Any, ...] = ()
    if held and every_missing:
        # Every entry new, the usual case: the ids and the numbers read in one C call,
        # the ids compared with the layout's as one list (memcmp each), where
        # bytes.startswith parsed its arguments per entry.
        read = laid_out.ids_and_numbers().unpack_from(data)
        if list(read[0::4]) != laid_out.id_bytes:
            read = ()
    if read and held:
        nodes = list(held)
    elif held:
        # The ids where the layout's first digest had them, checked in place (no slice,
        # no hash); only those that differ are looked up. (Every entry new, the usual
        # case: the lists themselves, not picked from entry by entry.)
        if every_missing:
            same = list(map(bytes.startswith, pieces, laid_out.id_bytes))
            nodes = list(held)
        else:
            pick = _picker(missing)
            same = list(map(bytes.startswith, pick(pieces), pick(laid_out.id_bytes)))
            nodes = list(pick(held))
        if not all(same):
            for at in compress(range(len(missing)), map(not_, same)):
                nodes[at] = _NODES_BY_WIRE.get(data[ids[missing[at]]])
    else:
        id_pieces = cast(
            "list[bytes]", list(map(getitem, repeat(data), map(ids.__getitem__, missing)))
        )
        nodes = list(map(_NODES_BY_WIRE.get, id_pieces))
    # (Never ``None in nodes``: that calls NodeId.__eq__, Python, per node.) The layout's
    # held ids are all known (it holds them only then): not asked again.
    known: list[bool] = [] if read else list(map(is_not, nodes, repeat(None)))
    every_known = all(known)
    if not held and every_known:
        # The next digest of this layout checks its ids against these (see _Layout): all
        # of them as _NODES_BY_WIRE holds them (an entry found may hold an older object).
        every_node: list[Any] = nodes
        if len(missing) < len(found):
            id_pieces = cast("list[bytes]", list(map(getitem, repeat(data), ids)))
            every_node = list(map(_NODES_BY_WIRE.get, id_pieces))
        if all(map(is_not, every_node, repeat(None))):
            laid_out.nodes, laid_out.id_bytes = every_node, id_pieces
            laid_out.epoch = _node_ids_changed
    if not every_known:  # an unknown id: _read_entries_laid_out parses it (or fails)
        missing = list(compress(missing, known))
        nodes = list(compress(nodes, known))
        if not missing:
            return False
    every_new = len(missing) == len(found)
    new_pieces: Sequence[bytes] = pieces
    if read:
        heartbeats, gcs, max_versions = read[1::4], read[2::4], read[3::4]
    else:
        every = numbers.unpack_from(data)
        heartbeats, gcs, max_versions = every[0::3], every[1::3], every[2::3]
    if not every_new:
        # One C call a column, where a tuple's __getitem__ (a slot wrapper) built an
        # argument tuple per entry.
        pick = _picker(missing)
        heartbeats, gcs, max_versions = pick(heartbeats), pick(gcs), pick(max_versions)
        new_pieces = pick(pieces)
    if _DIGEST_SETTERS is None:
        nds = list(map(NodeDigest, heartbeats, gcs, max_versions))
    else:
        # NodeDigests filled in through their slots (see _slot_setters), with no call of
        # the generated __init__ per entry; ``any`` runs the setters, which return None.
        nds = list(map(object.__new__, repeat(NodeDigest, len(missing))))
        set_heartbeat, set_last_gc, set_max_version = _DIGEST_SETTERS
        any(map(set_heartbeat, nds, heartbeats))
        any(map(set_last_gc, nds, gcs))
        any(map(set_max_version, nds, max_versions))
    entries = list(zip(nodes, nds, strict=True))
    if len(entries) == len(found):
        found[:] = entries
    else:
        any(map(setitem, repeat(found), missing, entries))
    seen = _ENTRIES_BY_WIRE
    if len(seen) + len(entries) > _entry_room:
        _make_entry_room(len(entries))
    seen.update(zip(new_pieces, entries, strict=True))
    return every_known


def _picker(positions: list[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """What takes the items at ``positions`` (at least one) of a sequence, as a tuple."""
    if len(positions) == 1:
        at = positions[0]
        return lambda items: (items[at],)
    return cast("Callable[[Sequence[Any]], tuple[Any, ...]]", itemgetter(*positions))


def _read_entries_from(
    data: bytes, pos: int, count: int | None
) -> tuple[list[tuple[NodeId, NodeDigest]], list[slice], int]:
    """The entries from ``pos`` parsed one after the other, with where each lies."""
    entries: list[tuple[NodeId, NodeDigest]] = []
    bounds: list[slice] = []
    size = len(data)
    parsed = 0
    seen = _ENTRIES_BY_WIRE
    while (pos < size) if count is None else (parsed < count):
        parsed += 1
        start = pos
        # An entry seen before, looked up without a call. The rest, and every malformed
        # entry, go through _read_entry. Reads past the end raise IndexError (a miss); a
        # slice cut short by the end cannot equal a stored entry (its length bytes say it
        # is longer), so it misses.
        try:
            name_len = data[pos] | data[pos + 1] << 8
            end = pos + name_len + (41 if data[pos + 10 + name_len] == 4 else 53)
            hit = seen.get(data[pos:end])
        except IndexError:
            hit = None
        if hit is not None:
            pos = end
        else:
            node, nd, pos = _read_entry(data, pos, size)
            hit = (node, nd)
        entries.append(hit)
        bounds.append(slice(start, pos))
    return entries, bounds, pos


def _read_entry(data: bytes, pos: int, size: int) -> tuple[NodeId, NodeDigest, int]:
    """One digest entry parsed at ``pos`` (and kept, by its bytes, for next time)."""
    start = pos
    node, _raw, pos = _read_node_id(data, pos)
    if pos + 24 > size:
        raise _truncated("node digest")
    heartbeat, last_gc, max_version = _U64X3.unpack_from(data, pos)
    pos += 24
    if _DIGEST_SETTERS is not None:
        nd = object.__new__(NodeDigest)
        set_heartbeat, set_last_gc, set_max_version = _DIGEST_SETTERS
        set_heartbeat(nd, heartbeat)
        set_last_gc(nd, last_gc)
        set_max_version(nd, max_version)
    else:
        nd = NodeDigest(heartbeat, last_gc, max_version)
    seen = _ENTRIES_BY_WIRE
    if len(seen) >= _entry_room:
        _make_entry_room(1)
    seen[data[start:pos]] = (node, nd)
    return node, nd, pos


def _read_string(data: bytes, pos: int) -> tuple[str, int]:
    if pos + 2 > len(data):
        raise _truncated("string length")
    end = pos + 2 + (data[pos] | data[pos + 1] << 8)
    if end > len(data):
        raise _truncated("string")
    try:
        return data[pos + 2 : end].decode(), end
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid UTF-8 in string: {exc.reason}") from None


def _decompress_block(frame: bytes, room: int) -> bytes:
    """One zstd block's content; ``room`` is what the delta may still decompress to."""
    try:
        content_size = zstandard.frame_content_size(frame)  # -1 when the frame does not say
    except zstandard.ZstdError as exc:
        raise DecodeError(f"bad zstd block: {exc}") from None
    if content_size > _MAX_BLOCK_OUTPUT:
        raise DecodeError("compressed block claims more than 65535 bytes")
    if content_size > room:
        raise _bomb()
    limit = min(_MAX_BLOCK_OUTPUT, room)
    if limit <= 0 and content_size != 0:
        raise _bomb()  # (and a zero max_output_size would mean "no limit" to zstandard)
    try:
        dctx = _DECOMPRESSORS.pop()
    except IndexError:
        dctx = zstandard.ZstdDecompressor()
    try:
        if content_size == 0:
            # The one-shot call returns b"" for such a frame without reading it.
            dobj = dctx.decompressobj()
            out: bytes = dobj.decompress(frame)
            if not dobj.eof:
                raise DecodeError("truncated zstd frame")
        else:
            # Like chitchat, never more than a 65535-byte buffer: a frame that does not
            # declare its size cannot inflate into gigabytes, and a frame cut short fails.
            # Nor more than the delta has room for: the buffer is allocated up front.
            out = dctx.decompress(frame, max_output_size=limit)
    except zstandard.ZstdError as exc:
        if limit < _MAX_BLOCK_OUTPUT:
            # A frame that does not fit in what is left: the delta was already near the
            # cap, which no legitimate sender reaches (a broken frame there counts too).
            raise _bomb() from None
        raise DecodeError(f"bad zstd block: {exc}") from None
    finally:
        _DECOMPRESSORS.append(dctx)
    if len(out) > _MAX_BLOCK_OUTPUT:
        raise DecodeError("compressed block decompresses past 65535 bytes")
    if len(out) > room:
        raise _bomb()
    return out


def _bomb() -> DecompressionBomb:
    return DecompressionBomb(f"delta decompresses past {MAX_DELTA_STREAM:,} bytes")


def _read_stream(data: bytes, pos: int) -> tuple[bytes, int]:
    parts: list[bytes] = []
    streamed = 0
    size = len(data)
    while True:
        if pos >= size:
            raise _truncated("delta: no end-of-blocks tag")
        block_type = data[pos]
        if block_type == BLOCK_END:
            return b"".join(parts), pos + 1
        if block_type != BLOCK_COMPRESSED and block_type != BLOCK_RAW:
            raise DecodeError(f"invalid block type {block_type}")
        if pos + 3 > size:
            raise _truncated("block header")
        start = pos + 3
        end = start + (data[pos + 1] | data[pos + 2] << 8)
        if end > size:
            raise _truncated("block")
        if block_type == BLOCK_COMPRESSED:
            part = _decompress_block(data[start:end], MAX_DELTA_STREAM - streamed)
        else:
            part = data[start:end]
            if streamed + len(part) > MAX_DELTA_STREAM:
                raise _bomb()
        streamed += len(part)
        parts.append(part)
        pos = end


def _decode_ops(data: bytes) -> Delta:
    end = len(data)
    pos = 0
    node_deltas: list[NodeDelta] = []
    seen: set[bytes] = set()
    current: NodeId | None = None
    from_version = last_gc = max_version = 0
    kvs: list[KeyValueMutation] = []
    statuses = _STATUSES
    unpack_version_status = _VERSION_STATUS.unpack_from
    unpack_gc_from = _U64X2.unpack_from
    kv_type = KeyValueMutation
    append = kvs.append
    new = object.__new__
    fast = _KV_SETTERS is not None
    set_key, set_value, set_version, set_status = _KV_SETTERS or (_never,) * 4
    nd_type = NodeDelta
    nd_fast = _ND_SETTERS is not None
    set_nd_node, set_nd_from, set_nd_gc, set_nd_kvs, set_nd_max = _ND_SETTERS or (_never,) * 5
    nodes_by_wire = _NODES_BY_WIRE
    runs = _KV_RUNS_BY_NODE
    # The key-value operations right after the current node's operation, parsed here
    # (not found in ``runs``): from run_start, as far as run_stop while run_open.
    raw = b""
    run_start = run_stop = 0
    run_open = False

    while pos < end:
        tag = data[pos]
        pos += 1
        if tag == OP_KEY_VALUE:
            if current is None:
                raise DecodeError("key-value operation before any node operation")
            key_end = pos + 2 + (data[pos] | data[pos + 1] << 8)
            key = data[pos + 2 : key_end].decode()
            value_end = key_end + 2 + (data[key_end] | data[key_end + 1] << 8)
            value = data[key_end + 2 : value_end].decode()
            version, code = unpack_version_status(data, value_end)
            pos = value_end + 9
            if code >= len(statuses):
                raise DecodeError(f"invalid deletion status {code}")
            if version <= max_version:
                raise DecodeError("key-value versions must strictly increase within a node")
            max_version = version
            if fast:
                kv = new(kv_type)
                set_key(kv, key)
                set_value(kv, value)
                set_version(kv, version)
                set_status(kv, statuses[code])
                append(kv)
            else:
                append(kv_type(key, value, version, statuses[code]))
            if run_open:
                run_stop = pos
            continue
        if run_open:
            _keep_run(runs, raw, data, run_start, run_stop, kvs)
            run_open = False
        if tag == OP_NODE:
            # A node id met before, found without a call (see _read_digest_entries);
            # the rest, and every malformed one, go through _read_node_id.
            try:
                name_len = data[pos] | data[pos + 1] << 8
                id_end = pos + name_len + (17 if data[pos + 10 + name_len] == 4 else 29)
                raw = data[pos:id_end]
                known = nodes_by_wire.get(raw)
            except IndexError:
                known = None
            if known is not None:
                node = known
                pos = id_end
            else:
                node, raw, pos = _read_node_id(data, pos)
            new_last_gc, new_from = unpack_gc_from(data, pos)
            pos += 16
            if raw in seen:
                raise DecodeError(f"node {node} appears twice in one delta")
            if current is not None:
                # _node_delta inlined: one node delta per node of every delta decoded.
                if nd_fast:
                    nd = new(nd_type)
                    set_nd_node(nd, current)
                    set_nd_from(nd, from_version)
                    set_nd_gc(nd, last_gc)
                    set_nd_kvs(nd, tuple(kvs))
                    set_nd_max(nd, max_version)
                    node_deltas.append(nd)
                else:
                    node_deltas.append(
                        _node_delta(current, from_version, last_gc, tuple(kvs), max_version)
                    )
            seen.add(raw)
            current, last_gc, from_version, max_version = node, new_last_gc, new_from, 0
            run = runs.get(raw)
            if run is not None:
                # The node's key-values as the last delta that held it carried them (a
                # node's newest key comes from every peer that relays it): the same
                # bytes are the same frozen key-values, valid as they were then. Only
                # when they are all of the node's key-values (no more follow).
                run_bytes, run_kvs = run
                run_end = pos + len(run_bytes)
                if data.startswith(run_bytes, pos):
                    if run_end == end or data[run_end] == OP_NODE:
                        # The whole node (the usual case): its node delta made now, on the
                        # kept tuple, where it would be copied into a list and back.
                        pos = run_end
                        if nd_fast:
                            nd = new(nd_type)
                            set_nd_node(nd, node)
                            set_nd_from(nd, new_from)
                            set_nd_gc(nd, new_last_gc)
                            set_nd_kvs(nd, run_kvs)
                            set_nd_max(nd, run_kvs[-1].version)
                            node_deltas.append(nd)
                        else:
                            node_deltas.append(
                                _node_delta(
                                    node, new_from, new_last_gc, run_kvs, run_kvs[-1].version
                                )
                            )
                        current = None
                        continue
                    if data[run_end] != OP_KEY_VALUE:  # a max version follows
                        pos = run_end
                        max_version = run_kvs[-1].version
                        kvs = list(run_kvs)
                        append = kvs.append
                        continue
            kvs = []
            append = kvs.append
            run_start = run_stop = pos
            run_open = True
        elif tag == OP_SET_MAX_VERSION:
            if current is None:
                raise DecodeError("max-version operation before any node operation")
            (max_version,) = _U64.unpack_from(data, pos)
            pos += 8
        else:
            raise DecodeError(f"invalid delta operation tag {tag}")
    if run_open:
        _keep_run(runs, raw, data, run_start, run_stop, kvs)
    if current is not None:
        node_deltas.append(_node_delta(current, from_version, last_gc, tuple(kvs), max_version))
    return Delta(tuple(node_deltas))


def _keep_run(
    runs: dict[bytes, tuple[bytes, tuple[KeyValueMutation, ...]]],
    node_wire: bytes,
    data: bytes,
    start: int,
    stop: int,
    kvs: list[KeyValueMutation],
) -> None:
    """Remember the key-value operations ``data[start:stop]`` (parsed into ``kvs``, all of
    them valid) as those that came after the node ``node_wire``."""
    if kvs and stop - start <= _KV_RUN_MAX_BYTES:
        if len(runs) >= _KV_RUN_CACHE_MAX:
            runs.clear()
        runs[node_wire] = (data[start:stop], tuple(kvs))


def _decode_delta(data: bytes, pos: int) -> Delta:
    stream, _end = _read_stream(data, pos)
    try:
        return _decode_ops(stream)
    except (IndexError, struct.error):
        raise _truncated("delta operation") from None
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid UTF-8 in string: {exc.reason}") from None


# The empty Ack of each version, by its five bytes: a third of an idle node's datagrams
# (idle_replay.py, 100 nodes: 2.9 a second, every one of them these bytes). Decoded, it
# walked the block stream and the ops to build the same frozen message each time; cold
# (a node wakes after 99 others ran) that was ~45 us of the Ack's ~115 for memory touched.
# Equal bytes decode to equal messages, so one shared message changes nothing.
_EMPTY_ACKS: dict[bytes, Ack] = {
    _HEADER.pack(MAGIC, version, MSG_ACK) + bytes((BLOCK_END,)): Ack(
        Delta(()), protocol_version=version
    )
    for version in PROTOCOL_VERSIONS
}
_EMPTY_ACK_SIZE = _HEADER.size + 1


def decode(datagram: bytes) -> Message:
    """Parse one datagram; raise :class:`DecodeError` if it is not a chitchat message.

    Trailing bytes after a complete message are ignored, as chitchat ignores them.
    """
    size = len(datagram)
    if size == _EMPTY_ACK_SIZE:
        empty_ack = _EMPTY_ACKS.get(bytes(datagram))
        if empty_ack is not None:
            return empty_ack
    if size < 4:
        raise DecodeError("datagram too short for a chitchat header")
    magic, version, msg_type = _HEADER.unpack_from(datagram, 0)
    if magic != MAGIC:
        raise DecodeError(f"bad magic number {magic}")
    if version not in PROTOCOL_VERSIONS:
        raise DecodeError(f"unsupported protocol version {version}")
    data = bytes(datagram)
    read_digest = _decode_digest if version == PROTOCOL_V0 else _decode_digest_v1
    if msg_type == MSG_SYN:
        syn = _SYNS_BY_WIRE.get(data) if _syn_cache_bytes else None
        if syn is None:
            digest, pos = read_digest(data, 4)
            cluster_id, _ = _read_string(data, pos)
            syn = Syn(cluster_id, digest, protocol_version=version)
            if _syn_cache_bytes:
                _hold_syn(data, syn)
        return syn
    if msg_type == MSG_SYNACK:
        digest, pos = read_digest(data, 4)
        return SynAck(digest, _decode_delta(data, pos), protocol_version=version)
    if msg_type == MSG_ACK:
        return Ack(_decode_delta(data, 4), protocol_version=version)
    if msg_type == MSG_BAD_CLUSTER:
        return BadCluster(protocol_version=version)
    raise DecodeError(f"invalid message type {msg_type}")
