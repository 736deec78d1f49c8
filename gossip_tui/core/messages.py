"""The four chitchat messages and what they carry, as plain data.

Nothing here knows bytes; :mod:`gossip_tui.core.codec` turns these into datagrams and back.

Every message carries the protocol version of its datagram's header (0 unless said
otherwise): a decoded message knows the format it came in, and the codec encodes a message
in its own version. The version only changes how a digest is laid out on the wire, never
what a message means, so it is a keyword with a default rather than a wrapper around them.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, Sequence
from typing import Any

import attrs

from .fields_repr import fields_repr
from .models import KeyStatus, NodeId


@attrs.frozen
class NodeDigest:
    """How far a node's state has got: what a peer needs to compute a delta for us."""

    __repr__ = fields_repr

    heartbeat: int
    last_gc_version: int
    max_version: int


class DigestColumns(Mapping[NodeId, "NodeDigest"]):
    """A decoded digest's entries as columns: its node ids in wire order, and its
    heartbeats, last gc versions and max versions as tuples beside them, as one C call
    read them out of the datagram. Each entry's :class:`NodeDigest` is made when first
    asked for (then the same object), and its bytes are cut when asked for: an idle node
    compares the columns with its own, and most entries are never looked at one by one.

    ``nodes`` and ``index`` (each node's position) are shared by every digest of the
    same layout and must not be changed. No node is listed twice."""

    __slots__ = (
        "_make",
        "data",
        "heartbeats",
        "index",
        "last_gcs",
        "made",
        "max_versions",
        "nodes",
        "slices",
    )

    def __init__(
        self,
        nodes: Sequence[NodeId],
        index: Mapping[NodeId, int],
        heartbeats: Sequence[int],
        last_gcs: Sequence[int],
        max_versions: Sequence[int],
        data: bytes,
        slices: Sequence[slice],
        make: Callable[[int, int, int], NodeDigest] = NodeDigest,
    ) -> None:
        self.nodes = nodes
        self.index = index
        self.heartbeats = heartbeats
        self.last_gcs = last_gcs
        self.max_versions = max_versions
        # The bytes the entries lie in, and where each lies.
        self.data = data
        self.slices = slices
        # What makes an entry of its numbers (the codec's maker skips the frozen class's
        # __init__).
        self._make = make
        # The entries made so far, by position: one who makes one itself (the engine's
        # hot path) puts it here, so that it is the one handed out.
        self.made: dict[int, NodeDigest] = {}

    def entry(self, at: int) -> NodeDigest:
        """The entry at position ``at``."""
        made = self.made
        held = made.get(at)
        if held is None:
            held = made[at] = self._make(
                self.heartbeats[at], self.last_gcs[at], self.max_versions[at]
            )
        return held

    def entry_and_bytes(self, at: int) -> tuple[NodeDigest, bytes]:
        """The entry at position ``at`` and its bytes as the datagram held them: what a
        node state keeps as its digest entry."""
        made = self.made
        held = made.get(at)
        if held is None:
            held = made[at] = self._make(
                self.heartbeats[at], self.last_gcs[at], self.max_versions[at]
            )
        return held, self.data[self.slices[at]]

    def entry_bytes(self, at: int) -> bytes:
        """The bytes of the entry at position ``at``, as the datagram held them."""
        return self.data[self.slices[at]]

    def __getitem__(self, node: NodeId) -> NodeDigest:
        return self.entry(self.index[node])

    def get(self, node: NodeId, default: Any = None) -> Any:
        at = self.index.get(node)
        return default if at is None else self.entry(at)

    def __contains__(self, node: object) -> bool:
        return node in self.index

    def __iter__(self) -> Iterator[NodeId]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def keys(self) -> KeysView[NodeId]:
        return _ColumnKeys(self)

    def items(self) -> ItemsView[NodeId, NodeDigest]:
        return _ColumnItems(self)

    def __repr__(self) -> str:
        return repr(dict(self.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        # A plain dict once pickled or copied: the columns hold the datagram.
        return (dict, (dict(self.items()),))


class _ColumnKeys(KeysView[NodeId]):
    _mapping: DigestColumns

    def __iter__(self) -> Iterator[NodeId]:
        # The node list's own iterator, in C, where KeysView's generator resumed per node.
        return iter(self._mapping.nodes)


class _ColumnItems(ItemsView[NodeId, "NodeDigest"]):
    _mapping: DigestColumns

    def __iter__(self) -> Iterator[tuple[NodeId, NodeDigest]]:
        columns = self._mapping
        return zip(columns.nodes, map(columns.entry, range(len(columns.nodes))), strict=True)


class EntryBytes(Sequence[bytes]):
    """The bytes of a :class:`DigestColumns`' entries (``received_entries``), each cut
    when asked for."""

    __slots__ = ("_columns",)

    def __init__(self, columns: DigestColumns) -> None:
        self._columns = columns

    def __len__(self) -> int:
        return len(self._columns)

    def __getitem__(self, at: Any) -> Any:
        if isinstance(at, slice):
            return [self._columns.entry_bytes(i) for i in range(len(self))[at]]
        if not -len(self) <= at < len(self):
            raise IndexError(at)
        return self._columns.entry_bytes(at % len(self))


@attrs.frozen
class Digest:
    """A summary of every node this node knows, keyed by node."""

    __repr__ = fields_repr

    nodes: Mapping[NodeId, NodeDigest] = attrs.field(factory=dict)
    # The codec's encodings of this digest by protocol version, filled on first use: a
    # responder sizes its digest before sending it, and the V1 size is only known by
    # compressing. Not part of equality.
    wire_cache: dict[int, bytes] = attrs.field(factory=dict, init=False, eq=False, repr=False)
    # The encoded entries of ``nodes`` in wire order, when its maker has them: a cluster
    # state keeps each node's encoded entry and the order between digests, so the codec
    # need neither sort nor pack. Not part of equality.
    wire_entries: Sequence[bytes] | None = attrs.field(
        default=None, kw_only=True, eq=False, repr=False
    )
    # The entries' bytes as the codec decoded them, in the order of ``nodes``, when it
    # kept them (a digest laid out as the one before): an entry of a cluster state that
    # moves to one of these is that entry, already encoded. Not part of equality.
    received_entries: Sequence[bytes] | None = attrs.field(
        default=None, kw_only=True, eq=False, repr=False
    )


@attrs.frozen
class KeyValueMutation:
    __repr__ = fields_repr
    key: str
    value: str
    version: int
    status: KeyStatus = KeyStatus.SET


@attrs.frozen
class NodeDelta:
    """The key-values of one node newer than ``from_version_excluded``.

    ``last_gc_version`` tells the receiver which tombstones the sender may already have
    forgotten; ``max_version`` is the last key-value's version, or, when there are none,
    the version carried by an explicit SetMaxVersion operation.
    """

    __repr__ = fields_repr

    node: NodeId
    from_version_excluded: int
    last_gc_version: int
    key_values: tuple[KeyValueMutation, ...] = ()
    max_version: int = 0


@attrs.frozen
class Delta:
    __repr__ = fields_repr
    node_deltas: tuple[NodeDelta, ...] = ()
    # The exact bytes this delta was built as, when the MTU-bounded writer made it: sending
    # it again must not compress it a second time. Not part of equality.
    encoded: bytes | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class Syn:
    """A asks B: here is what I know (B answers with a SynAck)."""

    __repr__ = fields_repr

    cluster_id: str
    digest: Digest
    protocol_version: int = attrs.field(default=0, kw_only=True)


@attrs.frozen
class SynAck:
    """B answers A: here is what I know, and what you lack (A answers with an Ack)."""

    __repr__ = fields_repr

    digest: Digest
    delta: Delta
    protocol_version: int = attrs.field(default=0, kw_only=True)


@attrs.frozen
class Ack:
    """A answers B: here is what you lack."""

    __repr__ = fields_repr

    delta: Delta
    protocol_version: int = attrs.field(default=0, kw_only=True)


@attrs.frozen
class BadCluster:
    """B refuses A's Syn: A belongs to another cluster."""

    __repr__ = fields_repr

    protocol_version: int = attrs.field(default=0, kw_only=True)


Message = Syn | SynAck | Ack | BadCluster
