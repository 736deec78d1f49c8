"""The Textual dashboard for a gossip node.

``run_dashboard(config)`` opens the node and shows it; ``run_demo(nodes, config)`` does the
same with ``nodes - 1`` extra in-process peers to watch. Both take the node factory as a
parameter (default: ``gossip_tui.node.open_node``) and return the process exit code.
"""

from gossip_tui.ui.app import GossipApp, run_dashboard, run_demo
from gossip_tui.ui.demo import DemoCluster

__all__ = ["DemoCluster", "GossipApp", "run_dashboard", "run_demo"]
