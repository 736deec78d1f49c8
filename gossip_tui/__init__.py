"""gossip-tui: gossip membership speaking chitchat's protocol, as a Trio library, a
headless node with an HTTP API, and a Textual dashboard.

The public surface is re-exported here lazily, so that importing the pure core (or the
CLI for ``--help``) does not pull in Trio or Textual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "open_node": "gossip_tui.node",
    "Node": "gossip_tui.node",
    "NodeConfig": "gossip_tui.node",
    "NodeStats": "gossip_tui.node",
    "NodeEvent": "gossip_tui.node",
    "NodeJoined": "gossip_tui.node",
    "NodeDead": "gossip_tui.node",
    "NodeLeft": "gossip_tui.node",
    "NodeRemoved": "gossip_tui.node",
    "NodeUpdated": "gossip_tui.node",
    "KeyChanged": "gossip_tui.node",
    "KeyDeleted": "gossip_tui.node",
    "KeyValueTooLarge": "gossip_tui.node",
    "FailureDetectorConfig": "gossip_tui.core.failure_detector",
    "GossipTuiError": "gossip_tui.core.errors",
    "NodeId": "gossip_tui.core.models",
    "SocketAddress": "gossip_tui.core.models",
    "KeyStatus": "gossip_tui.core.models",
    "VersionedValue": "gossip_tui.core.models",
    "Liveness": "gossip_tui.core.models",
    "NodeSnapshot": "gossip_tui.core.models",
    "ClusterSnapshot": "gossip_tui.core.models",
}

__all__ = [
    "ClusterSnapshot",
    "FailureDetectorConfig",
    "GossipTuiError",
    "KeyChanged",
    "KeyDeleted",
    "KeyStatus",
    "KeyValueTooLarge",
    "Liveness",
    "Node",
    "NodeConfig",
    "NodeDead",
    "NodeEvent",
    "NodeId",
    "NodeJoined",
    "NodeLeft",
    "NodeRemoved",
    "NodeSnapshot",
    "NodeStats",
    "NodeUpdated",
    "SocketAddress",
    "VersionedValue",
    "open_node",
]

if TYPE_CHECKING:
    from gossip_tui.core.errors import GossipTuiError
    from gossip_tui.core.failure_detector import FailureDetectorConfig
    from gossip_tui.core.models import (
        ClusterSnapshot,
        KeyStatus,
        Liveness,
        NodeId,
        NodeSnapshot,
        SocketAddress,
        VersionedValue,
    )
    from gossip_tui.node import (
        KeyChanged,
        KeyDeleted,
        KeyValueTooLarge,
        Node,
        NodeConfig,
        NodeDead,
        NodeEvent,
        NodeJoined,
        NodeLeft,
        NodeRemoved,
        NodeStats,
        NodeUpdated,
        open_node,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gossip_tui' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
