"""A stand-in for ``gossip_tui.node.open_node``: a node that gossips nothing.

It has what the headless command uses (``self_id``, ``gossip_addr``, ``live_nodes``,
``get``, ``start_service``) and what the HTTP API reads (``snapshot`` and the setters).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from gossip_tui.core.models import (
    ClusterSnapshot,
    Liveness,
    NodeId,
    NodeSnapshot,
    SocketAddress,
    VersionedValue,
)


class FakeRuntimeNode:
    def __init__(self, nursery: trio.Nursery, gossip_addr: SocketAddress) -> None:
        self._nursery = nursery
        self.gossip_addr = gossip_addr
        self.http_addr: SocketAddress | None = None
        self.self_id = NodeId("fake-0", 1, gossip_addr)
        self.peer = NodeId("fake-1", 1, SocketAddress.parse("127.0.0.1:1"))
        self.keys: dict[str, str] = {"bind": str(gossip_addr)}
        self.services: list[Any] = []
        self._event_senders: list[Any] = []

    def live_nodes(self) -> list[NodeId]:
        return [self.peer, self.self_id]

    def get(self, key: str, node: NodeId | None = None) -> str | None:
        if node is None or node == self.self_id:
            return self.keys.get(key)
        return None

    def set(self, key: str, value: str) -> None:
        self.keys[key] = value

    def set_with_ttl(self, key: str, value: str) -> None:
        self.keys[key] = value

    def delete(self, key: str) -> None:
        self.keys.pop(key, None)

    def delete_after_ttl(self, key: str) -> None:
        self.keys.pop(key, None)

    def snapshot(self) -> ClusterSnapshot:
        own = NodeSnapshot(
            node=self.self_id,
            heartbeat=1,
            max_version=len(self.keys),
            last_gc_version=0,
            key_values={k: VersionedValue(v, 1) for k, v in self.keys.items()},
            liveness=Liveness.SELF,
        )
        return ClusterSnapshot("testing", self.self_id, (own,))

    def subscribe(self, prefix: str = "", max_buffer: int = 1_000) -> Any:
        # No event ever comes: the fake's membership never changes.
        _send, receive = trio.open_memory_channel[Any](max_buffer)
        self._event_senders.append(_send)
        return receive

    async def start_service(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        self.services.append(async_fn)
        return await self._nursery.start(async_fn, *args)


@asynccontextmanager
async def fake_open_node(config: Any) -> AsyncIterator[FakeRuntimeNode]:
    async with trio.open_nursery() as nursery:
        yield FakeRuntimeNode(nursery, config.listen_addr)
        nursery.cancel_scope.cancel()
