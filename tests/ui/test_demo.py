"""Demo mode: peers in the dashboard's Trio run, one stopped and restarted on demand."""

from __future__ import annotations

import random

import pytest

from gossip_tui.core import codec
from gossip_tui.core.models import Liveness
from gossip_tui.testing import FakeCluster, FakeNodeConfig
from gossip_tui.ui import DemoCluster, GossipApp
from tests.ui.conftest import make_app, wait_ready, wait_until


def _statuses(app: GossipApp) -> dict[str, str]:
    table = app.nodes_table
    return {key: table.get_cell(key, "status").plain for key in table.shown_keys}


@pytest.mark.asyncio
async def test_demo_starts_peers_and_x_restarts_one_with_a_new_generation(
    cluster: FakeCluster,
) -> None:
    demo = DemoCluster(3, restart_delay=0.3, rng=random.Random(7))
    config = FakeNodeConfig(node_id="node-0")
    app = make_app(cluster, config=config, demo=demo, refresh_interval=0.05)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        await wait_until(pilot, lambda: len(demo.running) == 3, what="three peers")
        await wait_until(pilot, lambda: app.nodes_table.row_count == 4, what="four rows")
        peers = [cluster.handles[ident] for ident in demo.running]
        # Each peer was seeded with node 0's address and bound an ephemeral port.
        assert all(p.config.seeds == ("127.0.0.1:10000",) for p in peers)
        assert all(p.config.listen_addr.port == 0 for p in peers)
        # Peers go without a goodbye, as a crash would: the failure detector has to notice.
        assert not any(p.config.announce_leave for p in peers)
        assert sorted(p.self_id.node_id for p in peers) == [
            "node-0-peer1",
            "node-0-peer2",
            "node-0-peer3",
        ]

        await pilot.press("x")
        # The stopped generation stays dead in the cluster, however soon it is restarted.
        await wait_until(pilot, lambda: any(p.closed for p in peers), what="a peer to stop")
        (stopped,) = [p.self_id for p in peers if p.closed]

        # Back after the delay: same id and address, a higher generation, live again.
        def restarted() -> bool:
            return any(
                ident.node_id == stopped.node_id and ident.generation > stopped.generation
                for ident in demo.running
            )

        await wait_until(pilot, restarted, what="the restart")
        (again,) = [i for i in demo.running if i.node_id == stopped.node_id]
        assert again.gossip_addr == stopped.gossip_addr
        await wait_until(pilot, lambda: _statuses(app).get(str(again), "").startswith("live ↻"))
        # The dashboard folds the dead generation into the live one: one row for the peer.
        assert str(stopped) not in _statuses(app)
        assert cluster.members[stopped].liveness is Liveness.DEAD
        log = "".join(line.text for line in app.event_log.lines)  # wrapped lines, rejoined
        assert f"stopped {stopped.node_id};" in log
        assert f"restarted {again.node_id} as generation {again.generation}" in log


@pytest.mark.asyncio
async def test_kill_peer_is_demo_only(cluster: FakeCluster) -> None:
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        assert app.check_action("kill_peer", ()) is False
        await pilot.press("x")  # nothing happens, nothing breaks
        await pilot.pause()
        assert app.trio_outcome is None


@pytest.mark.asyncio
async def test_a_large_demo_spreads_its_seeds_and_keeps_short_windows(
    cluster: FakeCluster,
) -> None:
    """No node answers the first Syns of more than SEED_FANOUT newcomers (all seeded with
    node 0, 199 peers overflowed its receive buffer), and every peer reaches node 0 through
    its chain of seeds."""
    from collections import Counter

    from gossip_tui.node import NodeConfig
    from gossip_tui.ui.demo import PEER_SAMPLING_WINDOW, SEED_FANOUT, _for_peers

    demo = DemoCluster(60, rng=random.Random(3))
    app = make_app(cluster, config=FakeNodeConfig(node_id="node-0"), demo=demo)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        await wait_until(pilot, lambda: len(demo.running) == 60, what="sixty peers")
        peers = [cluster.handles[ident] for ident in demo.running]
        seeds = Counter(seed for p in peers for seed in p.config.seeds)
        assert all(len(p.config.seeds) == 1 for p in peers)
        assert max(seeds.values()) <= SEED_FANOUT
        by_addr = {str(p.self_id.gossip_addr): p for p in peers}
        node0 = "127.0.0.1:10000"
        for peer in peers:  # each chain of seeds ends at node 0
            hops, addr = 0, peer.config.seeds[0]
            while addr != node0:
                addr, hops = by_addr[addr].config.seeds[0], hops + 1
                assert hops < 60
    # The runtime's config: a short window for phi's mean, and no goodbye.
    peer_config = _for_peers(NodeConfig())
    assert peer_config.failure_detector.sampling_window_size == PEER_SAMPLING_WINDOW
    assert not peer_config.announce_leave


@pytest.mark.asyncio
@pytest.mark.parametrize("spare", [False, True])
async def test_the_demo_retunes_the_collector_once_its_peers_are_up_only_when_asked(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, spare: bool
) -> None:
    # The CLI's demo asks: 200 nodes in one process spent a fifth of their CPU in the
    # cyclic collector. A test session running a demo among other tests must not.
    from gossip_tui.ui import demo as demo_module

    calls: list[object] = []
    monkeypatch.setattr(demo_module.gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(demo_module.gc, "set_threshold", lambda *t: calls.append(t))
    demo = DemoCluster(9, rng=random.Random(3), tune_process=spare)
    app = make_app(cluster, config=FakeNodeConfig(node_id="node-0"), demo=demo)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        await wait_until(pilot, lambda: len(demo.running) == 9, what="nine peers")
        await wait_until(pilot, lambda: bool(calls) or not spare, what="the retuning")
        # The codec holds repeated Syns while the demo's own process runs it.
        held_while_running = codec._syn_cache_bytes
    expected = ["freeze", demo_module.DEMO_GC_THRESHOLDS] if spare else []
    assert calls == expected
    assert held_while_running == (demo_module.DEMO_SYN_CACHE_BYTES if spare else 0)
    # ...and gives the memory back once the demo is gone (the process may go on).
    assert codec._syn_cache_bytes == 0 and not codec._SYNS_BY_WIRE


def test_the_demo_keeps_the_dashboards_hold_on_full_collections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Under the dashboard, its QuietCollector set a far higher old threshold first: the
    # demo's retuning keeps it, so no full collection starts in the middle of typing.
    from gossip_tui.ui import demo as demo_module

    calls: list[object] = []
    monkeypatch.setattr(demo_module.gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(demo_module.gc, "set_threshold", lambda *t: calls.append(t))
    monkeypatch.setattr(demo_module.gc, "get_threshold", lambda: (700, 10, 2**31 - 1))
    demo_module._spare_the_collector()
    young, middle, _old = demo_module.DEMO_GC_THRESHOLDS
    assert calls == ["freeze", (young, middle, 2**31 - 1)]
