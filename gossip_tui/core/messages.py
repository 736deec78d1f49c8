"""The four chitchat messages and what they carry, as plain data.

Nothing here knows bytes; :mod:`gossip_tui.core.codec` turns these into datagrams and back.

Every message carries the protocol version of its datagram's header (0 unless said
otherwise): a decoded message knows the format it came in, and the codec encodes a message
in its own version. The version only changes how a digest is laid out on the wire, never
what a message means, so it is a keyword with a default rather than a wrapper around them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
