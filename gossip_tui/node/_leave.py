"""A running node's graceful leave: the marker gossiped to every live peer, bounded."""

from __future__ import annotations

import logging

import trio

from ._node_base import NodeBase

log = logging.getLogger("gossip_tui.node")


class NodeLeave(NodeBase):
    """:meth:`leave`, which ``open_node`` calls on the way out."""

    async def leave(self) -> None:
        """Announce our departure to the live peers and wait (bounded) until each has
        fetched it: a Syn to each, whose SynAck we answer with an Ack holding the marker."""
        self.engine.announce_leave()
        # Our own marker is for peers, no news for our subscribers (the node is closing).
        self.engine.drain_changes()
        me = self.engine.self_id
        peers = {node.gossip_addr for node in self.engine.live_nodes() if node != me}
        if not peers:
            return
        self._leave_pending = set(peers)
        self._leave_done = trio.Event()
        with trio.move_on_after(self.config.leave_timeout):
            syn = self.engine.create_syn(self._now())
            for addr in peers:
                await self._send(syn, addr)
            await self._leave_done.wait()
