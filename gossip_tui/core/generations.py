"""Generations of one node id: a restarted node is a new node on the wire (same name, a
higher generation), and the old one lingers as dead until the dead-node grace period is
over. Operators think of both as one node that restarted: these helpers fold them."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from .fields_repr import fields_repr
from .models import Liveness, NodeId, NodeSnapshot

_LIVE = (Liveness.SELF, Liveness.LIVE)


@attrs.frozen
class Restart:
    """``current`` is a live generation of a node id of which ``previous`` (the newest
    older generation still known) is an earlier incarnation."""

    __repr__ = fields_repr

    previous: NodeId
    current: NodeId
    # Local time ``current`` was first learnt: when we saw the node come back.
    at: float | None


def superseded(nodes: Iterable[NodeId], is_live: Callable[[NodeId], bool]) -> dict[NodeId, NodeId]:
    """Each generation older than a live generation of the same node id, mapped to the
    newest live one. Only a live newer generation folds an old one: anyone can gossip a
    made-up generation of a real name, which stays a ghost until it beats."""
    newest_live: dict[str, NodeId] = {}
    by_name: dict[str, list[NodeId]] = {}
    for node in nodes:
        by_name.setdefault(node.node_id, []).append(node)
        if is_live(node):
            known = newest_live.get(node.node_id)
            if known is None or known.generation < node.generation:
                newest_live[node.node_id] = node
    folded: dict[NodeId, NodeId] = {}
    for name, live in newest_live.items():
        for node in by_name[name]:
            if node.generation < live.generation:
                folded[node] = live
    return folded


def superseded_in(nodes: Iterable[NodeSnapshot]) -> dict[NodeId, NodeId]:
    """:func:`superseded` over a snapshot's nodes."""
    snapshots = list(nodes)
    live = {n.node for n in snapshots if n.liveness in _LIVE}
    return superseded((n.node for n in snapshots), live.__contains__)


def restarts_in(nodes: Iterable[NodeSnapshot]) -> dict[NodeId, Restart]:
    """For each live generation that folds older ones, the restart it stands for."""
    snapshots = {n.node: n for n in nodes}
    restarts: dict[NodeId, Restart] = {}
    for old, current in superseded_in(snapshots.values()).items():
        known = restarts.get(current)
        if known is None or known.previous.generation < old.generation:
            restarts[current] = Restart(old, current, snapshots[current].discovered_at)
    return restarts
