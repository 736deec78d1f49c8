"""Screenshots of the key grid (`K`) at 80x24 and 200x60, on fixed fake data: fixed clocks,
readings posted by the test (the bridge's own timer set to an hour), no blinking cursor.

Regenerate after an intended change with ``--snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from gossip_tui.core.models import KeyStatus, Liveness
from gossip_tui.testing import FakeCluster, FakeNodeConfig
from gossip_tui.ui import GossipApp
from gossip_tui.ui._trio_bridge import LivenessRead
from gossip_tui.ui.screens.key_grid import KeyGridScreen
from tests.ui.conftest import FIXED_CLOCK, make_app, open_screen, wait_ready, wait_until

SMALL = (80, 24)
LARGE = (200, 60)
SELF = FakeNodeConfig(
    node_id="node-0", initial_key_values={"role": "dashboard", "svc.http": "127.0.0.1:8000"}
)


class Clock:
    def __init__(self) -> None:
        self.now = FIXED_CLOCK - 120.0

    def __call__(self) -> float:
        return self.now


def _cluster(clock: Clock, peers: int) -> FakeCluster:
    cluster = FakeCluster(clock=clock)
    for index in range(peers):
        keys = {"role": "worker"}
        if index % 4 != 3:  # every fourth one has no svc keys
            keys["svc.http"] = f"10.0.{index // 10}.{index % 10}:8080"
        if index % 2 == 0:
            keys["svc.grpc"] = f"10.0.{index // 10}.{index % 10}:9090"
        cluster.add_peer(
            f"server:127.0.0.1:{34000 + index}-peer{index:02d}",
            port=20000 + index,
            keys=keys,
            heartbeat=100 + index,
            liveness=Liveness.DEAD if index == 5 else Liveness.LIVE,
            phi=9.5 if index == 5 else 0.6,
        )
    return cluster


def _app(cluster: FakeCluster) -> GossipApp:
    return make_app(cluster, config=SELF, refresh_interval=3600.0, live_sample_interval=3600.0)


def _grid_on(cluster: FakeCluster, clock: Clock, typed: str) -> Any:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, GossipApp)
        await wait_ready(pilot)
        await wait_until(pilot, lambda: app.node is not None and app.node.readings_taken >= 1)
        node = app.node
        assert node is not None
        # Two changes seen at two readings, then the clock moves on: ages of 1m40s (the
        # first read), 70s, 20s.
        clock.now = FIXED_CLOCK - 80.0
        cluster.set_peer_key(cluster.peer("server:127.0.0.1:34001-peer01"), "svc.http", "moved")
        await pilot.pause()
        clock.now = FIXED_CLOCK - 70.0
        app.post_message(LivenessRead(node.liveness_readings()))
        cluster.write(
            cluster.peer("server:127.0.0.1:34002-peer02"), "svc.http", "", KeyStatus.DELETED
        )
        await pilot.pause()
        clock.now = FIXED_CLOCK - 20.0
        app.post_message(LivenessRead(node.liveness_readings()))
        await pilot.pause()
        clock.now = FIXED_CLOCK
        app.post_message(LivenessRead(node.liveness_readings()))
        await pilot.pause()
        screen = await open_screen(pilot, KeyGridScreen, "K", *typed, "enter")
        await wait_until(pilot, lambda: app.focused is screen.grid)
        await pilot.pause()

    return run_before


def test_key_grid_80x24(snap_compare: Any) -> None:
    clock = Clock()
    cluster = _cluster(clock, 8)
    assert snap_compare(
        _app(cluster), terminal_size=SMALL, run_before=_grid_on(cluster, clock, "svc.http")
    )


def test_key_grid_prefix_200x60(snap_compare: Any) -> None:
    clock = Clock()
    cluster = _cluster(clock, 24)
    assert snap_compare(
        _app(cluster), terminal_size=LARGE, run_before=_grid_on(cluster, clock, "svc.")
    )
