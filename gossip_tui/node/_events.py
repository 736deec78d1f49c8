"""Typed events a node publishes when the cluster changes."""

from __future__ import annotations

import attrs

from gossip_tui.core.models import NodeId, SocketAddress


@attrs.frozen
class NodeJoined:
    """A node became live (for the first time, or again after being dead)."""

    node: NodeId


@attrs.frozen
class NodeLeft:
    """A live node was declared dead by the failure detector."""

    node: NodeId


@attrs.frozen
class NodeRemoved:
    """A dead node was forgotten after the dead-node grace period."""

    node: NodeId


@attrs.frozen
class NodeUpdated:
    """A node's state moved on: its max version changed."""

    node: NodeId
    max_version: int


@attrs.frozen
class KeyChanged:
    """A key of ``node`` got a new value (set, set with TTL, or marked delete-after-TTL)."""

    node: NodeId
    key: str
    value: str
    version: int


@attrs.frozen
class KeyDeleted:
    """A key of ``node`` was deleted (a tombstone arrived)."""

    node: NodeId
    key: str
    version: int


@attrs.frozen
class SeedUnreachable:
    """A seed has not answered the last few Syns we sent it (or is not reachable at all)."""

    addr: SocketAddress
    unanswered: int


@attrs.frozen
class SeedAnswered:
    """A seed reported unreachable answered again."""

    addr: SocketAddress


NodeEvent = (
    NodeJoined
    | NodeLeft
    | NodeRemoved
    | NodeUpdated
    | KeyChanged
    | KeyDeleted
    | SeedUnreachable
    | SeedAnswered
)
