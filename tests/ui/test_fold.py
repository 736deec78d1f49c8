"""A restarted node is one row: older generations of a node id fold into the live one."""

from __future__ import annotations

import io
import random
import re

import outcome
import pytest
from rich.console import Console
from textual.widgets import Static

from gossip_tui.core.failure_detector import FailureDetectorConfig
from gossip_tui.core.models import Liveness, SocketAddress
from gossip_tui.node import NodeConfig, open_node
from gossip_tui.testing import FakeCluster
from gossip_tui.ui import DemoCluster, GossipApp
from gossip_tui.ui._view_model import ClusterCounts
from gossip_tui.ui.screens.node_screen import NodeScreen
from gossip_tui.ui.widgets.node_detail import NodeDetail
from tests.ui.conftest import make_app, open_screen, wait_ready, wait_until

OLD, NEW = 1_700_000_000, 1_700_000_500


class _Clock:
    """A cluster clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _statuses(app: GossipApp) -> dict[str, str]:
    table = app.nodes_table
    return {key: table.get_cell(key, "status").plain for key in table.shown_keys}


def _detail_text(app: GossipApp, where: str = "#node-detail") -> str:
    """What the detail pane (or the node screen's, ``#node-screen-detail``) shows, as
    plain text."""
    body = app.screen.query_one(where, NodeDetail).query_one("#node-detail-body", Static)
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(body.content)
    return console.export_text()


@pytest.mark.asyncio
async def test_a_restarted_peer_is_one_row_that_says_when_it_restarted() -> None:
    clock = _Clock(1_000.0)
    cluster = FakeCluster(clock=clock)
    old = cluster.add_peer("web", port=10001, generation=OLD, liveness=Liveness.DEAD, phi=12.0)
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        assert app.view_model is not None
        await wait_until(pilot, lambda: str(old) in _statuses(app), what="the dead generation")
        assert app.view_model.counts == ClusterCounts(live=1, dead=1, known=2)

        clock.now = 1_010.0  # the new generation is first seen here at 1010
        new = cluster.add_peer("web", port=10001, generation=NEW)
        await wait_until(pilot, lambda: str(new) in _statuses(app), what="the new generation")
        clock.now = 1_130.0
        cluster.beat()
        await wait_until(
            pilot, lambda: _statuses(app).get(str(new)) == "live ↻2m00s", what="the restart note"
        )
        # With nothing new from it, the note still ages with the readings.
        clock.now = 1_190.0
        await wait_until(
            pilot, lambda: _statuses(app).get(str(new)) == "live ↻3m00s", what="the note aged"
        )
        # One row for "web": the dead twin is folded into it, and not counted as dead.
        assert str(old) not in _statuses(app)
        assert app.view_model.counts == ClusterCounts(live=2, dead=0, known=2)
        view = app.last_snapshot
        assert view is not None and old not in {row.node for row in view.nodes}

        # The `dead` filter does not find it either.
        app.nodes_table.set_filter("dead")
        await wait_until(pilot, lambda: not app.nodes_table.shown_keys, what="no dead row")
        app.nodes_table.set_filter("")
        await wait_until(pilot, lambda: str(new) in app.nodes_table.shown_keys)

        # The detail pane says it restarted, and from which generation.
        app.nodes_table.move_cursor(row=app.nodes_table.shown_keys.index(str(new)))
        await wait_until(
            pilot,
            lambda: "restarted" in _detail_text(app) and f"generation {OLD}" in _detail_text(app),
            what="the restart in the detail pane",
        )
        assert "3m00s ago" in _detail_text(app)
        await pilot.press("q")


@pytest.mark.asyncio
async def test_when_the_new_generation_dies_too_its_row_is_the_one_dead_row() -> None:
    cluster = FakeCluster(clock=lambda: 1_000.0)
    old = cluster.add_peer("web", port=10001, generation=OLD, liveness=Liveness.DEAD, phi=12.0)
    new = cluster.add_peer("web", port=10001, generation=NEW)
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        assert app.view_model is not None
        await wait_until(pilot, lambda: str(new) in _statuses(app), what="the new generation")
        assert str(old) not in _statuses(app)

        cluster.kill(new)
        await wait_until(
            pilot, lambda: _statuses(app).get(str(new)) == "dead", what="the new one dead"
        )
        assert str(old) not in _statuses(app)
        assert app.view_model.counts == ClusterCounts(live=1, dead=1, known=2)

        cluster.revive(new)
        await wait_until(
            pilot, lambda: _statuses(app).get(str(new)) == "live ↻now", what="back, folded"
        )
        assert str(old) not in _statuses(app)
        await pilot.press("q")


@pytest.mark.asyncio
async def test_the_node_screen_says_when_the_node_restarted_as_the_pane_does() -> None:
    clock = _Clock(1_000.0)
    cluster = FakeCluster(clock=clock)
    cluster.add_peer("web", port=10001, generation=OLD, liveness=Liveness.DEAD, phi=12.0)
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        clock.now = 1_010.0  # the new generation is first seen here at 1010
        new = cluster.add_peer("web", port=10001, generation=NEW)
        clock.now = 1_190.0
        cluster.beat()
        await wait_until(
            pilot, lambda: _statuses(app).get(str(new)) == "live ↻3m00s", what="the restart"
        )
        app.nodes_table.move_cursor(row=app.nodes_table.shown_keys.index(str(new)))
        await wait_until(pilot, lambda: "restarted" in _detail_text(app), what="the pane's line")
        pane_line = _restart_line(_detail_text(app))
        assert pane_line == f"restarted 3m00s ago (was generation {OLD})"

        await open_screen(pilot, NodeScreen, "enter")
        screen_text = _detail_text(app, "#node-screen-detail")
        assert _restart_line(screen_text) == pane_line
        await pilot.press("escape", "q")


def _restart_line(text: str) -> str:
    """The "restarted" fact of a rendered detail, label and value ("" when none)."""
    found = re.search(r"restarted +(\S.*?\))", text)
    return f"restarted {found.group(1)}" if found else ""


@pytest.mark.asyncio
async def test_a_newer_generation_never_live_does_not_hide_the_node() -> None:
    # Anyone can gossip a made-up generation of a real name: until it beats it is a ghost.
    cluster = FakeCluster(clock=lambda: 1_000.0)
    real = cluster.add_peer("web", port=10001, generation=OLD)
    ghost = cluster.add_peer(
        "web", port=10001, generation=NEW, liveness=Liveness.DEAD, announce=False
    )
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        await wait_until(
            pilot, lambda: {str(real), str(ghost)} <= set(_statuses(app)), what="both rows"
        )
        assert _statuses(app)[str(real)] == "live"
        await pilot.press("q")


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_real_peer_restarted_with_its_node_id_is_one_row() -> None:
    config = NodeConfig(
        listen_addr=SocketAddress.parse("127.0.0.1:0"),
        node_id="fold",
        gossip_interval=0.05,
        failure_detector=FailureDetectorConfig(initial_interval=0.1),
    )
    demo = DemoCluster(1, restart_delay=0.5, rng=random.Random(3))
    app = GossipApp(config, open_node, demo=demo, refresh_interval=0.1, cursor_blink=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        await wait_until(pilot, lambda: len(demo.running) == 1, timeout=15, what="the peer")
        (first,) = demo.running
        await wait_until(
            pilot, lambda: _statuses(app).get(str(first)) == "live", timeout=15, what="it live"
        )
        await pilot.press("x")  # the demo stops it and starts it again: same id, new generation

        def restarted_row() -> bool:
            rows = [k for k in _statuses(app) if k.startswith(f"{first.node_id}:")]
            return len(rows) == 1 and rows[0] != str(first)

        await wait_until(pilot, restarted_row, timeout=20, what="one row, the new generation")
        (row,) = [k for k in _statuses(app) if k.startswith(f"{first.node_id}:")]
        assert _statuses(app)[row].startswith("live ↻")
        # The node itself still knows the old generation: the dashboard folded it.
        assert app.node is not None
        assert first in {reading.node for reading in app.node.liveness_readings().nodes}
        await pilot.press("q")
    assert isinstance(app.trio_outcome, outcome.Value)
