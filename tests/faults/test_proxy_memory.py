"""The fault proxy's mechanics, run over the in-memory network in virtual time.

The proxy only needs a :class:`Transport`, so the same code that fronts real nodes on
127.0.0.x is checked here exactly: arrival times, copies, seeded loss, one-way blocks,
corruption and upstream sockets per client (the text commands of scripts/fault_proxy.py
are checked in test_fault_proxy_script).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import attrs
import pytest
import trio

from gossip_tui.core.codec import encode
from gossip_tui.core.messages import Digest, NodeDigest, Syn
from gossip_tui.core.models import NodeId, SocketAddress
from gossip_tui.node import NodeConfig, open_node
from gossip_tui.testing import (
    FaultController,
    FaultProxy,
    LinkFaults,
    LoopbackOnlyTransport,
    MemoryNetwork,
    MemorySocket,
    NotLoopback,
    names_only_loopback,
    open_proxy,
    proxy_host,
)
from tests.node.helpers import FAST_DETECTOR, wait_until

SERVER = SocketAddress.parse("127.0.0.1:5000")
PROXY = SocketAddress.parse("127.0.0.10:6000")


@attrs.define
class Echo:
    """A stand-in node: answers every datagram with ``echo:`` + it, remembering sources."""

    socket: MemorySocket
    received: list[tuple[float, bytes, SocketAddress]] = attrs.field(factory=list)

    async def run(self) -> None:
        while True:
            data, source = await self.socket.recv()
            self.received.append((trio.current_time(), data, source))
            await self.socket.send(b"echo:" + data, source)


@asynccontextmanager
async def echo_behind_proxy(
    controller: FaultController,
    network: MemoryNetwork,
    *,
    idle_timeout: float = 120.0,
    max_clients: int = 1_024,
) -> AsyncIterator[tuple[Echo, FaultProxy]]:
    echo = Echo(network.bind(SERVER))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo.run)
        async with open_proxy(
            controller,
            PROXY,
            SERVER,
            transport=network.transport(),
            idle_timeout=idle_timeout,
            max_clients=max_clients,
        ) as proxy:
            yield echo, proxy
        nursery.cancel_scope.cancel()


async def drain(socket: MemorySocket, wait: float) -> list[tuple[float, bytes, SocketAddress]]:
    got = []
    with trio.move_on_after(wait):
        while True:
            data, source = await socket.recv()
            got.append((trio.current_time(), data, source))
    return got


@pytest.mark.trio
async def test_datagrams_and_replies_pass_through_with_one_upstream_per_client(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork(seed=1)
    controller = FaultController(seed=1)
    async with echo_behind_proxy(controller, network) as (echo, proxy):
        first = network.bind(SocketAddress.parse("127.0.0.1:0"))
        second = network.bind(SocketAddress.parse("127.0.0.1:0"))
        for _ in range(3):
            await first.send(b"a", proxy.public_addr)
            await second.send(b"b", proxy.public_addr)
        got_first = await drain(first, 1)
        got_second = await drain(second, 1)
        assert [(d, s) for _, d, s in got_first] == [(b"echo:a", PROXY)] * 3
        assert [(d, s) for _, d, s in got_second] == [(b"echo:b", PROXY)] * 3
        # The node saw one address per client, on the proxy's host, never the client's.
        sources = {data: {s for _, d, s in echo.received if d == data} for data in (b"a", b"b")}
        assert all(len(s) == 1 for s in sources.values())
        assert sources[b"a"] != sources[b"b"]
        assert all(s.ip == PROXY.ip for found in sources.values() for s in found)
        assert sorted(proxy.clients) == sorted([first.local_address, second.local_address])
        assert controller.stats.received == controller.stats.sent == 12


@pytest.mark.trio
async def test_delay_and_jitter_bound_the_arrival_time_each_way(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork(seed=2)
    controller = FaultController(seed=2)
    async with echo_behind_proxy(controller, network) as (_echo, _proxy):
        client = network.bind(SocketAddress.parse("127.0.0.1:7000"))
        controller.set_faults(client.local_address, PROXY, LinkFaults(delay=0.2, jitter=0.1))
        controller.set_faults(PROXY, client.local_address, LinkFaults(delay=0.05))
        round_trips = []
        for _ in range(20):
            sent = trio.current_time()
            await client.send(b"x", PROXY)
            await client.recv()
            round_trips.append(trio.current_time() - sent)
        assert all(0.25 <= rt <= 0.35 for rt in round_trips), round_trips
        assert max(round_trips) - min(round_trips) > 0.02  # the jitter is there
        assert controller.stats.delayed == 40


@pytest.mark.trio
async def test_duplication_delivers_two_copies(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork(seed=3)
    controller = FaultController(seed=3)
    async with echo_behind_proxy(controller, network) as (echo, _proxy):
        client = network.bind(SocketAddress.parse("127.0.0.1:7000"))
        controller.set_faults(client.local_address, PROXY, LinkFaults(duplicate=1.0))
        await client.send(b"twice", PROXY)
        got = await drain(client, 1)
        assert [d for _, d, _ in echo.received] == [b"twice", b"twice"]
        assert [d for _, d, _ in got] == [b"echo:twice", b"echo:twice"]
        assert controller.stats.duplicated == 1


async def _lossy_run(seed: int) -> tuple[int, int]:
    network = MemoryNetwork(seed=4)
    controller = FaultController(seed=seed)
    async with echo_behind_proxy(controller, network) as (echo, _proxy):
        client = network.bind(SocketAddress.parse("127.0.0.1:7000"))
        controller.set_faults(client.local_address, PROXY, LinkFaults(loss=0.3))
        for i in range(1_000):
            await client.send(b"%d" % i, PROXY)
        got = await drain(client, 1)
        assert controller.stats.dropped["loss"] == 1_000 - len(echo.received)
        return len(echo.received), len(got)


@pytest.mark.trio
async def test_loss_is_seeded_counted_and_about_what_was_asked(
    autojump_clock: trio.abc.Clock,
) -> None:
    first = await _lossy_run(seed=9)
    assert first == await _lossy_run(seed=9)
    arrived, replies = first
    assert arrived == replies
    assert 640 <= arrived <= 760
    assert first != await _lossy_run(seed=10)


@pytest.mark.trio
async def test_blocking_is_one_way_unless_asked_both(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork(seed=5)
    controller = FaultController(seed=5)
    async with echo_behind_proxy(controller, network) as (echo, _proxy):
        client = network.bind(SocketAddress.parse("127.0.0.1:7000"))
        me = client.local_address

        controller.block(me, PROXY)  # towards the node only
        await client.send(b"in", PROXY)
        assert await drain(client, 1) == []
        assert echo.received == []

        controller.heal()
        controller.block(PROXY, me)  # the replies only
        await client.send(b"out", PROXY)
        assert await drain(client, 1) == []
        assert [d for _, d, _ in echo.received] == [b"out"]

        controller.heal()
        await client.send(b"ok", PROXY)
        assert [d for _, d, _ in await drain(client, 1)] == [b"echo:ok"]
        assert controller.stats.dropped["blocked"] == 2


@pytest.mark.trio
async def test_corruption_flips_exactly_one_bit(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork(seed=6)
    controller = FaultController(seed=6)
    async with echo_behind_proxy(controller, network) as (echo, _proxy):
        client = network.bind(SocketAddress.parse("127.0.0.1:7000"))
        controller.set_faults(client.local_address, PROXY, LinkFaults(corrupt=1.0))
        payload = bytes(range(64))
        for _ in range(50):
            await client.send(payload, PROXY)
        await drain(client, 1)
        assert len(echo.received) == 50
        for _, data, _ in echo.received:
            diff = int.from_bytes(data, "big") ^ int.from_bytes(payload, "big")
            assert diff.bit_count() == 1
        assert controller.stats.corrupted == 50
        assert controller.stats.malformed == 50  # not chitchat at all


def _syn_naming(addr: SocketAddress) -> bytes:
    node = NodeId("peer", 1, addr)
    return encode(Syn("testing", Digest({node: NodeDigest(5, 0, 3)})))


class _Rigged(random.Random):
    """Always corrupts, at the byte and bit it is told."""

    def __init__(self, byte: int, bit: int) -> None:
        super().__init__(0)
        self._picks = [byte, bit]

    def random(self) -> float:
        return 0.0

    def randrange(self, *_args: object, **_kwargs: object) -> int:
        return self._picks.pop(0)


@pytest.mark.parametrize(
    ("octet", "bit", "delivered"),
    [(0, 7, False), (0, 0, False), (3, 0, True), (3, 7, True)],
    ids=["to-255.0.0.1", "to-126.0.0.1", "to-127.0.0.0", "to-127.0.0.129"],
)
def test_a_corruption_that_would_name_an_address_off_this_machine_is_dropped(
    octet: int, bit: int, delivered: bool
) -> None:
    data = _syn_naming(SocketAddress.parse("127.0.0.1:7001"))
    ip_at = data.index(bytes([4, 127, 0, 0, 1])) + 1
    controller = FaultController()
    controller.default_faults = LinkFaults(corrupt=1.0)
    controller.rng = _Rigged(ip_at + octet, bit)
    deliveries = controller.route(SERVER, PROXY, data)
    assert len(deliveries) == int(delivered)
    assert controller.stats.dropped["unsafe"] == int(not delivered)
    assert names_only_loopback(data)
    assert not names_only_loopback(_syn_naming(SocketAddress.parse("192.0.2.1:7001")))
    assert names_only_loopback(b"not chitchat")


@pytest.mark.trio
async def test_the_network_and_the_proxy_decide_every_fate_alike() -> None:
    """One fault decision: with the same seed and faults, the in-memory network and the
    proxy's controller draw the same numbers for every datagram (the RNGs stay in step) and
    pass on the same copies, the proxy only holding back corrupted ones that would name an
    address off this machine."""
    faults = LinkFaults(loss=0.2, delay=0.01, jitter=0.02, duplicate=0.3, corrupt=0.5)
    network = MemoryNetwork(seed=12)
    network.default_faults = faults
    controller = FaultController(seed=12)
    controller.default_faults = faults
    receiver = network.bind(SERVER)
    kept = 0
    for heartbeat in range(1, 2_001):
        digest = Digest({NodeId("peer", 1, SERVER): NodeDigest(heartbeat, 0, 3)})
        data = encode(Syn("testing", digest))
        network.route(PROXY, SERVER, data)
        kept += len(controller.route(PROXY, SERVER, data))
        assert network.rng.getstate() == controller.rng.getstate(), heartbeat
    stats = controller.stats
    assert stats.dropped["loss"] == network.dropped > 0
    assert stats.duplicated > 0 and stats.malformed > 0 and stats.dropped["unsafe"] > 0
    assert network.delivered == kept + stats.dropped["unsafe"]
    receiver.close()


@pytest.mark.trio
async def test_idle_upstreams_close_and_the_busiest_clients_keep_theirs(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork(seed=7)
    controller = FaultController(seed=7)
    async with echo_behind_proxy(controller, network, idle_timeout=10.0, max_clients=2) as (
        echo,
        proxy,
    ):
        clients = [network.bind(SocketAddress.parse("127.0.0.1:0")) for _ in range(3)]
        await clients[0].send(b"0", PROXY)
        await trio.sleep(1)
        await clients[1].send(b"1", PROXY)
        await trio.sleep(1)
        await clients[2].send(b"2", PROXY)  # over max_clients: client 0's goes
        await trio.sleep(1)
        assert sorted(proxy.clients) == sorted([c.local_address for c in clients[1:]])
        await trio.sleep(30)
        assert proxy.clients == []
        await clients[1].send(b"again", PROXY)
        await trio.sleep(1)
        first_source = next(s for _, d, s in echo.received if d == b"1")
        again_source = next(s for _, d, s in echo.received if d == b"again")
        assert first_source != again_source  # a fresh upstream socket
        assert controller.stats.clients == 4
        for client in clients:
            assert len(await drain(client, 0.5)) == 1 + (client is clients[1])


@pytest.mark.trio
async def test_nothing_outside_127_0_0_0_8_is_bound_or_addressed(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork(seed=8)
    controller = FaultController()
    for listen in ("10.1.2.3:0", "[::1]:0", "0.0.0.0:0"):
        with pytest.raises(NotLoopback):
            async with open_proxy(
                controller, SocketAddress.parse(listen), transport=network.transport()
            ):
                pytest.fail("must not bind")
    async with open_proxy(controller, PROXY, transport=network.transport()) as proxy:
        with pytest.raises(NotLoopback):
            proxy.connect(SocketAddress.parse("192.0.2.1:5000"))
    guard = LoopbackOnlyTransport(network.transport())
    socket = await guard.bind(SocketAddress.parse("127.0.0.1:0"))
    with pytest.raises(OSError, match="outside 127"):
        await socket.send(b"x", SocketAddress.parse("192.0.2.1:5000"))
    assert guard.refused == 1
    with pytest.raises(NotLoopback):
        await guard.bind(SocketAddress.parse("0.0.0.0:0"))
    assert proxy_host(0) == "127.0.0.10"
    with pytest.raises(ValueError, match="outside"):
        proxy_host(245)


@pytest.mark.trio
async def test_three_proxied_nodes_see_one_die_and_return(autojump_clock: trio.abc.Clock) -> None:
    """The real-UDP scenario of test_udp_proxy, deterministic: traffic really goes through
    the proxies, links are keyed by the proxies' addresses."""
    network = MemoryNetwork(seed=9)
    controller = FaultController(seed=9)
    async with AsyncExitStack() as stack:
        proxies = [
            await stack.enter_async_context(
                open_proxy(
                    controller,
                    SocketAddress.parse(f"{proxy_host(i)}:7000"),
                    transport=network.transport(),
                )
            )
            for i in range(3)
        ]
        nodes = []
        for i, proxy in enumerate(proxies):
            config = NodeConfig(
                listen_addr=SocketAddress.parse("127.0.0.1:0"),
                public_addr=proxy.public_addr,
                node_id=f"proxied-{i}",
                generation=1,
                seeds=(str(proxies[0].public_addr),),
                gossip_interval=0.1,
                failure_detector=FAST_DETECTOR,
                announce_leave=False,
            )
            node = await stack.enter_async_context(open_node(config, transport=network.transport()))
            proxy.connect(node.gossip_addr)
            nodes.append(node)
        ids = {n.self_id for n in nodes}
        await wait_until(lambda: all(set(n.live_nodes()) == ids for n in nodes), 30, "start")
        assert {n.gossip_addr for n in ids} == {p.public_addr for p in proxies}
        assert controller.logical(nodes[1].gossip_addr) == proxies[1].public_addr

        controller.isolate(proxies[2].public_addr)
        await wait_until(
            lambda: all(nodes[2].self_id in n.dead_nodes() for n in nodes[:2]), 30, "dead"
        )
        assert all(set(n.live_nodes()) == ids - {nodes[2].self_id} for n in nodes[:2])
        controller.heal()
        await wait_until(lambda: all(set(n.live_nodes()) == ids for n in nodes), 30, "healed")
