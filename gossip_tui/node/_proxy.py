"""Fault injection on real UDP sockets, without root: one proxy per node.

The kernel here has no netem, and iptables needs root, so faults are injected by a small
UDP proxy in front of each node. Node ``i`` binds ``127.0.0.1:P`` but advertises its proxy,
``127.0.0.(10+i):Q``, as its public address; every peer therefore talks to the proxy. For
each client the proxy opens its own upstream socket towards the node, so the node's replies
come back through the proxy too and can be faulted on the way out.

A conversation crosses exactly one proxy (the one in front of the node that receives the
Syn), so faults are kept per *logical* directed link, keyed by public addresses: a client
that is a proxied node is known by its proxy's address, any other client by its own.
:class:`FaultController` holds the links (the same :class:`LinkFaults` the in-memory network
uses) and one seeded RNG, and is shared by every proxy of a test or of
``scripts/fault_proxy.py``. It can be changed at any time; the next datagram sees the change.

Only 127.0.0.0/8 is ever bound or addressed. A corrupted datagram that would still decode
and name a node outside 127.0.0.0/8 is dropped (counted as ``unsafe``): a node would gossip
to a dead node at that address, sending traffic off this machine.
"""

from __future__ import annotations

import errno
import ipaddress
import math
import random
import shlex
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from gossip_tui.core.codec import DecodeError, decode
from gossip_tui.core.errors import GossipTuiError
from gossip_tui.core.messages import Ack, Message, Syn, SynAck
from gossip_tui.core.models import AddressError, SocketAddress

from ._transport import DatagramSocket, LinkFaults, Transport, UdpTransport

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


def flip_bit(rng: random.Random, data: bytes) -> bytes:
    """One random bit of ``data`` inverted, as :class:`MemoryNetwork` corrupts."""
    mutable = bytearray(data)
    mutable[rng.randrange(len(mutable))] ^= 1 << rng.randrange(8)
    return bytes(mutable)


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


