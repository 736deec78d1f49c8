"""Fault injection on real UDP sockets, without root: one proxy per node.

The kernel here has no netem, and iptables needs root, so faults are injected by a small
UDP proxy in front of each node. Node ``i`` binds ``127.0.0.1:P`` but advertises its proxy,
``127.0.0.(10+i):Q``, as its public address; every peer therefore talks to the proxy. For
each client the proxy opens its own upstream socket towards the node, so the node's replies
come back through the proxy too and can be faulted on the way out.

A conversation crosses exactly one proxy (the one in front of the node that receives the
Syn), so faults are kept per *logical* directed link, keyed by public addresses: a client
that is a proxied node is known by its proxy's address, any other client by its own.
:class:`FaultController` holds the links and one seeded RNG, decides each datagram's fate
with the same :func:`decide_fate` as the in-memory network, and is shared by every proxy of
a test or of ``scripts/fault_proxy.py`` (which holds the text commands that drive it). It
can be changed at any time; the next datagram sees the change.

Only 127.0.0.0/8 is ever bound or addressed. A corrupted datagram that would still decode
and name a node outside 127.0.0.0/8 is dropped (counted as ``unsafe``): a node would gossip
to a dead node at that address, sending traffic off this machine.

One concern, though over 400 lines: the proxy (its links, its per-client upstream sockets
and its statistics); the fault decision itself is gossip_tui.testing._faults's.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import attrs
import trio

from gossip_tui.core.codec import DecodeError, decode
from gossip_tui.core.messages import Ack, Message, Syn, SynAck
from gossip_tui.core.models import SocketAddress
from gossip_tui.node import DatagramSocket, Transport, UdpTransport

from ._faults import Delivery, LinkFaults, decide_fate
from ._loopback import is_loopback, require_loopback


def message_addresses(message: Message) -> Iterable[SocketAddress]:
    """Every gossip address a message names (digest and delta node ids)."""
    if isinstance(message, Syn | SynAck):
        for node in message.digest.nodes:
            yield node.gossip_addr
    if isinstance(message, SynAck | Ack):
        for node_delta in message.delta.node_deltas:
            yield node_delta.node.gossip_addr


def names_only_loopback(data: bytes) -> bool:
    """False if ``data`` decodes to a message naming an address outside 127.0.0.0/8
    (undecodable data is dropped as malformed by whoever receives it: harmless)."""
    return _check_corrupted(data) is not False


def _check_corrupted(data: bytes) -> bool | None:
    """None if ``data`` does not decode, else whether it names only 127.0.0.0/8."""
    try:
        message = decode(data)
    except DecodeError:
        return None
    return all(is_loopback(addr) for addr in message_addresses(message))


@attrs.define
class ProxyStats:
    """What the proxies of one controller did, summed."""

    received: int = 0  # datagrams that reached a proxy, either way
    sent: int = 0  # datagrams passed on, copies included
    duplicated: int = 0
    corrupted: int = 0
    # Corrupted copies that no longer decode: the receiving node drops them as malformed.
    malformed: int = 0
    delayed: int = 0
    clients: int = 0  # upstream sockets opened
    # loss, blocked, unsafe, overflow, no_target, stray, not_loopback, send_error
    dropped: Counter[str] = attrs.field(factory=Counter)


class FaultController:
    """Faults per directed link (public address to public address), one seeded RNG.

    Mirrors :class:`MemoryNetwork`'s API: ``default_faults``, ``set_faults``, ``faults``,
    ``partition`` and ``heal``, plus ``block``, ``isolate`` and ``clear``.
    """

    def __init__(self, seed: int = 0, *, max_in_flight: int = 10_000) -> None:
        self.rng = random.Random(seed)
        self.default_faults = LinkFaults()
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.stats = ProxyStats()
        self._links: dict[tuple[SocketAddress, SocketAddress], LinkFaults] = {}
        # A proxied node's own address -> its proxy's (public) address.
        self._aliases: dict[SocketAddress, SocketAddress] = {}

    # ------------------------------------------------------------------ identities

    def register(self, node_addr: SocketAddress, public_addr: SocketAddress) -> None:
        """``node_addr`` is reached through the proxy at ``public_addr``."""
        self._aliases[node_addr] = public_addr

    def unregister(self, node_addr: SocketAddress) -> None:
        self._aliases.pop(node_addr, None)

    def logical(self, addr: SocketAddress) -> SocketAddress:
        """The address a link is keyed by: a proxied node's public address, else ``addr``."""
        return self._aliases.get(addr, addr)

    @property
    def public_addresses(self) -> list[SocketAddress]:
        return sorted(set(self._aliases.values()))

    # ------------------------------------------------------------------ faults

    def faults(self, src: SocketAddress, dst: SocketAddress) -> LinkFaults:
        return self._links.get((src, dst), self.default_faults)

    def set_faults(self, src: SocketAddress, dst: SocketAddress, faults: LinkFaults) -> None:
        self._links[(src, dst)] = faults

    def links(self) -> dict[tuple[SocketAddress, SocketAddress], LinkFaults]:
        return dict(self._links)

    def block(self, src: SocketAddress, dst: SocketAddress, *, both_ways: bool = False) -> None:
        self.set_faults(src, dst, LinkFaults(blocked=True))
        if both_ways:
            self.set_faults(dst, src, LinkFaults(blocked=True))

    def isolate(
        self,
        addr: SocketAddress,
        *,
        inbound: bool = True,
        outbound: bool = True,
        peers: Iterable[SocketAddress] | None = None,
    ) -> None:
        """Block the links between ``addr`` and every peer (the registered proxies when
        ``peers`` is None): ``inbound`` towards it, ``outbound`` from it."""
        for peer in self.public_addresses if peers is None else peers:
            if peer == addr:
                continue
            if inbound:
                self.set_faults(peer, addr, LinkFaults(blocked=True))
            if outbound:
                self.set_faults(addr, peer, LinkFaults(blocked=True))

    def partition(self, side_a: Iterable[SocketAddress], side_b: Iterable[SocketAddress]) -> None:
        """Block every link between the two sides, both ways."""
        side_b = list(side_b)
        for a in side_a:
            for b in side_b:
                self.block(a, b, both_ways=True)

    def heal(self) -> None:
        """Forget every per-link fault (the default faults stay)."""
        self._links.clear()

    def clear(self) -> None:
        """No fault anywhere."""
        self.heal()
        self.default_faults = LinkFaults()

    # ------------------------------------------------------------------ the decision

    def route(self, src: SocketAddress, dst: SocketAddress, data: bytes) -> list[Delivery]:
        """What becomes of one datagram on the link ``src`` -> ``dst``: no copy (lost or
        blocked), one, or two (duplicated), each maybe corrupted and delayed, decided by
        :func:`decide_fate` exactly as in the in-memory network. A corrupted copy that
        would name an address off this machine is held back."""
        stats = self.stats
        stats.received += 1
        fate = decide_fate(self.faults(src, dst), self.rng, data)
        if fate.dropped is not None:
            stats.dropped[fate.dropped] += 1
            return []
        if fate.duplicated:
            stats.duplicated += 1
        deliveries = []
        for delivery in fate.deliveries:
            if delivery.corrupted:
                stats.corrupted += 1
                safe = _check_corrupted(delivery.payload)
                if safe is None:
                    stats.malformed += 1
                elif not safe:
                    stats.dropped["unsafe"] += 1
                    continue
            deliveries.append(delivery)
        return deliveries


