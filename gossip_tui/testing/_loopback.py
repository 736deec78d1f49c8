"""Only 127.0.0.0/8: the guard every fault tool of this kit binds and sends through."""

from __future__ import annotations

import errno
import ipaddress

from gossip_tui.core.errors import GossipTuiError
from gossip_tui.core.models import SocketAddress
from gossip_tui.node import DatagramSocket, Transport, UdpTransport

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
# Proxy i listens on 127.0.0.(PROXY_HOST_BASE + i).
PROXY_HOST_BASE = 10


class NotLoopback(GossipTuiError, ValueError):
    """An address outside 127.0.0.0/8: the fault layer never binds or sends there."""


def is_loopback(addr: SocketAddress) -> bool:
    return addr.ip.version == 4 and addr.ip in LOOPBACK


def require_loopback(addr: SocketAddress, what: str = "address") -> SocketAddress:
    if not is_loopback(addr):
        raise NotLoopback(f"{what} {addr} is outside 127.0.0.0/8")
    return addr


def proxy_host(index: int, base: int = PROXY_HOST_BASE) -> str:
    """The 127.0.0.x host of proxy ``index``."""
    host = base + index
    if not 2 <= host <= 254:
        raise ValueError(f"proxy {index} would be at 127.0.0.{host}, outside 127.0.0.2-254")
    return f"127.0.0.{host}"


class LoopbackOnlySocket:
    """A socket that refuses to send outside 127.0.0.0/8 (raises OSError, counted)."""

    def __init__(self, inner: DatagramSocket) -> None:
        self._inner = inner
        self.refused = 0

    @property
    def local_address(self) -> SocketAddress:
        return self._inner.local_address

    async def send(self, data: bytes, addr: SocketAddress) -> None:
        if not is_loopback(addr):
            self.refused += 1
            raise OSError(errno.EHOSTUNREACH, f"{addr} is outside 127.0.0.0/8")
        await self._inner.send(data, addr)

    async def recv(self) -> tuple[bytes, SocketAddress]:
        return await self._inner.recv()

    def close(self) -> None:
        self._inner.close()


class LoopbackOnlyTransport:
    """Wraps a transport so that nothing is bound or sent outside 127.0.0.0/8, whatever a
    peer (or a corrupted datagram) claims. The node counts the refusals as send errors."""

    def __init__(self, inner: Transport | None = None) -> None:
        self._inner = inner or UdpTransport()
        self.sockets: list[LoopbackOnlySocket] = []

    async def bind(self, addr: SocketAddress) -> LoopbackOnlySocket:
        require_loopback(addr, "bind address")
        socket = LoopbackOnlySocket(await self._inner.bind(addr))
        self.sockets.append(socket)
        return socket

    @property
    def refused(self) -> int:
        return sum(s.refused for s in self.sockets)
