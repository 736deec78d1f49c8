"""Dashboard widgets, one module per part of the screen."""

from gossip_tui.ui.widgets.cluster_header import ClusterHeader
from gossip_tui.ui.widgets.event_log import EventLog, LiveHistory
from gossip_tui.ui.widgets.local_keys import LocalKeys
from gossip_tui.ui.widgets.node_detail import NodeDetail
from gossip_tui.ui.widgets.nodes_table import NodeFilter, NodesTable

__all__ = [
    "ClusterHeader",
    "EventLog",
    "LiveHistory",
    "LocalKeys",
    "NodeDetail",
    "NodeFilter",
    "NodesTable",
]
