"""Typed events a node publishes when the cluster changes (defined in the core, with the
rule that turns an engine step into them: :mod:`gossip_tui.core.events`)."""

from gossip_tui.core.events import (
    KeyChanged,
    KeyDeleted,
    NodeDead,
    NodeEvent,
    NodeJoined,
    NodeLeft,
    NodeRemoved,
    NodeUpdated,
    SeedAnswered,
    SeedUnreachable,
)

__all__ = [
    "KeyChanged",
    "KeyDeleted",
    "NodeDead",
    "NodeEvent",
    "NodeJoined",
    "NodeLeft",
    "NodeRemoved",
    "NodeUpdated",
    "SeedAnswered",
    "SeedUnreachable",
]
