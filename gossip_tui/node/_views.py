"""A running node's cluster-wide readings: how far its own keys have travelled, and which
nodes agree on the membership (gossip_tui.core.agreement). Read from the digests peers
send anyway (the receive loop notes each one): no traffic of their own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gossip_tui.core.agreement import VIEW_KEY, summarize
from gossip_tui.core.models import Liveness

from ._node_base import NodeBase

# The readings' module is built on the first reading (a node's start takes none).
if TYPE_CHECKING:
    from gossip_tui.core.readings import AgreementReading, PropagationReading


class NodeViews(NodeBase):
    """The readings; the table behind them is fed by _loops."""

    def propagation(self) -> PropagationReading:
        """Each local key with the live peers that hold its version, by their digests."""
        from gossip_tui.core.readings import read_propagation

        engine, now = self.engine, self._now()
        own = engine.self_state.key_values
        return read_propagation(
            engine.self_id, own, engine.live_nodes(), self._peer_views.reports, now
        )

    def agreement(self) -> AgreementReading:
        """Live and dead nodes grouped by the membership view they hold (left nodes and
        those about to be forgotten hold none worth showing)."""
        from gossip_tui.core.readings import read_agreement

        engine = self.engine
        readings = engine.liveness_readings(self._now())
        shown = {Liveness.SELF: True, Liveness.LIVE: True, Liveness.DEAD: False}
        nodes = [(r.node, shown[r.liveness]) for r in readings.nodes if r.liveness in shown]
        states = engine.state
        published = {}
        for node, _live in nodes:
            state = states.node_state(node)
            published[node] = None if state is None else state.get(VIEW_KEY)
        return read_agreement(
            engine.self_id,
            nodes,
            published,
            self._peer_views.digest_views,
            summarize(engine.live_nodes()),
            readings.taken_at,
        )
