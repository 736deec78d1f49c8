"""The fault proxy on real UDP sockets: three nodes on 127.0.0.1, each advertising its proxy
on 127.0.0.10-12. Real time: 0.1 s rounds, and a failure detector quick to converge (0.5 s
prior) but slow to accuse (phi 16, about 1.5 s of silence), so that a loaded machine
stalling the test process does not pass for a fault.

The nodes use :class:`LoopbackOnlyTransport`: a corrupted digest could name an address
off this machine, and a node gossips to dead nodes; the proxy already drops such datagrams,
the guard makes sure.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio

from gossip_tui.core.codec import decode, encode
from gossip_tui.core.failure_detector import FailureDetectorConfig
from gossip_tui.core.messages import Digest, Syn, SynAck
from gossip_tui.core.models import SocketAddress
from gossip_tui.node import Node, NodeConfig, NodeDead, UdpTransport, open_node
from gossip_tui.testing import (
    FaultController,
    FaultProxy,
    LinkFaults,
    LoopbackOnlyTransport,
    open_proxy,
    proxy_host,
)
from tests.node.helpers import wait_until

from .helpers import attach_logs, needs_loopback_aliases

pytestmark = needs_loopback_aliases

INTERVAL = 0.1
DETECTOR = FailureDetectorConfig(
    phi_threshold=16.0, initial_interval=0.5, dead_node_grace_period=3_600.0
)


@asynccontextmanager
async def proxied_cluster(
    controller: FaultController, size: int, guard: LoopbackOnlyTransport
) -> AsyncIterator[tuple[list[FaultProxy], list[Node]]]:
    async with AsyncExitStack() as stack:
        proxies = [
            await stack.enter_async_context(
                open_proxy(controller, SocketAddress.parse(f"{proxy_host(i)}:0"))
            )
            for i in range(size)
        ]
        nodes = []
        for i, proxy in enumerate(proxies):
            config = NodeConfig(
                listen_addr=SocketAddress.parse("127.0.0.1:0"),
                public_addr=proxy.public_addr,
                node_id=f"proxied-{i}",
                generation=1,
                seeds=(str(proxies[0].public_addr),),
                gossip_interval=INTERVAL,
                failure_detector=DETECTOR,
                announce_leave=False,
            )
            node = await stack.enter_async_context(open_node(config, transport=guard))
            proxy.connect(node.gossip_addr)
            nodes.append(node)
        yield proxies, nodes


@pytest.mark.trio
async def test_loss_isolates_a_node_one_way_then_both_ways_and_clearing_brings_it_back() -> None:
    controller = FaultController(seed=51)
    guard = LoopbackOnlyTransport()
    async with proxied_cluster(controller, 3, guard) as (proxies, nodes):
        ids = {n.self_id for n in nodes}
        a, b, c = (p.public_addr for p in proxies)
        await wait_until(lambda: all(set(n.live_nodes()) == ids for n in nodes), 30, "start")
        # Everything goes through the proxies: nodes know each other by proxy address, and
        # each proxy has an upstream socket for each peer node.
        assert {n.gossip_addr for n in ids} == {a, b, c}
        for proxy, node in zip(proxies, nodes, strict=True):
            assert proxy.target == node.gossip_addr
            others = {m.gossip_addr for m in nodes if m is not node}

            def has_upstreams(p: FaultProxy = proxy, o: set[SocketAddress] = others) -> bool:
                return set(p.clients) == o

            await wait_until(has_upstreams, 15, "upstreams")

        async with trio.open_nursery() as nursery:
            logs = attach_logs(nursery, nodes[:2])
            victim = nodes[2].self_id
            # 100% loss on the links towards node 2 only: it hears nobody and declares both
            # dead, while they still get its Syns and keep it live.
            controller.set_faults(a, c, LinkFaults(loss=1.0))
            controller.set_faults(b, c, LinkFaults(loss=1.0))
            await wait_until(
                lambda: set(nodes[2].dead_nodes()) >= {nodes[0].self_id, nodes[1].self_id},
                20,
                "node 2 seeing the others dead",
            )
            assert all(victim in n.live_nodes() for n in nodes[:2])
            assert not any(log.times_of(NodeDead(victim)) for log in logs)

            # And from node 2 as well: now the others declare it dead.
            controller.set_faults(c, a, LinkFaults(loss=1.0))
            controller.set_faults(c, b, LinkFaults(loss=1.0))
            await wait_until(
                lambda: all(victim in n.dead_nodes() for n in nodes[:2]), 20, "node 2 dead"
            )
            await wait_until(
                lambda: all(set(n.live_nodes()) == ids - {victim} for n in nodes[:2]),
                10,
                "nodes 0 and 1 live for each other",
            )
            assert controller.stats.dropped["loss"] > 0
            nursery.cancel_scope.cancel()

        controller.heal()
        await wait_until(lambda: all(set(n.live_nodes()) == ids for n in nodes), 30, "return")
        assert guard.refused == 0


async def _ask_for_a_synack(proxy: FaultProxy) -> SynAck:
    """A Syn from a raw socket through ``proxy``: the node behind it must still answer."""
    client = await UdpTransport().bind(SocketAddress.parse(f"{proxy.public_addr.host}:0"))
    try:
        await client.send(encode(Syn("testing", Digest())), proxy.public_addr)
        with trio.fail_after(5):
            data, _ = await client.recv()
    finally:
        client.close()
    reply = decode(data)
    assert isinstance(reply, SynAck)
    return reply


@pytest.mark.trio
async def test_corrupted_datagrams_are_dropped_as_malformed_counted_and_never_crash() -> None:
    """Every datagram gets one bit flipped for a while. Those that no longer decode are
    dropped and counted by the nodes, exactly; the nodes keep running and answering.

    Full recovery afterwards is *not* asserted: a flip that still decodes can raise a
    peer's heartbeat to ~2**45 (that peer then looks dead until it restarts with a new
    generation) or a version to ~2**32, even in a node's own state (deltas about oneself
    are applied, as chitchat does). chitchat trusts UDP's checksum for this; a sealed
    transport rejects such datagrams."""
    controller = FaultController(seed=52)
    guard = LoopbackOnlyTransport()
    async with proxied_cluster(controller, 3, guard) as (proxies, nodes):
        ids = {n.self_id for n in nodes}
        await wait_until(lambda: all(set(n.live_nodes()) == ids for n in nodes), 30, "start")
        assert sum(n.stats.dropped["malformed"] for n in nodes) == 0

        controller.default_faults = LinkFaults(corrupt=1.0)  # every datagram, one bit each

        def malformed() -> int:
            return sum(n.stats.dropped["malformed"] for n in nodes)

        await wait_until(lambda: malformed() >= 100, 30, "100 malformed datagrams")
        controller.clear()
        # Once the last corrupted datagrams have landed, the nodes have counted exactly the
        # ones that no longer decode (the others went in as messages).
        await wait_until(lambda: malformed() == controller.stats.malformed, 10, "exact count")
        rounds = [n.stats.rounds for n in nodes]
        for proxy, node in zip(proxies, nodes, strict=True):
            assert node.self_id in (await _ask_for_a_synack(proxy)).digest.nodes
        await wait_until(
            lambda: all(n.stats.rounds > r + 5 for n, r in zip(nodes, rounds, strict=True)),
            15,
            "gossip rounds going on",
        )
        stats = controller.stats
        assert stats.corrupted > stats.malformed > 0
        assert all(n.stats.dropped["rejected"] == 0 for n in nodes)  # no engine exception
        assert guard.refused == 0
        print(
            f"\ncorruption on real UDP: {stats.corrupted} datagrams corrupted, "
            f"{stats.malformed} no longer decoded and were dropped and counted by the nodes "
            f"(per node {[n.stats.dropped['malformed'] for n in nodes]}), "
            f"{stats.dropped['unsafe']} dropped by the proxy for naming an address off "
            f"127.0.0.0/8, {stats.corrupted - stats.malformed - stats.dropped['unsafe']} "
            f"accepted as messages; no crash"
        )


@pytest.mark.trio
async def test_a_raw_client_sees_delay_and_duplicates_through_a_real_proxy() -> None:
    controller = FaultController(seed=53)
    guard = LoopbackOnlyTransport()
    async with proxied_cluster(controller, 1, guard) as (proxies, nodes):
        proxy = proxies[0]
        client = await UdpTransport().bind(SocketAddress.parse(f"{proxy_host(5)}:0"))
        try:
            me = client.local_address
            controller.set_faults(me, proxy.public_addr, LinkFaults(delay=0.2))
            controller.set_faults(proxy.public_addr, me, LinkFaults(duplicate=1.0))
            started = time.monotonic()
            await client.send(encode(Syn("testing", Digest())), proxy.public_addr)
            replies = []
            with trio.fail_after(5):
                for _ in range(2):
                    data, source = await client.recv()
                    replies.append((time.monotonic() - started, decode(data), source))
            assert all(at >= 0.2 for at, _, _ in replies)
            assert all(isinstance(m, SynAck) for _, m, _ in replies)
            assert all(source == proxy.public_addr for _, _, source in replies)
            assert replies[0][1] == replies[1][1]
            synack = replies[0][1]
            assert isinstance(synack, SynAck) and nodes[0].self_id in synack.digest.nodes
        finally:
            client.close()
