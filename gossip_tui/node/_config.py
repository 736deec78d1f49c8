"""The node's settings: defined in :mod:`gossip_tui.core.node_config` (pure data)."""

from gossip_tui.core.node_config import (
    DEFAULT_LISTEN_ADDR,
    NodeConfig,
    default_node_id,
    random_words,
)

__all__ = ["DEFAULT_LISTEN_ADDR", "NodeConfig", "default_node_id", "random_words"]
