"""Helpers for fault tests: nodes that can be stopped one by one, event logs with times."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterable

import pytest
import trio

from gossip_tui.core.failure_detector import FailureDetectorConfig
from gossip_tui.core.models import NodeId, SocketAddress
from gossip_tui.node import DatagramSocket, Node, NodeConfig, NodeEvent, Transport, open_node


def memory_addr(index: int, base_port: int) -> SocketAddress:
    return SocketAddress.parse(f"127.0.0.1:{base_port + index}")


def node_config(
    index: int,
    listen: SocketAddress,
    *,
    seeds: Iterable[SocketAddress] = (),
    interval: float = 1.0,
    detector: FailureDetectorConfig | None = None,
    generation: int = 1,
    public: SocketAddress | None = None,
) -> NodeConfig:
    """A node as an operator would run it: chitchat's failure detector defaults unless
    told otherwise, and no goodbye when it stops (a crash, not a clean leave)."""
    return NodeConfig(
        listen_addr=listen,
        public_addr=public,
        node_id=f"node-{index}",
        generation=generation,
        seeds=tuple(str(s) for s in seeds),
        gossip_interval=interval,
        failure_detector=detector or FailureDetectorConfig(),
        announce_leave=False,
    )


class NodeHandle:
    """A node running in its own task, which :meth:`stop` ends (like a kill -9)."""

    def __init__(self, node: Node, scope: trio.CancelScope, closed: trio.Event) -> None:
        self.node = node
        self._scope = scope
        self._closed = closed

    async def stop(self) -> None:
        self._scope.cancel()
        await self._closed.wait()


async def _run_node(
    config: NodeConfig,
    transport: Transport,
    rng_seed: int | None,
    task_status: trio.TaskStatus[NodeHandle],
) -> None:
    closed = trio.Event()
    try:
        with trio.CancelScope() as scope:
            async with open_node(config, transport=transport) as node:
                if rng_seed is not None:
                    # Target choice from a fixed seed: the network's faults are seeded too.
                    node.engine.rng = random.Random(rng_seed)
                task_status.started(NodeHandle(node, scope, closed))
                await trio.sleep_forever()
    finally:
        closed.set()


async def start_node(
    nursery: trio.Nursery,
    config: NodeConfig,
    transport: Transport,
    rng_seed: int | None = None,
) -> NodeHandle:
    handle: NodeHandle = await nursery.start(_run_node, config, transport, rng_seed)
    return handle


class EventLog:
    """Every event one node publishes, with the (virtual) time it was read."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.events: list[tuple[float, NodeEvent]] = []
        self._channel = node.subscribe(max_buffer=100_000)

    async def run(self) -> None:
        async for event in self._channel:
            self.events.append((trio.current_time(), event))

    def times_of(self, event: NodeEvent) -> list[float]:
        return [at for at, seen in self.events if seen == event]

    def of_type(self, kind: type) -> list[tuple[float, NodeEvent]]:
        return [(at, event) for at, event in self.events if isinstance(event, kind)]


def attach_logs(nursery: trio.Nursery, nodes: Iterable[Node]) -> list[EventLog]:
    logs = [EventLog(node) for node in nodes]
    for log in logs:
        nursery.start_soon(log.run)
    return logs


def sees_live(node: Node, ids: Iterable[NodeId]) -> bool:
    return set(ids) <= set(node.live_nodes())


def exactly_live(node: Node, ids: Iterable[NodeId]) -> bool:
    return set(node.live_nodes()) == set(ids)


# --------------------------------------------------------------------------- freezing


class Freezer:
    """Stops a node's traffic as SIGSTOP would: nothing goes out while frozen, and what
    arrives waits in the socket's queue until :meth:`thaw`. (The node's timers still run;
    only its view of the others, which no test here checks, can differ from a real stop.)"""

    def __init__(self) -> None:
        self._thawed = trio.Event()
        self._thawed.set()

    @property
    def frozen(self) -> bool:
        return not self._thawed.is_set()

    def freeze(self) -> None:
        if not self.frozen:
            self._thawed = trio.Event()

    def thaw(self) -> None:
        self._thawed.set()

    async def wait_thawed(self) -> None:
        while self.frozen:
            await self._thawed.wait()


class _FrozenSocket:
    def __init__(self, inner: DatagramSocket, freezer: Freezer) -> None:
        self._inner = inner
        self._freezer = freezer

    @property
    def local_address(self) -> SocketAddress:
        return self._inner.local_address

    async def send(self, data: bytes, addr: SocketAddress) -> None:
        await self._freezer.wait_thawed()
        await self._inner.send(data, addr)

    async def recv(self) -> tuple[bytes, SocketAddress]:
        await self._freezer.wait_thawed()
        received = await self._inner.recv()
        await self._freezer.wait_thawed()
        return received

    def close(self) -> None:
        self._inner.close()


class FreezableTransport:
    def __init__(self, inner: Transport, freezer: Freezer) -> None:
        self._inner = inner
        self._freezer = freezer

    async def bind(self, addr: SocketAddress) -> _FrozenSocket:
        return _FrozenSocket(await self._inner.bind(addr), self._freezer)


def can_bind_loopback_aliases() -> bool:
    """Linux routes all of 127.0.0.0/8 to lo; macOS, for one, only has 127.0.0.1."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.10", 0))
    except OSError:
        return False
    return True


needs_loopback_aliases = pytest.mark.skipif(
    not can_bind_loopback_aliases(),
    reason="cannot bind 127.0.0.10 here: the proxies need addresses of 127.0.0.0/8 beyond .1",
)
