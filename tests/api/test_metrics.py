"""GET /metrics: Prometheus text with the node's counters and each peer's phi."""

from __future__ import annotations

import re

from gossip_tui.api import make_app
from gossip_tui.core.models import Liveness, NodeId, NodeSnapshot, SocketAddress

from .asgi_client import call
from .helpers import api_node

_SAMPLE = re.compile(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+Inf]+$')


def test_metrics_are_valid_prometheus_text() -> None:
    node = api_node()
    peer = NodeId("peer-1", 3, SocketAddress.parse("127.0.0.1:10001"))
    node.cluster.put(NodeSnapshot(peer, 12, 4, 0, {}, Liveness.LIVE, phi=1.25, last_update=None))
    node.stats.datagrams_in = 42
    node.stats.bytes_out = 999
    node.stats.dropped["malformed"] = 3
    node.stats.dropped["over_limit"] = 1
    node.stats.heartbeat_outruns = 2
    node.stats.small_replies = 5
    response = call(make_app(node), "GET", "/metrics")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.body.decode()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert all(_SAMPLE.match(line) for line in lines), [
        line for line in lines if not _SAMPLE.match(line)
    ]
    assert "gossip_tui_datagrams_received_total 42" in lines
    assert "gossip_tui_bytes_sent_total 999" in lines
    assert "gossip_tui_heartbeat_outruns_total 2" in lines
    assert "gossip_tui_small_replies_total 5" in lines
    assert 'gossip_tui_dropped_total{reason="malformed"} 3' in lines
    assert 'gossip_tui_dropped_total{reason="over_limit"} 1' in lines
    assert "gossip_tui_live_nodes 2" in lines
    assert 'gossip_tui_phi{node_id="peer-1"} 1.25' in lines
    # Every family is declared once, before its samples.
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(types) == len(set(types))
    for line in lines:
        family = line.split("{")[0].split()[0]
        assert text.index(f"# TYPE {family} ") < text.index(line)
