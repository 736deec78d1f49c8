"""Nodes counted by liveness as ``GET /health`` and ``GET /metrics`` report them.

Apart from the response records (gossip_tui.api._records): ``/health`` is the first
request a fresh node gets (from its supervisor or a load balancer), and it is answered
without importing those records or building the converter.
"""

from __future__ import annotations

from collections import Counter

import attrs

from gossip_tui.core.fields_repr import fields_repr
from gossip_tui.core.generations import superseded_in
from gossip_tui.core.models import ClusterSnapshot, Liveness

__all__ = ["NodeCounts"]


@attrs.frozen
class NodeCounts:
    """Nodes by what an operator calls them: older generations of a restarted node, live
    again, are the same node and not counted apart."""

    __repr__ = fields_repr

    live: int
    dead: int
    left: int

    @classmethod
    def of(cls, snapshot: ClusterSnapshot) -> NodeCounts:
        folded = superseded_in(snapshot.nodes)
        by_liveness = Counter(n.liveness for n in snapshot.nodes if n.node not in folded)
        return cls(
            live=by_liveness[Liveness.SELF] + by_liveness[Liveness.LIVE],
            dead=by_liveness[Liveness.DEAD] + by_liveness[Liveness.SCHEDULED_FOR_DELETION],
            left=by_liveness[Liveness.LEFT],
        )