# --------------------------------------------------------------------------- the proxy


class _Upstream:
    """The proxy's socket towards its node on behalf of one client."""

    def __init__(self, socket: DatagramSocket, scope: trio.CancelScope, now: float) -> None:
        self.socket = socket
        self.scope = scope
        self.last_used = now


class FaultProxy:
    """A UDP proxy in front of one node. Get one from :func:`open_proxy`."""

    def __init__(
        self,
        controller: FaultController,
        front: DatagramSocket,
        transport: Transport,
        nursery: trio.Nursery,
        *,
        idle_timeout: float,
        max_clients: int,
    ) -> None:
        self.controller = controller
        self._front = front
        self._transport = transport
        self._nursery = nursery
        self._target: SocketAddress | None = None
        self._upstreams: dict[SocketAddress, _Upstream] = {}
        self._idle_timeout = idle_timeout
        self._max_clients = max_clients

    @property
    def public_addr(self) -> SocketAddress:
        """The address the node should advertise (``NodeConfig.public_addr``)."""
        return self._front.local_address

    @property
    def target(self) -> SocketAddress | None:
        return self._target

    @property
    def clients(self) -> list[SocketAddress]:
        return list(self._upstreams)

    def connect(self, target: SocketAddress) -> None:
        """Forward to the node at ``target`` (its listen address)."""
        require_loopback(target, "node address")
        if self._target is not None and self._target != target:
            self.controller.unregister(self._target)
            self._close_upstreams()
        self._target = target
        self.controller.register(target, self.public_addr)

    # ------------------------------------------------------------------ tasks

    async def _serve_front(self) -> None:
        front = self._front
        while True:
            data, client = await front.recv()
            controller = self.controller
            target = self._target
            if not is_loopback(client):
                controller.stats.received += 1
                controller.stats.dropped["not_loopback"] += 1
                continue
            if target is None:
                controller.stats.received += 1
                controller.stats.dropped["no_target"] += 1
                continue
            deliveries = controller.route(controller.logical(client), self.public_addr, data)
            if not deliveries:
                continue
            upstream = await self._upstream(client)
            if upstream is None:
                continue
            upstream.last_used = trio.current_time()
            for delivery in deliveries:
                await self._dispatch(upstream.socket, delivery, target)

    async def _upstream(self, client: SocketAddress) -> _Upstream | None:
        upstream = self._upstreams.get(client)
        if upstream is not None:
            return upstream
        if len(self._upstreams) >= self._max_clients:
            oldest = min(self._upstreams, key=lambda c: self._upstreams[c].last_used)
            self._drop_upstream(oldest)
        host = SocketAddress(self.public_addr.ip, 0)
        try:
            socket = await self._transport.bind(host)
        except OSError:
            self.controller.stats.dropped["send_error"] += 1
            return None
        scope = trio.CancelScope()
        upstream = _Upstream(socket, scope, trio.current_time())
        self._upstreams[client] = upstream
        self.controller.stats.clients += 1
        self._nursery.start_soon(self._serve_upstream, client, upstream)
        return upstream

    async def _serve_upstream(self, client: SocketAddress, upstream: _Upstream) -> None:
        with upstream.scope:
            try:
                while True:
                    data, source = await upstream.socket.recv()
                    controller = self.controller
                    if source != self._target:
                        controller.stats.received += 1
                        controller.stats.dropped["stray"] += 1
                        continue
                    upstream.last_used = trio.current_time()
                    link_dst = controller.logical(client)
                    for delivery in controller.route(self.public_addr, link_dst, data):
                        await self._dispatch(self._front, delivery, client)
            except (trio.ClosedResourceError, OSError):
                # Closed by the idle sweep, or broken: the client's next datagram opens a
                # fresh one.
                pass
            finally:
                upstream.socket.close()
                if self._upstreams.get(client) is upstream:
                    del self._upstreams[client]

    async def _dispatch(
        self, socket: DatagramSocket, delivery: Delivery, addr: SocketAddress
    ) -> None:
        controller = self.controller
        if delivery.delay <= 0:
            await self._send(socket, delivery.payload, addr)
            return
        if controller.in_flight >= controller.max_in_flight:
            controller.stats.dropped["overflow"] += 1
            return
        controller.in_flight += 1
        controller.stats.delayed += 1
        self._nursery.start_soon(self._send_later, socket, delivery, addr)

    async def _send_later(
        self, socket: DatagramSocket, delivery: Delivery, addr: SocketAddress
    ) -> None:
        try:
            await trio.sleep(delivery.delay)
        finally:
            self.controller.in_flight -= 1
        await self._send(socket, delivery.payload, addr)

    async def _send(self, socket: DatagramSocket, data: bytes, addr: SocketAddress) -> None:
        stats = self.controller.stats
        if not is_loopback(addr):
            stats.dropped["not_loopback"] += 1
            return
        try:
            await socket.send(data, addr)
        except (OSError, trio.ClosedResourceError):
            stats.dropped["send_error"] += 1
            return
        stats.sent += 1

    async def _expire_idle(self) -> None:
        if math.isinf(self._idle_timeout):
            return
        while True:
            await trio.sleep(self._idle_timeout / 2)
            cutoff = trio.current_time() - self._idle_timeout
            for client, upstream in list(self._upstreams.items()):
                if upstream.last_used < cutoff:
                    self._drop_upstream(client)

    def _drop_upstream(self, client: SocketAddress) -> None:
        upstream = self._upstreams.pop(client, None)
        if upstream is not None:
            upstream.scope.cancel()

    def _close_upstreams(self) -> None:
        for client in list(self._upstreams):
            self._drop_upstream(client)


@asynccontextmanager
async def open_proxy(
    controller: FaultController,
    listen: SocketAddress,
    target: SocketAddress | None = None,
    *,
    transport: Transport | None = None,
    idle_timeout: float = 120.0,
    max_clients: int = 1_024,
) -> AsyncIterator[FaultProxy]:
    """A proxy listening on ``listen`` (127.0.0.0/8; port 0 picks one), forwarding to
    ``target`` (or to what :meth:`FaultProxy.connect` names later)."""
    require_loopback(listen, "proxy address")
    if target is not None:
        require_loopback(target, "node address")
    transport = transport or UdpTransport()
    front = await transport.bind(listen)
    try:
        async with trio.open_nursery() as nursery:
            proxy = FaultProxy(
                controller,
                front,
                transport,
                nursery,
                idle_timeout=idle_timeout,
                max_clients=max_clients,
            )
            if target is not None:
                proxy.connect(target)
            nursery.start_soon(proxy._serve_front)
            nursery.start_soon(proxy._expire_idle)
            try:
                yield proxy
            finally:
                if proxy.target is not None:
                    controller.unregister(proxy.target)
                nursery.cancel_scope.cancel()
    finally:
        front.close()
