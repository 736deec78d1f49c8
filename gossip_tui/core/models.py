"""Plain data shared by every layer: node identities, versioned values, snapshots.

Everything here is a frozen attrs class so it can cross task and thread boundaries
freely and be handed to the UI or the HTTP API without copying.
"""

from __future__ import annotations

import enum
import ipaddress
import operator
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs

from .errors import GossipTuiError
from .fields_repr import fields_repr

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressError(GossipTuiError, ValueError):
    """A text that is not an ``ip:port`` socket address."""


_Hashed = TypeVar("_Hashed")


def _hash_in_c(cls: type[_Hashed]) -> type[_Hashed]:
    """Make ``hash()`` of the attrs class ``cls`` a C call. Node ids and addresses are
    dict and set keys everywhere (a forming node hashes a node id some 2,000 times a
    round at 100 nodes), and attrs' ``__hash__`` is a Python function, called each time.
    Each instance holds the value attrs computes, as the bound ``int.__int__`` of it (a
    C callable that returns it), in its ``_hash`` slot; that slot's descriptor becomes the
    class's ``__hash__``, so CPython's hash reads the slot and calls it, with no Python
    frame. Equal instances hash alike, as with attrs' own hash (the same value)."""
    attrs_hash = cls.__hash__
    hash_slot = cls.__dict__["_hash"]

    def held_hash(self: Any) -> Callable[[], int]:
        return attrs_hash(self).__int__

    cls._make_hash = held_hash  # type: ignore[attr-defined]
    # The class's __hash__ set through a variable's name: mypy forbids assigning a method.
    name = "__hash__"
    setattr(cls, name, hash_slot)
    return cls


def _check_port(_instance: Any, _attribute: Any, port: int) -> None:
    if not 0 <= port <= 0xFFFF:
        raise AddressError(f"port {port} is outside 0..65535")


@_hash_in_c
@attrs.frozen(order=False)
class SocketAddress:
    """An IP socket address as chitchat puts it on the wire (no host names)."""

    __repr__ = fields_repr

    ip: IPAddress
    port: int = attrs.field(validator=_check_port)
    # Sorting happens every round and on every digest: compute the key once.
    _sort_key: tuple[int, bytes, int] = attrs.field(init=False, eq=False, repr=False)

    # hash(self), held for _hash_in_c.
    _hash: Callable[[], int] = attrs.field(
        init=False,
        eq=False,
        repr=False,
        default=attrs.Factory(lambda self: self._make_hash(), takes_self=True),
    )

    @_sort_key.default
    def _make_sort_key(self) -> tuple[int, bytes, int]:
        # Rust orders SocketAddr V4 before V6, then by address, then port.
        return (self.ip.version, self.ip.packed, self.port)

    def __reduce__(self) -> tuple[type[SocketAddress], tuple[IPAddress, int]]:
        # A copy or an unpickled one is built anew: its hash is worked out again (another
        # process hashes strings differently).
        return (SocketAddress, (self.ip, self.port))

    @classmethod
    def parse(cls, text: str) -> SocketAddress:
        """Parse ``1.2.3.4:5`` or ``[::1]:5``; raise :class:`AddressError` otherwise."""
        host, sep, port_text = text.strip().rpartition(":")
        if not sep or not host or not port_text.isdigit():
            raise AddressError(f"{text!r} is not an ip:port address")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise AddressError(f"{text!r} is not an ip:port address") from None
        return cls(ip, int(port_text))

    @property
    def host(self) -> str:
        return str(self.ip)

    def sort_key(self) -> tuple[int, bytes, int]:
        return self._sort_key

    def __lt__(self, other: SocketAddress) -> bool:
        return self._sort_key < other._sort_key

    def __str__(self) -> str:
        if self.ip.version == 6:
            return f"[{self.ip}]:{self.port}"
        return f"{self.ip}:{self.port}"


@_hash_in_c
@attrs.frozen(order=False)
class NodeId:
    """Who a node is: a name, a generation that grows on each restart, an address."""

    __repr__ = fields_repr

    node_id: str
    generation: int
    gossip_addr: SocketAddress
    _sort_key: tuple[str, int, tuple[int, bytes, int]] = attrs.field(
        init=False, eq=False, repr=False
    )

    # hash(self), held for _hash_in_c.
    _hash: Callable[[], int] = attrs.field(
        init=False,
        eq=False,
        repr=False,
        default=attrs.Factory(lambda self: self._make_hash(), takes_self=True),
    )

    def __reduce__(self) -> tuple[type[NodeId], tuple[str, int, SocketAddress]]:
        # As SocketAddress.__reduce__: built anew, hashed anew.
        return (NodeId, (self.node_id, self.generation, self.gossip_addr))

    @_sort_key.default
    def _make_sort_key(self) -> tuple[str, int, tuple[int, bytes, int]]:
        # chitchat keeps nodes in a BTreeMap ordered by (node_id, generation, addr); digests
        # are written in that order, so ours must sort the same way. Comparing Python str
        # by code point matches Rust's byte-wise order of UTF-8.
        return (self.node_id, self.generation, self.gossip_addr.sort_key())

    def sort_key(self) -> tuple[str, int, tuple[int, bytes, int]]:
        return self._sort_key

    def __lt__(self, other: NodeId) -> bool:
        return self._sort_key < other._sort_key

    def __str__(self) -> str:
        return f"{self.node_id}:{self.generation}:{self.gossip_addr}"