@attrs.frozen
class Delivery:
    delay: float
    payload: bytes


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
        blocked), one, or two (duplicated), each maybe corrupted and delayed. The RNG is
        drawn in the same order as :meth:`MemoryNetwork.route`."""
        stats = self.stats
        stats.received += 1
        faults = self.faults(src, dst)
        rng = self.rng
        if faults.blocked:
            stats.dropped["blocked"] += 1
            return []
        if faults.loss and rng.random() < faults.loss:
            stats.dropped["loss"] += 1
            return []
        copies = 2 if faults.duplicate and rng.random() < faults.duplicate else 1
        if copies == 2:
            stats.duplicated += 1
        deliveries = []
        for _ in range(copies):
            payload = data
            if faults.corrupt and payload and rng.random() < faults.corrupt:
                payload = flip_bit(rng, payload)
                stats.corrupted += 1
                safe = _check_corrupted(payload)
                if safe is None:
                    stats.malformed += 1
                elif not safe:
                    stats.dropped["unsafe"] += 1
                    continue
            latency = faults.delay + (rng.uniform(0, faults.jitter) if faults.jitter else 0.0)
            deliveries.append(Delivery(latency, payload))
        return deliveries

    def describe(self) -> str:
        lines = [f"default: {_faults_text(self.default_faults)}"]
        for (src, dst), faults in sorted(self._links.items()):
            lines.append(f"{src} -> {dst}: {_faults_text(faults)}")
        s = self.stats
        dropped = ", ".join(f"{k}={v}" for k, v in sorted(s.dropped.items())) or "none"
        lines.append(
            f"stats: received={s.received} sent={s.sent} duplicated={s.duplicated} "
            f"corrupted={s.corrupted} malformed={s.malformed} delayed={s.delayed} "
            f"clients={s.clients} in_flight={self.in_flight}; dropped: {dropped}"
        )
        return "\n".join(lines)


def _faults_text(faults: LinkFaults) -> str:
    if faults.blocked:
        return "blocked"
    parts = []
    if faults.loss:
        parts.append(f"loss={faults.loss:g}")
    if faults.delay:
        parts.append(f"delay_ms={faults.delay * 1000:g}")
    if faults.jitter:
        parts.append(f"jitter_ms={faults.jitter * 1000:g}")
    if faults.duplicate:
        parts.append(f"duplicate={faults.duplicate:g}")
    if faults.corrupt:
        parts.append(f"corrupt={faults.corrupt:g}")
    return " ".join(parts) or "none"


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


# --------------------------------------------------------------------------- a guard


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


# --------------------------------------------------------------------------- commands

COMMANDS_HELP = """\
Commands (NODE is a proxy index, a proxy address or a node address; * is every node):
  show                         faults and counters
  set [SRC DST] KEY=VALUE...   change the default faults, or those of the link SRC -> DST;
                               keys: loss, delay_ms, jitter_ms, duplicate, corrupt, blocked
  block SRC DST [both]         drop everything SRC sends to DST (and back with "both")
  isolate NODE [in|out|both]   block every link to and/or from NODE (default both)
  partition A,B,... C,D,...    block every link between the two groups, both ways
  heal                         forget the per-link faults (keep the default ones)
  clear                        no fault anywhere
  help                         this text"""

# Command key -> (LinkFaults field, scale to its unit, whether it is a probability).
_FAULT_KEYS = {
    "loss": ("loss", 1.0, True),
    "delay_ms": ("delay", 0.001, False),
    "jitter_ms": ("jitter", 0.001, False),
    "duplicate": ("duplicate", 1.0, True),
    "corrupt": ("corrupt", 1.0, True),
}


class CommandError(GossipTuiError, ValueError):
    """A fault command that cannot be carried out; the message says why."""


def parse_fault_settings(base: LinkFaults, settings: Sequence[str]) -> LinkFaults:
    """``base`` changed by ``key=value`` words (probabilities in [0, 1], times in ms)."""
    changes: dict[str, Any] = {}
    for word in settings:
        key, sep, text = word.partition("=")
        if not sep:
            raise CommandError(f"expected KEY=VALUE, got {word!r}")
        if key == "blocked":
            if text.lower() not in {"0", "1", "true", "false", "yes", "no", "on", "off"}:
                raise CommandError(f"blocked takes a boolean, got {text!r}")
            changes["blocked"] = text.lower() in {"1", "true", "yes", "on"}
            continue
        if key not in _FAULT_KEYS:
            raise CommandError(f"unknown fault {key!r} (one of {', '.join(_FAULT_KEYS)}, blocked)")
        field, scale, probability = _FAULT_KEYS[key]
        try:
            value = float(text)
        except ValueError:
            raise CommandError(f"{key} takes a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0:
            raise CommandError(f"{key} must be a finite number >= 0, got {text!r}")
        if probability and value > 1:
            raise CommandError(f"{key} is a probability in [0, 1], got {text!r}")
        changes[field] = value * scale
    return attrs.evolve(base, **changes)


def resolve_node(word: str, proxies: Sequence[FaultProxy]) -> list[SocketAddress]:
    """The public addresses ``word`` names: ``*``, a proxy index, or an address."""
    if word == "*":
        return [p.public_addr for p in proxies]
    if word.isdigit():
        index = int(word)
        if index >= len(proxies):
            raise CommandError(f"no node {index}: there are {len(proxies)}")
        return [proxies[index].public_addr]
    try:
        addr = SocketAddress.parse(word)
    except AddressError:
        raise CommandError(f"{word!r} is neither a node index nor an ip:port") from None
    for proxy in proxies:
        if addr in (proxy.public_addr, proxy.target):
            return [proxy.public_addr]
    return [addr]


def run_command(controller: FaultController, proxies: Sequence[FaultProxy], line: str) -> str:
    """Carry out one text command (see :data:`COMMANDS_HELP`); return what to print."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if not words:
        return ""
    command, args = words[0].lower(), words[1:]
    peers = [p.public_addr for p in proxies]
    if command == "help":
        return COMMANDS_HELP
    if command in {"show", "stats"}:
        return controller.describe()
    if command == "heal":
        controller.heal()
        return "healed: per-link faults cleared"
    if command == "clear":
        controller.clear()
        return "cleared: no faults"
    if command == "set":
        if args and "=" not in args[0]:
            if len(args) < 3:
                raise CommandError("usage: set SRC DST KEY=VALUE...")
            sources, destinations = resolve_node(args[0], proxies), resolve_node(args[1], proxies)
            settings = args[2:]
            for src in sources:
                for dst in destinations:
                    if src != dst:
                        new = parse_fault_settings(controller.faults(src, dst), settings)
                        controller.set_faults(src, dst, new)
            return controller.describe()
        if not args:
            raise CommandError("usage: set [SRC DST] KEY=VALUE...")
        controller.default_faults = parse_fault_settings(controller.default_faults, args)
        return controller.describe()
    if command == "block":
        if len(args) not in (2, 3) or (len(args) == 3 and args[2] != "both"):
            raise CommandError("usage: block SRC DST [both]")
        both = len(args) == 3
        for src in resolve_node(args[0], proxies):
            for dst in resolve_node(args[1], proxies):
                if src != dst:
                    controller.block(src, dst, both_ways=both)
        return controller.describe()
    if command == "isolate":
        if len(args) not in (1, 2) or (len(args) == 2 and args[1] not in {"in", "out", "both"}):
            raise CommandError("usage: isolate NODE [in|out|both]")
        way = args[1] if len(args) == 2 else "both"
        for addr in resolve_node(args[0], proxies):
            controller.isolate(
                addr, inbound=way != "out", outbound=way != "in", peers=peers or None
            )
        return controller.describe()
    if command == "partition":
        if len(args) != 2:
            raise CommandError("usage: partition A,B,... C,D,...")
        side_a = [a for w in args[0].split(",") if w for a in resolve_node(w, proxies)]
        side_b = [a for w in args[1].split(",") if w for a in resolve_node(w, proxies)]
        if set(side_a) & set(side_b):
            raise CommandError("a node cannot be on both sides of a partition")
        controller.partition(side_a, side_b)
        return controller.describe()
    raise CommandError(f"unknown command {command!r}; try help")
