"""`F` forgets the selected dead or left node in this node's view, after asking."""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot

from gossip_tui.core.models import Liveness, NodeId
from gossip_tui.testing import FakeCluster
from gossip_tui.ui import GossipApp
from gossip_tui.ui._view_model import ClusterCounts
from gossip_tui.ui.screens.key_forms import ConfirmForgetScreen
from tests.ui.conftest import close_screen, make_app, open_screen, wait_ready, wait_until


async def _pick(pilot: Pilot[Any], app: GossipApp, node: NodeId) -> None:
    """Put the Nodes table's cursor on ``node``."""
    table = app.nodes_table
    await wait_until(pilot, lambda: str(node) in table.shown_keys, what=f"{node}'s row")
    table.move_cursor(row=table.shown_keys.index(str(node)))
    await wait_until(
        pilot,
        lambda: table.selected_row is not None and table.selected_row.node == node,
        what=f"{node} selected",
    )


@pytest.mark.asyncio
async def test_f_forgets_a_dead_node_at_once(cluster: FakeCluster) -> None:
    dead = cluster.add_peer("gone", port=10001, liveness=Liveness.DEAD, phi=12.0)
    cluster.add_peer("alive", port=10002)
    # Readings are far apart: only the forget itself can take the row away in time.
    app = make_app(cluster, refresh_interval=60.0)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        assert app.view_model is not None and app.node is not None
        await _pick(pilot, app, dead)
        assert app.view_model.counts == ClusterCounts(live=2, dead=1, known=3)

        await open_screen(pilot, ConfirmForgetScreen, "F")
        await close_screen(pilot, ConfirmForgetScreen, "y")
        assert ("forget", str(dead)) in cluster.handles[app.node.self_id].calls
        assert dead not in cluster.members
        assert str(dead) not in app.nodes_table.shown_keys
        assert app.view_model.counts == ClusterCounts(live=2, dead=0, known=2)
        await pilot.press("q")


@pytest.mark.asyncio
async def test_f_on_a_live_node_is_refused_with_a_notice(cluster: FakeCluster) -> None:
    alive = cluster.add_peer("alive", port=10002)
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        assert app.node is not None
        await _pick(pilot, app, alive)
        await pilot.press("F")
        await wait_until(
            pilot,
            lambda: any("is live" in str(n.message) for n in app._notifications),
            what="the refusal",
        )
        assert not isinstance(app.screen, ConfirmForgetScreen)
        assert alive in cluster.members
        assert not [c for c in cluster.handles[app.node.self_id].calls if c[0] == "forget"]
        await pilot.press("q")


@pytest.mark.asyncio
async def test_cancel_keeps_the_node(cluster: FakeCluster) -> None:
    dead = cluster.add_peer("gone", port=10001, liveness=Liveness.LEFT, phi=12.0)
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        assert app.node is not None
        await _pick(pilot, app, dead)
        await open_screen(pilot, ConfirmForgetScreen, "F")
        await close_screen(pilot, ConfirmForgetScreen, "n")
        assert dead in cluster.members
        assert str(dead) in app.nodes_table.shown_keys
        await pilot.press("q")


@pytest.mark.asyncio
async def test_forgetting_a_restarted_node_forgets_its_folded_generations() -> None:
    cluster = FakeCluster(clock=lambda: 1_000.0)
    old = cluster.add_peer("web", port=10001, generation=1, liveness=Liveness.DEAD, phi=12.0)
    new = cluster.add_peer("web", port=10001, generation=2)
    app = make_app(cluster, refresh_interval=60.0)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        await _pick(pilot, app, new)
        cluster.kill(new)
        await wait_until(
            pilot,
            lambda: (
                app.nodes_table.selected_row is not None
                and app.nodes_table.selected_row.liveness is Liveness.DEAD
            ),
            what="the restarted node dead again",
        )
        await open_screen(pilot, ConfirmForgetScreen, "F")
        await close_screen(pilot, ConfirmForgetScreen, "y")
        # Both generations go: the old one does not come back as a row of its own.
        assert old not in cluster.members and new not in cluster.members
        assert not [k for k in app.nodes_table.shown_keys if k.startswith("web:")]
        await pilot.press("q")
