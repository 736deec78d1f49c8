"""Node runtime over the in-memory network, in virtual time (trio's autojump clock)."""

from __future__ import annotations

import time

import attrs
import pytest
import trio

from gossip_tui.core.codec import encode
from gossip_tui.core.messages import Digest, NodeDigest, Syn
from gossip_tui.core.models import Liveness, SocketAddress
from gossip_tui.node import (
    KeyChanged,
    KeyDeleted,
    KeyValueTooLarge,
    NodeDead,
    NodeJoined,
    open_node,
)
from gossip_tui.testing import MemoryNetwork

from .helpers import all_see_each_other, fast_config, open_cluster, wait_until


@pytest.mark.trio
async def test_five_nodes_converge_and_share_keys(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork(seed=1)
    async with open_cluster(5, transport=network.transport()) as nodes:
        await wait_until(lambda: all_see_each_other(nodes), 30, "5 live nodes everywhere")
        nodes[3].set("color", "blue")
        await wait_until(
            lambda: all(n.get("color", nodes[3].self_id) == "blue" for n in nodes),
            10,
            "the key on every node",
        )
        # The "bind" key carries each node's public address.
        for node in nodes:
            assert nodes[0].get("bind", node.self_id) == str(node.gossip_addr)


@pytest.mark.trio
async def test_events_follow_membership_and_keys(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork(seed=2)
    async with open_cluster(1, transport=network.transport()) as (observer,):
        events = observer.subscribe(prefix="app/")
        peer_config = fast_config(seeds=(str(observer.gossip_addr),), node_id="peer")
        async with open_node(peer_config, transport=network.transport()) as peer:
            peer.set("app/greeting", "hello")
            peer.set("other", "ignored")
            seen: list[object] = []
            with trio.fail_after(20):
                while not any(isinstance(e, KeyChanged) for e in seen) or not any(
                    isinstance(e, NodeJoined) for e in seen
                ):
                    seen.append(await events.receive())
            changed = [e for e in seen if isinstance(e, KeyChanged)]
            assert changed[0].node == peer.self_id and changed[0].key == "app/greeting"
            assert all(e.key.startswith("app/") for e in changed)
            assert NodeJoined(peer.self_id) in seen
            peer.delete("app/greeting")
            with trio.fail_after(20):
                while not isinstance(event := await events.receive(), KeyDeleted):
                    pass
            assert event.key == "app/greeting"
            peer_id = peer.self_id
        # The peer announced its departure: it is gone at once, without waiting for phi.
        left_at = trio.current_time()
        with trio.fail_after(60):
            while await events.receive() != NodeDead(peer_id):
                pass
        assert trio.current_time() - left_at <= 2 * observer.config.gossip_interval
        snapshot = observer.snapshot()
        peer_snapshot = snapshot.node(peer_id)
        assert peer_snapshot is not None and peer_snapshot.liveness is Liveness.LEFT
        assert peer_id in observer.dead_nodes()


@pytest.mark.trio
async def test_a_silent_exit_waits_for_the_failure_detector(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork(seed=9)
    async with open_cluster(1, transport=network.transport()) as (observer,):
        config = attrs.evolve(
            fast_config(seeds=(str(observer.gossip_addr),), node_id="quiet"),
            announce_leave=False,
        )
        async with open_node(config, transport=network.transport()) as peer:
            await wait_until(lambda: all_see_each_other([observer, peer]), 30, "both live")
            peer_id = peer.self_id
        gone_at = trio.current_time()
        await wait_until(lambda: peer_id in observer.dead_nodes(), 60, "peer dead")
        # phi must climb past 8 first: many intervals, not one or two.
        assert trio.current_time() - gone_at > 4 * observer.config.gossip_interval
        peer_snapshot = observer.snapshot().node(peer_id)
        assert peer_snapshot is not None and peer_snapshot.liveness is Liveness.DEAD


@pytest.mark.trio
async def test_clusters_never_mix(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork(seed=3)
    async with open_cluster(3, transport=network.transport(), cluster_id="blue") as blue:
        seed = str(blue[0].gossip_addr)
        async with open_cluster(
            3, transport=network.transport(), cluster_id="red", seed_addr=seed
        ) as red:
            await wait_until(lambda: all_see_each_other(red), 30, "red converged")
            await trio.sleep(5)
            blue_ids = {n.self_id for n in blue}
            red_ids = {n.self_id for n in red}
            for node in blue:
                assert set(node.engine.state.nodes()) <= blue_ids
            for node in red:
                assert set(node.engine.state.nodes()) <= red_ids


@pytest.mark.trio
async def test_malformed_datagrams_are_dropped_and_counted(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork(seed=4)
    async with open_cluster(1, transport=network.transport()) as (node,):
        node.set("k", "v")
        before = node.snapshot()
        attacker = network.bind(SocketAddress.parse("127.0.0.1:0"))
        for junk in (b"", b"\x53\xb0\x00", b"\x53\xb0\x00\x01\xff\xff", b"garbage" * 10):
            await attacker.send(junk, node.gossip_addr)
        await wait_until(lambda: node.stats.dropped["malformed"] == 4, 5, "4 drops")
        assert node.get("k") == "v"
        after = node.snapshot()
        assert [n.node for n in after.nodes] == [n.node for n in before.nodes]


@pytest.mark.trio
async def test_set_refuses_what_cannot_fit_a_datagram(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork(seed=5)
    async with open_cluster(1, transport=network.transport()) as (node,):
        with pytest.raises(KeyValueTooLarge):
            node.set("big", "x" * 70_000)
        with pytest.raises(ValueError, match="empty"):
            node.set("", "x")
        assert node.get("big") is None


@pytest.mark.trio
async def test_set_checks_the_exact_fit_when_a_long_node_name_eats_the_datagram(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork(seed=5)
    config = fast_config("127.0.0.1:0", node_id="n" * 10_000)
    async with open_node(config, transport=network.transport()) as node:
        node.set("small", "x" * 50_000)
        with pytest.raises(KeyValueTooLarge, match="gossip datagram"):
            node.set("big", "x" * 59_000)  # under MAX_KEY_VALUE_BYTES, but not with the name
        assert node.get("big") is None
        assert node.get("small") == "x" * 50_000


@pytest.mark.trio
async def test_address_in_use_raises_before_yielding(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork(seed=6)
    async with open_cluster(1, transport=network.transport()) as (node,):
        taken = fast_config(str(node.gossip_addr))
        with pytest.raises(OSError, match="in use"):
            async with open_node(taken, transport=network.transport()):
                pytest.fail("must not start")


@pytest.mark.trio
async def test_gossip_survives_loss(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork(seed=7)
    network.default_faults.loss = 0.2
    async with open_cluster(5, transport=network.transport()) as nodes:
        await wait_until(lambda: all_see_each_other(nodes), 60, "convergence under loss")
        nodes[1].set("x", "1")
        await wait_until(
            lambda: all(n.get("x", nodes[1].self_id) == "1" for n in nodes), 30, "key under loss"
        )


class _FlakyResolver(trio.abc.HostnameResolver):
    """Resolves "seed.test" to a fixed address, but fails the first ``failures`` times."""

    def __init__(self, addr: SocketAddress, failures: int) -> None:
        self.addr = addr
        self.failures = failures
        self.calls = 0

    async def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):  # type: ignore[no-untyped-def]
        self.calls += 1
        await trio.lowlevel.checkpoint()
        if self.calls <= self.failures:
            raise trio.socket.gaierror(-2, "Name or service not known")
        return [(trio.socket.AF_INET, trio.socket.SOCK_DGRAM, 17, "", (self.addr.host, port))]

    async def getnameinfo(self, sockaddr, flags):  # type: ignore[no-untyped-def]
        raise NotImplementedError


@pytest.mark.trio
async def test_unresolvable_seed_is_retried_not_fatal(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork(seed=8)
    async with open_cluster(1, transport=network.transport()) as (first,):
        resolver = _FlakyResolver(first.gossip_addr, failures=2)
        previous = trio.socket.set_custom_hostname_resolver(resolver)
        try:
            config = fast_config(seeds=(f"seed.test:{first.gossip_addr.port}",))
            async with open_node(config, transport=network.transport()) as second:
                assert second.engine.seed_addrs == set()
                await wait_until(
                    lambda: all_see_each_other([first, second]), 60, "join after retries"
                )
                assert resolver.calls == 3
                assert first.gossip_addr in second.engine.seed_addrs
        finally:
            trio.socket.set_custom_hostname_resolver(previous)


@pytest.mark.trio
async def test_subscriptions_end_with_the_node_and_laggards_lose_events(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork(seed=10)
    async with open_cluster(1, transport=network.transport()) as (node,):
        # Each local write is published at once: its KeyChanged, then our NodeUpdated.
        laggard = node.subscribe(max_buffer=4)
        follower = node.subscribe()
        for i in range(5):
            node.set(f"k{i}", "v")
        await wait_until(lambda: node.stats.events_dropped > 0, 5, "the laggard overflows")
        received = [laggard.receive_nowait() for _ in range(4)]
        assert [e.key for e in received if isinstance(e, KeyChanged)] == ["k0", "k1"]
    # The node closed: the follower's loop ends instead of hanging.
    with trio.fail_after(1):
        keys = [e.key async for e in follower if isinstance(e, KeyChanged)]
    assert keys == [f"k{i}" for i in range(5)]


@pytest.mark.trio
async def test_the_default_generation_is_unix_time_in_milliseconds(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Seconds would give a node restarted within the same second its old identity.
    network = MemoryNetwork(seed=9)
    config = attrs.evolve(fast_config("127.0.0.1:0"), generation=None)
    before = time.time_ns() // 1_000_000
    async with open_node(config, transport=network.transport()) as node:
        after = time.time_ns() // 1_000_000
        assert before <= node.self_id.generation <= after


@pytest.mark.trio
async def test_a_peer_reporting_our_heartbeat_ahead_is_outrun_and_counted(
    autojump_clock: trio.abc.Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    network = MemoryNetwork(seed=10)
    async with open_cluster(1, transport=network.transport()) as (node,):
        ahead = 2**45
        syn = Syn("testing", Digest({node.self_id: NodeDigest(ahead, 0, 1)}))
        peer = network.bind(SocketAddress.parse("127.0.0.1:0"))
        await peer.send(encode(syn), node.gossip_addr)
        await wait_until(lambda: node.stats.heartbeat_outruns == 1, 5, "the outrun")
        mine = node.snapshot().node(node.self_id)
        assert mine is not None and mine.heartbeat > ahead
        assert "reported our heartbeat ahead of ours" in caplog.text


@pytest.mark.trio
async def test_liveness_readings_and_one_node_read(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork(seed=9)
    async with open_cluster(2, transport=network.transport()) as nodes:
        await wait_until(lambda: all_see_each_other(nodes), 30, "2 live nodes")
        me, peer = nodes
        peer.set("color", "blue")
        await wait_until(lambda: me.get("color", peer.self_id) == "blue", 10, "the key")
        readings = me.liveness_readings()
        assert readings.taken_at == trio.current_time()
        by_node = {reading.node: reading for reading in readings.nodes}
        assert by_node[me.self_id].liveness is Liveness.SELF
        assert by_node[peer.self_id].liveness is Liveness.LIVE
        full = me.node_snapshot(peer.self_id)
        assert full is not None and full.key_values["color"].value == "blue"
        assert by_node[peer.self_id].max_version == full.max_version
