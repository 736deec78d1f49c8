"""Issue 15: per-node phi and heartbeat sparklines in the detail pane and the node screen,
kept in a bounded ring per node from the per-tick liveness reading (no extra node calls)."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Label, Sparkline

from gossip_tui.core.engine import LivenessReading, LivenessReadings
from gossip_tui.core.models import Liveness, NodeId, SocketAddress
from gossip_tui.testing import FakeCluster, FakeNodeConfig
from gossip_tui.ui import GossipApp
from gossip_tui.ui._history import HISTORY_LENGTH, LivenessHistory
from gossip_tui.ui._trio_bridge import LivenessRead
from gossip_tui.ui._view_model import ClusterViewModel
from gossip_tui.ui.screens.node_screen import NodeScreen
from gossip_tui.ui.widgets.node_detail import NodeDetail, history_summaries
from tests.ui.conftest import FIXED_CLOCK, make_app, wait_ready, wait_until

SELF = FakeNodeConfig(node_id="node-0", initial_key_values={"role": "dashboard"})


def _node(index: int) -> NodeId:
    return NodeId(f"n{index}", 1, SocketAddress.parse(f"127.0.0.1:{20000 + index}"))


def _readings(at: float, beats: dict[NodeId, tuple[int, float | None]]) -> LivenessReadings:
    return LivenessReadings(
        at,
        tuple(
            LivenessReading(node, Liveness.LIVE, heartbeat, 0, phi, at)
            for node, (heartbeat, phi) in beats.items()
        ),
    )


def test_phi_and_heartbeat_increase_per_reading() -> None:
    history = LivenessHistory()
    a = _node(1)
    for tick, (heartbeat, phi) in enumerate([(10, 0.5), (12, 0.9), (12, 1.4), (15, None)]):
        history.record(_readings(float(tick), {a: (heartbeat, phi)}))
    recorded = history.of(a)
    assert recorded is not None
    assert recorded.phi == (0.5, 0.9, 1.4)  # a reading without phi is left out
    # The first reading has no increase to show; then +2, +0, +3.
    assert recorded.heartbeat_rate == (2.0, 0.0, 3.0)
    assert recorded.recorded == 4
    assert history_summaries(recorded) == ("1.4 max 1.4", "3 avg 1.7")
    assert history.of(_node(2)) is None


def test_the_ring_keeps_the_last_readings_only() -> None:
    history = LivenessHistory()
    a = _node(1)
    for tick in range(HISTORY_LENGTH * 3):
        history.record(_readings(float(tick), {a: (tick * 2, float(tick))}))
    recorded = history.of(a)
    assert recorded is not None
    assert len(recorded.phi) == HISTORY_LENGTH == len(recorded.heartbeat_rate)
    assert recorded.phi[0] == float(HISTORY_LENGTH * 2) and recorded.phi[-1] == float(
        HISTORY_LENGTH * 3 - 1
    )
    assert set(recorded.heartbeat_rate) == {2.0}


def test_memory_for_500_nodes_is_bounded() -> None:
    """A fixed ring for every node: under 1 MB for 500 nodes, however long it runs."""
    nodes = [_node(index) for index in range(500)]
    # The readings are made before counting: what is measured is the history alone.
    ticks = [
        _readings(float(tick), {n: (tick, tick / 10) for n in nodes})
        for tick in range(HISTORY_LENGTH * 3)
    ]
    history = LivenessHistory()
    tracemalloc.start()
    try:
        for readings in ticks[:HISTORY_LENGTH]:
            history.record(readings)
        after_one_ring, _peak = tracemalloc.get_traced_memory()
        for readings in ticks[HISTORY_LENGTH:]:
            history.record(readings)
        after_three, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(history) == 500
    assert after_one_ring < 1_000_000, after_one_ring
    assert after_three <= after_one_ring + 1_000  # no growth once the rings are full


def test_a_node_gone_is_forgotten(cluster_clock: list[float]) -> None:
    cluster = FakeCluster(clock=lambda: cluster_clock[0])
    node = cluster.add_node(SELF)
    peer = cluster.add_peer("p1", port=11001)
    model = ClusterViewModel(node.self_id, node.node_snapshot)
    model.apply_readings(node.liveness_readings())
    assert model.history.of(peer) is not None
    cluster.remove(peer)
    model.apply_readings(node.liveness_readings())
    assert model.history.of(peer) is None and len(model.history) == 1


@pytest.fixture
def cluster_clock() -> list[float]:
    return [FIXED_CLOCK]


# -- on screen -----------------------------------------------------------------------------


def _cluster() -> FakeCluster:
    cluster = FakeCluster(clock=lambda: FIXED_CLOCK)
    cluster.add_peer("alpha", port=10001, keys={"role": "api"}, heartbeat=400, phi=0.5)
    cluster.add_peer("bravo", port=10002, keys={"role": "worker"}, heartbeat=300, phi=1.0)
    return cluster


async def _feed(pilot: Pilot[Any], cluster: FakeCluster, ticks: int) -> None:
    """``ticks`` readings with a phi that rises and falls and beats of 1 to 3 a reading,
    posted as the bridge posts them (its own timer set to an hour)."""
    app = pilot.app
    assert isinstance(app, GossipApp) and app.node is not None
    for tick in range(ticks):
        for index, member in enumerate(m for m in cluster.members.values() if m.phi is not None):
            member.heartbeat += 1 + (tick + index) % 3
            member.phi = round(0.5 + (tick % 10) * (0.4 + index * 0.3), 2)
        app.post_message(LivenessRead(app.node.liveness_readings()))
    await wait_until(
        pilot,
        lambda: app.view_model is not None and len(app.view_model.history) >= 3,
        what="the readings",
    )
    await pilot.pause()


def _spark(detail: NodeDetail, which: str) -> list[float]:
    data = detail.query_one(f"#{which}-sparkline", Sparkline).data
    return list(data or [])


def _summary(detail: NodeDetail, which: str) -> str:
    return str(detail.query_one(f"#{which}-summary", Label).render())


@pytest.mark.asyncio
async def test_the_detail_pane_draws_the_selected_nodes_history() -> None:
    cluster = _cluster()
    app = make_app(cluster, config=SELF, refresh_interval=3600.0, live_sample_interval=3600.0)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        detail = app.node_detail
        # alpha, the first row
        await wait_until(pilot, lambda: (app.nodes_table.selected_key or "").startswith("alpha"))
        taken = app.node.readings_taken if app.node is not None else 0
        await _feed(pilot, cluster, 12)
        alpha = cluster.peer("alpha")
        await wait_until(pilot, lambda: len(_spark(detail, "phi")) == 13, what="13 phi readings")
        model = app.view_model
        assert model is not None
        recorded = model.history.of(alpha)
        assert recorded is not None
        assert _spark(detail, "phi") == list(recorded.phi)
        assert _spark(detail, "heartbeat") == list(recorded.heartbeat_rate)
        assert _summary(detail, "phi") == "0.9 max 4.1"
        assert _summary(detail, "heartbeat") == "3 avg 2.0"
        # Nothing but the readings posted (and the bridge's first one) was read.
        assert app.node is not None and app.node.readings_taken == taken + 12
        # Another node selected: its own history, at once.
        await pilot.press("down")
        await wait_until(pilot, lambda: (app.nodes_table.selected_key or "").startswith("bravo"))
        bravo = model.history.of(cluster.peer("bravo"))
        assert bravo is not None
        await wait_until(pilot, lambda: _spark(detail, "phi") == list(bravo.phi))
        # This node has no phi of its own: the phi line stays empty, beats still show.
        await pilot.press("down")
        await wait_until(pilot, lambda: (app.nodes_table.selected_key or "").startswith("node-0"))
        await wait_until(pilot, lambda: _spark(detail, "phi") == [])
        assert _summary(detail, "phi") == "-"
        assert len(_spark(detail, "heartbeat")) == 12


@pytest.mark.asyncio
async def test_the_node_screen_draws_and_follows_the_history() -> None:
    cluster = _cluster()
    app = make_app(cluster, config=SELF, refresh_interval=3600.0, live_sample_interval=3600.0)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        await pilot.press("enter")  # on alpha
        await wait_until(pilot, lambda: isinstance(app.screen, NodeScreen))
        detail = app.screen.query_one(NodeDetail)
        await _feed(pilot, cluster, 5)
        await wait_until(pilot, lambda: len(_spark(detail, "phi")) == 6, what="6 readings")
        await _feed(pilot, cluster, 3)
        await wait_until(pilot, lambda: len(_spark(detail, "phi")) == 9, what="it follows")


@pytest.mark.asyncio
async def test_sparklines_fit_at_80x24() -> None:
    cluster = _cluster()
    app = make_app(cluster, config=SELF, refresh_interval=3600.0, live_sample_interval=3600.0)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await _feed(pilot, cluster, 4)
        detail = app.node_detail
        for which in ("phi", "heartbeat"):
            spark = detail.query_one(f"#{which}-sparkline", Sparkline)
            assert spark.size.width >= 8 and spark.size.height == 1
            summary = detail.query_one(f"#{which}-summary", Label)
            assert summary.region.right <= detail.region.right
            assert detail.region.contains_region(spark.region)
