"""A loopback network in memory, with seeded faults per directed link.

A node only ever sees a :class:`~gossip_tui.node.DatagramSocket`; tests hand it this
network's transport instead of UDP for fast, deterministic runs (with trio's MockClock) and
controlled loss, delay, jitter, duplication, corruption and partitions.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import math
import random

import trio

from gossip_tui.core.codec import MAX_DATAGRAM_SIZE
from gossip_tui.core.models import SocketAddress

from ._faults import LinkFaults, decide_fate


class MemorySocket:
    def __init__(self, network: MemoryNetwork, local: SocketAddress) -> None:
        self._network = network
        self._local = local
        self._queue: list[tuple[float, int, bytes, SocketAddress]] = []
        self._arrival = trio.Event()
        self.closed = False

    @property
    def local_address(self) -> SocketAddress:
        return self._local

    def _enqueue(self, at: float, data: bytes, source: SocketAddress) -> None:
        if len(self._queue) >= self._network.queue_limit:
            self._network.overflowed += 1
            return
        heapq.heappush(self._queue, (at, next(self._network.sequence), data, source))
        self._arrival.set()

    async def send(self, data: bytes, addr: SocketAddress) -> None:
        if self.closed:
            raise trio.ClosedResourceError
        if len(data) > MAX_DATAGRAM_SIZE:
            raise OSError(errno.EMSGSIZE, "datagram too large")
        self._network.route(self._local, addr, data)
        await trio.lowlevel.checkpoint()

    async def recv(self) -> tuple[bytes, SocketAddress]:
        while True:
            if self.closed:
                raise trio.ClosedResourceError
            now = trio.current_time()
            if self._queue and self._queue[0][0] <= now:
                _, _, data, source = heapq.heappop(self._queue)
                await trio.lowlevel.checkpoint()
                return data, source
            deadline = self._queue[0][0] if self._queue else math.inf
            self._arrival = trio.Event()
            with trio.move_on_at(deadline):
                await self._arrival.wait()

    def close(self) -> None:
        self.closed = True
        self._network.unbind(self._local)
        self._arrival.set()


class MemoryNetwork:
    """A loopback network in memory. Faults are per directed link, drawn from one seeded RNG
    so a run repeats exactly."""

    def __init__(self, seed: int = 0, *, queue_limit: int = 10_000) -> None:
        self.rng = random.Random(seed)
        self.queue_limit = queue_limit
        self.default_faults = LinkFaults()
        self.sequence = itertools.count()
        self.overflowed = 0
        self.delivered = 0
        self.dropped = 0
        self._sockets: dict[SocketAddress, MemorySocket] = {}
        self._links: dict[tuple[SocketAddress, SocketAddress], LinkFaults] = {}
        self._next_port = 40_000

    def transport(self) -> MemoryTransport:
        return MemoryTransport(self)

    def bind(self, addr: SocketAddress) -> MemorySocket:
        if addr.port == 0:
            while SocketAddress(addr.ip, self._next_port) in self._sockets:
                self._next_port += 1
            addr = SocketAddress(addr.ip, self._next_port)
            self._next_port += 1
        if addr in self._sockets:
            raise OSError(errno.EADDRINUSE, f"address already in use: {addr}")
        sock = MemorySocket(self, addr)
        self._sockets[addr] = sock
        return sock

    def unbind(self, addr: SocketAddress) -> None:
        self._sockets.pop(addr, None)

    def faults(self, src: SocketAddress, dst: SocketAddress) -> LinkFaults:
        return self._links.get((src, dst), self.default_faults)

    def set_faults(self, src: SocketAddress, dst: SocketAddress, faults: LinkFaults) -> None:
        self._links[(src, dst)] = faults

    def partition(self, side_a: list[SocketAddress], side_b: list[SocketAddress]) -> None:
        """Block every link between the two sides, both ways."""
        for a in side_a:
            for b in side_b:
                self.set_faults(a, b, LinkFaults(blocked=True))
                self.set_faults(b, a, LinkFaults(blocked=True))

    def heal(self) -> None:
        self._links.clear()

    def route(self, src: SocketAddress, dst: SocketAddress, data: bytes) -> None:
        target = self._sockets.get(dst)
        if target is None:
            # Nobody bound there: lost before any fault is drawn, as on a real loopback.
            self.dropped += 1
            return
        fate = decide_fate(self.faults(src, dst), self.rng, data)
        if fate.dropped is not None:
            self.dropped += 1
            return
        now = trio.current_time()
        for delivery in fate.deliveries:
            target._enqueue(now + delivery.delay, delivery.payload, src)
            self.delivered += 1


class MemoryTransport:
    def __init__(self, network: MemoryNetwork) -> None:
        self.network = network

    async def bind(self, addr: SocketAddress) -> MemorySocket:
        await trio.lowlevel.checkpoint()
        return self.network.bind(addr)
