"""Screenshots of the detail pane's phi and heartbeat sparklines at 80x24 and 200x60, on
fixed fake data: readings posted by the test (the bridge's own timer set to an hour).

Regenerate after an intended change with ``--snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from gossip_tui.testing import FakeCluster, FakeNodeConfig
from gossip_tui.ui import GossipApp
from gossip_tui.ui._trio_bridge import LivenessRead
from gossip_tui.ui.screens.node_screen import NodeScreen
from tests.ui.conftest import FIXED_CLOCK, make_app, open_screen, wait_ready, wait_until

SMALL = (80, 24)
LARGE = (200, 60)
SELF = FakeNodeConfig(node_id="node-0", initial_key_values={"role": "dashboard"})
TICKS = 40


def _app() -> tuple[GossipApp, FakeCluster]:
    cluster = FakeCluster(clock=lambda: FIXED_CLOCK)
    cluster.add_peer("alpha", port=10001, keys={"role": "api"}, heartbeat=400, phi=0.5)
    cluster.add_peer("bravo", port=10002, keys={"role": "worker", "zone": "eu"}, heartbeat=300)
    cluster.add_peer("charlie", port=10003, keys={"role": "worker"}, heartbeat=200)
    app = make_app(cluster, config=SELF, refresh_interval=3600.0, live_sample_interval=3600.0)
    return app, cluster


def _with_history(cluster: FakeCluster, *, enter: bool = False) -> Any:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, GossipApp)
        await wait_ready(pilot)
        await wait_until(pilot, lambda: app.node is not None and app.node.readings_taken >= 1)
        node = app.node
        assert node is not None
        bravo = cluster.members[cluster.peer("bravo")]
        for tick in range(TICKS):
            # bravo slows down, stalls and recovers: phi climbs while its beats thin out.
            stalled = 20 <= tick < 30
            bravo.heartbeat += 0 if stalled else 1 + tick % 2
            bravo.phi = round(0.4 + (tick - 19) * 0.8, 2) if stalled else 0.4 + (tick % 5) / 10
            for member in cluster.members.values():
                if member is not bravo:
                    member.heartbeat += 2
            app.post_message(LivenessRead(node.liveness_readings()))
        model = app.view_model
        assert model is not None
        await wait_until(
            pilot,
            lambda: (
                (h := model.history.of(cluster.peer("bravo"))) is not None
                and h.recorded == TICKS + 1
            ),
            what="the readings",
        )
        await pilot.press("down")  # bravo
        await wait_until(pilot, lambda: (app.nodes_table.selected_key or "").startswith("bravo"))
        if enter:
            await open_screen(pilot, NodeScreen, "enter")
        await pilot.pause()

    return run_before


def test_sparklines_80x24(snap_compare: Any) -> None:
    app, cluster = _app()
    assert snap_compare(app, terminal_size=SMALL, run_before=_with_history(cluster))


def test_sparklines_200x60(snap_compare: Any) -> None:
    app, cluster = _app()
    assert snap_compare(app, terminal_size=LARGE, run_before=_with_history(cluster))


def test_sparklines_node_screen_80x24(snap_compare: Any) -> None:
    app, cluster = _app()
    assert snap_compare(app, terminal_size=SMALL, run_before=_with_history(cluster, enter=True))
