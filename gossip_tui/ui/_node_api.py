"""The slice of the node runtime the dashboard relies on.

The dashboard is written against the node contract rather than the runtime's classes, so tests
can hand it an in-memory fake and the runtime can evolve behind it. This is the only module of
gossip_tui.ui that names gossip_tui.node.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeAlias

import trio

from gossip_tui.core.agreement import AgreementReading, PropagationReading
from gossip_tui.core.engine import LivenessReadings
from gossip_tui.core.models import NodeId, NodeSnapshot, SocketAddress
from gossip_tui.node import (
    KeyChanged,
    KeyDeleted,
    NodeDead,
    NodeEvent,
    NodeIsLive,
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
    "NodeFactory",
    "NodeHandle",
    "NodeIsLive",
    "NodeJoined",
    "NodeLeft",
    "NodeRemoved",
    "NodeUpdated",
    "SeedAnswered",
    "SeedUnreachable",
]


class NodeHandle(Protocol):
    """What the dashboard uses of a running node (see the node contract)."""

    @property
    def self_id(self) -> NodeId: ...

    @property
    def cluster_id(self) -> str: ...

    @property
    def gossip_addr(self) -> SocketAddress: ...

    # Settable: the HTTP API's serving helper records where it answers.
    http_addr: SocketAddress | None

    def set(self, key: str, value: str, *, ttl: float | None = None) -> None: ...

    def key_expiries(self) -> Mapping[str, float]:
        """Key -> deadline (the clock readings are taken at) of this node's keys set with
        a ttl in seconds: read every tick, for the countdowns."""

    def set_with_ttl(self, key: str, value: str) -> None: ...

    def delete(self, key: str) -> object: ...

    def forget(self, node: NodeId) -> bool:
        """Drop a dead or left node from this node's view now; False when it is unknown.
        Raises NodeIsLive (a ValueError) for a live node or this one."""

    def liveness_readings(self) -> LivenessReadings:
        """Every node's liveness, heartbeat and phi (no key-values): taken every tick."""

    def node_snapshot(self, node: NodeId) -> NodeSnapshot | None:
        """One node's full state, key-values included: read when it is shown in full."""

    def propagation(self) -> PropagationReading:
        """Each local key with the live peers holding its version (from their digests)."""

    def agreement(self) -> AgreementReading:
        """The nodes grouped by the membership view they hold."""

    def subscribe(
        self, prefix: str = "", max_buffer: int = 1000
    ) -> trio.MemoryReceiveChannel[NodeEvent]: ...

    async def start_service(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """``nursery.start(async_fn, *args)`` in the node's nursery."""


# The config is whatever the factory takes: the runtime's NodeConfig, or a test double. Any keeps
# `open_node(config: NodeConfig)` assignable here without the ui importing the config class.
NodeFactory: TypeAlias = Callable[[Any], AbstractAsyncContextManager[NodeHandle]]


def default_node_factory() -> NodeFactory:
    """The real runtime's ``open_node``, imported only when a dashboard starts Trio."""
    from gossip_tui.node import open_node

    factory: NodeFactory = open_node
    return factory
