"""Datagram transports: real UDP, and an in-memory network with seeded fault injection.

The node only ever sees :class:`DatagramSocket`; tests swap UDP for :class:`MemoryNetwork`
to get fast, deterministic runs (with trio's MockClock) and controlled loss, delay,
jitter, duplication, corruption and partitions.
"""

from __future__ import annotations

import errno
import heapq
import ipaddress
import itertools
import math
import random
import socket
from typing import Protocol

import attrs
import trio

from gossip_tui.core.codec import MAX_DATAGRAM_SIZE
from gossip_tui.core.errors import GossipTuiError
from gossip_tui.core.models import SocketAddress


class DatagramRejected(GossipTuiError):
    """A datagram a wrapping socket refused (bad seal, replay...); ``reason`` is counted."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DatagramSocket(Protocol):
    @property
    def local_address(self) -> SocketAddress: ...

    async def send(self, data: bytes, addr: SocketAddress) -> None: ...

    async def recv(self) -> tuple[bytes, SocketAddress]: ...

    def close(self) -> None: ...


class Transport(Protocol):
    async def bind(self, addr: SocketAddress) -> DatagramSocket: ...


# --------------------------------------------------------------------------- UDP

# Errors a UDP socket reports for a single datagram (an ICMP port-unreachable from an
# earlier send, a full buffer): the socket itself is fine, keep going.
_TRANSIENT_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.ECONNRESET, errno.ENOBUFS, errno.EAGAIN, errno.EHOSTUNREACH}
)


_ADDRESS_CACHE_SIZE = 4096
_YIELD_EVERY = 16


class UdpSocket:
    """A non-blocking stdlib UDP socket driven by Trio's I/O waits.

    Trio's own socket methods pass through the scheduler on every call; at several
    datagrams per peer per round that is most of an idle node's CPU. Here a call only
    waits when the kernel says so, checks for cancellation every time, and yields to the
    other tasks every ``_YIELD_EVERY`` calls, so a flood cannot starve them.
    """

    def __init__(self, sock: socket.socket, local: SocketAddress) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._local = local
        self._calls = 0
        # Peers are few and talk often: convert each address once.
        self._sources: dict[tuple[str, int], SocketAddress] = {}
        self._targets: dict[SocketAddress, tuple[str, int]] = {}

    @property
    def local_address(self) -> SocketAddress:
        return self._local

    async def _pace(self) -> None:
        self._calls += 1
        if self._calls >= _YIELD_EVERY:
            self._calls = 0
            await trio.lowlevel.checkpoint()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()

    async def send(self, data: bytes, addr: SocketAddress) -> None:
        target = self._targets.get(addr)
        if target is None:
            if len(self._targets) >= _ADDRESS_CACHE_SIZE:
                self._targets.clear()
            target = self._targets[addr] = (addr.host, addr.port)
        while True:
            try:
                self._sock.sendto(data, target)
                break
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._sock)
        await self._pace()

    async def recv(self) -> tuple[bytes, SocketAddress]:
        while True:
            try:
                data, source = self._sock.recvfrom(MAX_DATAGRAM_SIZE + 1)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._sock)
                continue
            except OSError as exc:
                if exc.errno in _TRANSIENT_ERRNOS:
                    await self._pace()
                    continue
                raise
            await self._pace()
            key = (source[0], source[1])
            addr = self._sources.get(key)
            if addr is None:
                if len(self._sources) >= _ADDRESS_CACHE_SIZE:
                    self._sources.clear()
                addr = self._sources[key] = SocketAddress(ipaddress.ip_address(key[0]), key[1])
            return data, addr

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            trio.lowlevel.notify_closing(self._sock)
        self._sock.close()


class UdpTransport:
    async def bind(self, addr: SocketAddress) -> UdpSocket:
        family = socket.AF_INET6 if addr.ip.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            # Numeric addresses only: binding does not block.
            sock.bind((addr.host, addr.port))
        except BaseException:
            sock.close()
            raise
        await trio.lowlevel.checkpoint()
        host, port = sock.getsockname()[:2]
        return UdpSocket(sock, SocketAddress(ipaddress.ip_address(host), port))


# --------------------------------------------------------------------------- in memory


@attrs.define
class LinkFaults:
    """What happens to datagrams on one directed link."""

    loss: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    duplicate: float = 0.0
    corrupt: float = 0.0
    blocked: bool = False


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
        faults = self.faults(src, dst)
        target = self._sockets.get(dst)
        rng = self.rng
        if target is None or faults.blocked or (faults.loss and rng.random() < faults.loss):
            self.dropped += 1
            return
        copies = 2 if faults.duplicate and rng.random() < faults.duplicate else 1
        now = trio.current_time()
        for _ in range(copies):
            payload = data
            if faults.corrupt and payload and rng.random() < faults.corrupt:
                mutable = bytearray(payload)
                mutable[rng.randrange(len(mutable))] ^= 1 << rng.randrange(8)
                payload = bytes(mutable)
            latency = faults.delay + (rng.uniform(0, faults.jitter) if faults.jitter else 0.0)
            target._enqueue(now + latency, payload, src)
            self.delivered += 1


class MemoryTransport:
    def __init__(self, network: MemoryNetwork) -> None:
        self.network = network

    async def bind(self, addr: SocketAddress) -> MemorySocket:
        await trio.lowlevel.checkpoint()
        return self.network.bind(addr)