# The key SocketAddress.__lt__ and NodeId.__lt__ compare, read in C: a sort by it puts
# either in the same order as sorting them does, with no Python call per comparison (nor
# per item, as ``key=NodeId.sort_key`` makes). Rounds and digests sort every node.
sort_key_of = operator.attrgetter("_sort_key")


def parse_seed(text: str) -> SocketAddress | tuple[str, int]:
    """A seed as an operator writes it: ``ip:port`` (a :class:`SocketAddress`), or
    ``host:port`` (the host for the node to resolve, and the port). Raise
    :class:`AddressError` for anything else. The one parser of seeds: the command line
    checks them with it, the node splits them with it."""
    try:
        return SocketAddress.parse(text)
    except AddressError:
        pass
    host, sep, port = text.strip().rpartition(":")
    if (
        not sep
        or not host
        or not port.isdigit()
        or int(port) > 0xFFFF
        or host.startswith("[") != host.endswith("]")
        or any(c.isspace() for c in host)
    ):
        raise AddressError(f"{text!r} is not a host:port address")
    return host, int(port)


class KeyStatus(enum.IntEnum):
    """Deletion state of a key; the integer is the wire code."""

    SET = 0
    DELETED = 1
    DELETE_AFTER_TTL = 2

    @property
    def label(self) -> str:
        """chitchat's name of the status (its serde name of the wire mutation): the HTTP
        API's JSON and the dashboard both show this one."""
        return _STATUS_LABELS[self][0]

    @property
    def short_label(self) -> str:
        """The dashboard's spelling: lower case, short enough for a narrow column."""
        return _STATUS_LABELS[self][1]

    @property
    def scheduled_for_deletion(self) -> bool:
        return self is not KeyStatus.SET


# The one label table of KeyStatus: (label, short label).
_STATUS_LABELS = {
    KeyStatus.SET: ("Set", "set"),
    KeyStatus.DELETED: ("Delete", "deleted"),
    KeyStatus.DELETE_AFTER_TTL: ("DeleteAfterTtl", "ttl"),
}


@attrs.frozen
class VersionedValue:
    """A value with the version its owner gave it.

    ``status_since`` is the local time at which this node learnt of a deletion status. It
    never travels on the wire and does not take part in equality: it only drives the
    local garbage collection after the grace period.
    """

    __repr__ = fields_repr

    value: str
    version: int
    status: KeyStatus = KeyStatus.SET
    status_since: float | None = attrs.field(default=None, eq=False)

    @property
    def is_deleted(self) -> bool:
        return self.status is KeyStatus.DELETED


class Liveness(enum.Enum):
    SELF = "self"
    LIVE = "live"
    DEAD = "dead"
    LEFT = "left"  # announced its own departure: dead without waiting for the detector
    SCHEDULED_FOR_DELETION = "scheduled_for_deletion"
    UNKNOWN = "unknown"  # known from a digest, but not yet judged by the failure detector


@attrs.frozen
class NodeSnapshot:
    """One node's replicated state as this node sees it, at one instant."""

    __repr__ = fields_repr

    node: NodeId
    heartbeat: int
    max_version: int
    last_gc_version: int
    key_values: Mapping[str, VersionedValue]
    liveness: Liveness
    phi: float | None = None
    # Local time (the node's clock) we last saw its heartbeat rise: when we last heard
    # from the node itself (None: never since we learnt of it).
    last_update: float | None = None
    # Local time this node (this generation) was first learnt.
    discovered_at: float | None = None

    def visible_items(self) -> dict[str, str]:
        """Keys that are not deleted, with their values."""
        return {k: v.value for k, v in self.key_values.items() if not v.is_deleted}


@attrs.frozen
class ClusterSnapshot:
    """Everything a dashboard or the HTTP API shows, at one instant."""

    __repr__ = fields_repr

    cluster_id: str
    self_node: NodeId
    nodes: tuple[NodeSnapshot, ...]
    seed_addrs: tuple[SocketAddress, ...] = ()
    taken_at: float = 0.0

    @property
    def live_nodes(self) -> tuple[NodeId, ...]:
        return tuple(n.node for n in self.nodes if n.liveness in (Liveness.SELF, Liveness.LIVE))

    @property
    def dead_nodes(self) -> tuple[NodeId, ...]:
        return tuple(
            n.node
            for n in self.nodes
            if n.liveness in (Liveness.DEAD, Liveness.LEFT, Liveness.SCHEDULED_FOR_DELETION)
        )

    def node(self, node: NodeId) -> NodeSnapshot | None:
        for snapshot in self.nodes:
            if snapshot.node == node:
                return snapshot
        return None
