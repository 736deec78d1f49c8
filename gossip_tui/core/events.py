"""Typed events a node publishes when the cluster changes, and how an engine step turns
into them (pure: the runtime publishes them, the simulation may read them)."""

from __future__ import annotations

from typing import Literal

import attrs

from .engine import Step, SweepStep
from .fields_repr import fields_repr
from .models import KeyStatus, NodeId, SocketAddress
from .state import KeyChange, StateChange, VersionChange


@attrs.frozen
class NodeJoined:
    """A node became live (for the first time, or again after being dead)."""

    __repr__ = fields_repr

    node: NodeId


@attrs.frozen
class NodeDead:
    """A live node was declared dead: the failure detector gave up on it, or it left."""

    __repr__ = fields_repr

    node: NodeId


@attrs.frozen
class NodeLeft:
    """A node announced its departure (its leaving marker arrived): it left gracefully.
    A NodeDead follows at the next liveness sweep, as for any node no longer live."""

    __repr__ = fields_repr

    node: NodeId


@attrs.frozen
class NodeRemoved:
    """A dead node was forgotten after the dead-node grace period."""

    __repr__ = fields_repr

    node: NodeId


@attrs.frozen
class NodeUpdated:
    """A node's state moved on: its max version changed."""

    __repr__ = fields_repr

    node: NodeId
    max_version: int


@attrs.frozen
class KeyChanged:
    """A key of ``node`` got a new value (set, set with TTL, or marked delete-after-TTL);
    ``status`` says which (SET or DELETE_AFTER_TTL, as on the wire: a ttl in seconds is
    the owner's own and reads SET)."""

    __repr__ = fields_repr

    node: NodeId
    key: str
    value: str
    version: int
    status: KeyStatus = KeyStatus.SET


# Why a key was deleted: "deleted" (by a delete, or as a peer reports it: the wire says
# no more) or "expired" (this node's own key reached its deadline, see core.expiry).
DeleteReason = Literal["deleted", "expired"]


@attrs.frozen
class KeyDeleted:
    """A key of ``node`` was deleted (a tombstone arrived, or this node's key expired)."""

    __repr__ = fields_repr

    node: NodeId
    key: str
    version: int
    reason: DeleteReason = "deleted"


@attrs.frozen
class SeedUnreachable:
    """A seed has not answered the last few Syns we sent it (or is not reachable at all)."""

    __repr__ = fields_repr

    addr: SocketAddress
    unanswered: int


@attrs.frozen
class SeedAnswered:
    """A seed reported unreachable answered again."""

    __repr__ = fields_repr

    addr: SocketAddress


NodeEvent = (
    NodeJoined
    | NodeLeft
    | NodeDead
    | NodeRemoved
    | NodeUpdated
    | KeyChanged
    | KeyDeleted
    | SeedUnreachable
    | SeedAnswered
)


def change_events(changes: tuple[StateChange, ...] | list[StateChange]) -> list[NodeEvent]:
    """A key event per key change, in order, then one NodeUpdated per node that moved
    (at its latest max version)."""
    events: list[NodeEvent] = []
    latest_version: dict[NodeId, int] = {}
    for change in changes:
        if isinstance(change, VersionChange):
            latest_version[change.node] = change.max_version
        elif isinstance(change, KeyChange):
            value = change.value
            if value is None or value.is_deleted:
                version = 0 if value is None else value.version
                events.append(KeyDeleted(change.node, change.key, version))
            else:
                events.append(
                    KeyChanged(change.node, change.key, value.value, value.version, value.status)
                )
    events.extend(NodeUpdated(node, version) for node, version in latest_version.items())
    return events


def step_events(step: Step) -> list[NodeEvent]:
    """The events of one engine step: liveness first (a sweep), then the state's changes,
    then the departures the step saw (after the marker's own key event)."""
    if not step.changes and not step.departures and not isinstance(step, SweepStep):
        return []  # most received messages only move heartbeats: nothing to build
    events: list[NodeEvent] = []
    if isinstance(step, SweepStep):
        events.extend(NodeJoined(node) for node in step.liveness.joined)
        events.extend(NodeDead(node) for node in step.liveness.died)
        events.extend(NodeRemoved(node) for node in step.liveness.removed)
    events.extend(change_events(step.changes))
    events.extend(NodeLeft(node) for node in step.departures)
    return events
