"""The bodies the HTTP API sends and receives, as attrs records.

They are turned into JSON by :data:`gossip_tui.core.converter.converter` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import attrs

from gossip_tui.core.fields_repr import fields_repr
from gossip_tui.core.generations import Restart
from gossip_tui.core.models import (
    ClusterSnapshot,
    KeyStatus,
    Liveness,
    NodeId,
    NodeSnapshot,
    VersionedValue,
)


@attrs.frozen
class ClusterStateView:
    """``GET /``: chitchat-test's ``ApiResponse``."""

    __repr__ = fields_repr

    cluster_id: str
    cluster_state: ClusterSnapshot
    live_nodes: tuple[NodeId, ...]
    dead_nodes: tuple[NodeId, ...]

    @classmethod
    def of(cls, snapshot: ClusterSnapshot) -> ClusterStateView:
        return cls(
            cluster_id=snapshot.cluster_id,
            cluster_state=snapshot,
            live_nodes=tuple(sorted(snapshot.live_nodes)),
            dead_nodes=tuple(sorted(snapshot.dead_nodes)),
        )


@attrs.frozen
class StatusView:
    """chitchat-test's ``SetKeyValueResponse``."""

    __repr__ = fields_repr

    status: bool = True


@attrs.frozen
class ErrorView:
    __repr__ = fields_repr
    error: str


@attrs.frozen
class RestartView:
    """The live generation of a node id replaced an older one that is still known."""

    __repr__ = fields_repr

    previous_generation: int
    # Seconds since the new generation was first heard of (None: unknown).
    seconds_since_restart: float | None

    @classmethod
    def of(cls, restart: Restart, taken_at: float) -> RestartView:
        since = None if restart.at is None else max(0.0, taken_at - restart.at)
        return cls(previous_generation=restart.previous.generation, seconds_since_restart=since)


@attrs.frozen
class NodeSummary:
    __repr__ = fields_repr
    chitchat_id: NodeId
    is_self: bool
    liveness: Liveness
    phi: float | None
    heartbeat: int
    max_version: int
    last_gc_version: int
    key_count: int  # keys that are not deleted
    # Seconds since its heartbeat last rose: since we last heard from the node itself
    # (None: never since we learnt of it).
    seconds_since_update: float | None
    restarted: RestartView | None = None

    @classmethod
    def of(
        cls,
        node: NodeSnapshot,
        self_node: NodeId,
        taken_at: float,
        restart: Restart | None = None,
    ) -> NodeSummary:
        since = None if node.last_update is None else max(0.0, taken_at - node.last_update)
        return cls(
            chitchat_id=node.node,
            is_self=node.node == self_node,
            liveness=node.liveness,
            phi=node.phi,
            heartbeat=node.heartbeat,
            max_version=node.max_version,
            last_gc_version=node.last_gc_version,
            key_count=sum(1 for v in node.key_values.values() if not v.is_deleted),
            seconds_since_update=since,
            restarted=None if restart is None else RestartView.of(restart, taken_at),
        )


@attrs.frozen
class NodeListView:
    """``GET /nodes``."""

    __repr__ = fields_repr

    cluster_id: str
    self_node: NodeId
    nodes: tuple[NodeSummary, ...]


@attrs.frozen
class ExpiryView:
    """When a local key set with a duration expires: ``expires_at`` in UTC (ISO 8601,
    milliseconds) and ``expires_in`` seconds from the answer (0 once due: the node
    deletes it at its next round)."""

    __repr__ = fields_repr

    expires_at: str
    expires_in: float

    @classmethod
    def of(cls, deadline: float, taken_at: float, wall_now: float) -> ExpiryView:
        left = max(0.0, deadline - taken_at)
        moment = datetime.fromtimestamp(wall_now + left, UTC)
        return cls(
            expires_at=moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            expires_in=round(left, 3),
        )


@attrs.frozen
class NodeDetailView:
    """``GET /nodes/{node_id}``: a summary and every key-value, tombstones included;
    ``expiries`` for the keys of this node that expire (empty for peers: no deadline
    travels on the wire)."""

    __repr__ = fields_repr

    node: NodeSummary
    key_values: Mapping[str, VersionedValue]
    expiries: Mapping[str, ExpiryView] = attrs.field(factory=dict)


@attrs.frozen
class KeyListView:
    """``GET /keys``: the local node's keys that are not deleted, and the expiries of
    those set with a duration."""

    __repr__ = fields_repr

    chitchat_id: NodeId
    keys: Mapping[str, VersionedValue]
    expiries: Mapping[str, ExpiryView] = attrs.field(factory=dict)


@attrs.frozen
class KeyView:
    """``GET /keys/{key}``; ``expires_at``/``expires_in`` are None for a key that does
    not expire."""

    __repr__ = fields_repr

    key: str
    value: str
    version: int
    status: KeyStatus
    expires_at: str | None = None
    expires_in: float | None = None


@attrs.frozen
class PutKeyBody:
    """``PUT /keys/{key}`` with a JSON body. ``ttl``: a number of seconds the key lives,
    or true for chitchat's delete-after-grace-period mark (false: none)."""

    __repr__ = fields_repr

    value: str
    ttl: bool | float = False


@attrs.frozen
class KeyWrittenView:
    """Answer to ``PUT /keys/{key}``: ``ttl`` as asked, and when the key expires."""

    __repr__ = fields_repr

    key: str
    value: str
    ttl: bool | float
    status: bool = True
    expires_at: str | None = None
    expires_in: float | None = None


@attrs.frozen
class KeyDeletedView:
    """Answer to ``DELETE /keys/{key}``."""

    __repr__ = fields_repr

    key: str
    after_ttl: bool
    status: bool = True


@attrs.frozen
class HealthView:
    """``GET /health``."""

    __repr__ = fields_repr

    status: str
    cluster_id: str
    chitchat_id: NodeId
    live_nodes: int
    # Gone without a word (the failure detector's verdict); older generations of a node
    # live again are not counted.
    dead_nodes: int
    # Announced their departure.
    left_nodes: int


@attrs.frozen
class ForgottenView:
    """Answer to ``DELETE /nodes/{node_id}``."""

    __repr__ = fields_repr

    forgotten: tuple[NodeId, ...]
    status: bool = True
