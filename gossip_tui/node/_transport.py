"""Datagram transports: the protocol a node sends and receives through, and real UDP.

The node only ever sees :class:`DatagramSocket`; tests swap UDP for
``gossip_tui.testing.MemoryNetwork`` (fast, deterministic, with seeded faults), which the
product never imports.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Protocol

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
    other tasks after ``_YIELD_EVERY`` calls in a row that did not wait, so a flood
    cannot starve them. An idle node waits for readability after every datagram or two,
    so it never pays for the extra scheduler round (a tenth of its scheduler rounds when the
    yield came every ``_YIELD_EVERY`` calls whatever happened in between).
    """

    def __init__(self, sock: socket.socket, local: SocketAddress) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._local = local
        # Calls (either way) since the socket last waited for the kernel or yielded.
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
            # What this peer sends us comes back as the very object the node sends to, so
            # that the node's lookups by address (reply budgets, seeds) match on identity:
            # an equal copy costs two Python __eq__ calls (the address's, its ip's) each.
            self._adopt_source(target, addr)
        try:
            self._sock.sendto(data, target)
        except BlockingIOError:
            while True:
                await trio.lowlevel.wait_writable(self._sock)
                self._calls = 0
                try:
                    self._sock.sendto(data, target)
                    # The wait was a checkpoint: no pace owed.
                    return
                except BlockingIOError:
                    continue
        await self._pace()

    async def recv(self) -> tuple[bytes, SocketAddress]:
        # Whether this call waited already: a wait is a checkpoint (a cancellation check
        # and a trip through the scheduler), so the datagram it brought owes no pace. An
        # idle node waits before nearly every datagram.
        waited = False
        while True:
            try:
                data, source = self._sock.recvfrom(MAX_DATAGRAM_SIZE + 1)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._sock)
                # A wait is a trip through the scheduler: the other tasks had their turn.
                self._calls = 0
                waited = True
                continue
            except OSError as exc:
                if exc.errno in _TRANSIENT_ERRNOS:
                    await self._pace()
                    continue
                raise
            if not waited:
                await self._pace()
            key = (source[0], source[1])
            addr = self._sources.get(key)
            if addr is None:
                addr = SocketAddress(ipaddress.ip_address(key[0]), key[1])
                self._adopt_source(key, addr)
            return data, addr

    def _adopt_source(self, key: tuple[str, int], addr: SocketAddress) -> None:
        if len(self._sources) >= _ADDRESS_CACHE_SIZE:
            self._sources.clear()
        self._sources[key] = addr

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
