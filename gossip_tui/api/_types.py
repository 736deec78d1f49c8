"""What the HTTP API needs from a node, and the ASGI callable types."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import trio

from gossip_tui.core.models import ClusterSnapshot, NodeId
from gossip_tui.node import NodeEvent, NodeStats

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ApiNode(Protocol):
    """The part of :class:`gossip_tui.node.Node` the HTTP API uses (synchronous but for
    ``flush``).

    ``set`` and ``set_with_ttl`` may raise ValueError for a key-value the node refuses
    (``gossip_tui.node.KeyValueTooLarge`` when it is too large to gossip). ``flush``
    returns once the changes made so far are durable, or raises
    ``gossip_tui.node.KeysNotSaved``.
    """

    @property
    def self_id(self) -> NodeId: ...

    @property
    def stats(self) -> NodeStats: ...

    # ``ttl``: seconds the key lives (ValueError, ``InvalidTtl``, for a bad one).
    def set(self, key: str, value: str, *, ttl: float | None = None) -> None: ...

    # Key -> deadline, in the clock snapshots are taken at, of the keys that expire.
    def key_expiries(self) -> Mapping[str, float]: ...

    def set_with_ttl(self, key: str, value: str) -> None: ...

    # The runtime answers whether the key existed; the API does not rely on it.
    def delete(self, key: str) -> object: ...

    def delete_after_ttl(self, key: str) -> object: ...

    def snapshot(self) -> ClusterSnapshot: ...

    # Drops a dead or left node from the node's view; False when unknown; raises
    # ValueError (``gossip_tui.node.NodeIsLive``) for a live one.
    def forget(self, node: NodeId) -> bool: ...

    def subscribe(
        self, prefix: str = "", max_buffer: int = 1_000
    ) -> trio.MemoryReceiveChannel[NodeEvent]: ...

    async def flush(self) -> None: ...
