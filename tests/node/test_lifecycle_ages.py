"""How long ago a node was heard from: the time its heartbeat last rose, not the time our
view of it changed (the pure engine, time passed in)."""

from __future__ import annotations

from gossip_tui.core.engine import GossipEngine
from gossip_tui.core.messages import Digest, NodeDigest, Syn
from gossip_tui.core.models import NodeId, SocketAddress

ME = NodeId("fresh", 1, SocketAddress.parse("127.0.0.1:7001"))
RELAY = NodeId("relay", 1, SocketAddress.parse("127.0.0.1:7002"))
GONE = NodeId("gone", 1, SocketAddress.parse("127.0.0.1:7003"))


def _syn(gone_heartbeat: int, relay_heartbeat: int) -> Syn:
    return Syn(
        "testing",
        Digest(
            {
                RELAY: NodeDigest(relay_heartbeat, 0, 0),
                GONE: NodeDigest(gone_heartbeat, 0, 0),
            }
        ),
    )


def test_a_node_learnt_from_a_peer_has_not_been_heard_until_its_heartbeat_rises() -> None:
    engine = GossipEngine(ME, "testing", now=0.0)
    # A fresh node learns of "gone", dead for minutes elsewhere, from a relay's digest.
    engine.handle_message(_syn(gone_heartbeat=40, relay_heartbeat=5), 100.0)
    gone = engine.snapshot(111.0).node(GONE)
    assert gone is not None and gone.last_update is None  # never heard: not "11 s ago"
    assert gone.discovered_at == 100.0
    # The relay echoes the same heartbeat: still nothing heard from "gone" itself.
    engine.handle_message(_syn(gone_heartbeat=40, relay_heartbeat=6), 105.0)
    gone = engine.snapshot(111.0).node(GONE)
    assert gone is not None and gone.last_update is None
    # Its heartbeat rises: now it was heard.
    engine.handle_message(_syn(gone_heartbeat=41, relay_heartbeat=7), 108.0)
    gone = engine.snapshot(111.0).node(GONE)
    assert gone is not None and gone.last_update == 108.0
