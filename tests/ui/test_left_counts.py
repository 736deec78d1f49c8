"""Left is not dead: the header counts nodes that left apart from dead ones, and draws
them in another colour, as the table does."""

from __future__ import annotations

import pytest

from gossip_tui.core.models import Liveness
from gossip_tui.testing import FakeCluster
from gossip_tui.ui._format import STATUS_STYLES
from gossip_tui.ui._view_model import ClusterCounts
from gossip_tui.ui.widgets.cluster_header import ClusterHeader
from tests.ui.conftest import header_span_style, make_app, wait_ready


@pytest.mark.asyncio
async def test_the_header_counts_left_apart_from_dead_and_not_in_red(
    cluster: FakeCluster,
) -> None:
    cluster.add_peer("alpha")
    cluster.add_peer("crashed", liveness=Liveness.DEAD)
    cluster.add_peer("gone", liveness=Liveness.LEFT)
    app = make_app(cluster)
    async with app.run_test(size=(140, 36)) as pilot:
        await wait_ready(pilot)
        assert app.view_model is not None
        assert app.view_model.counts == ClusterCounts(live=2, dead=1, known=4, left=1)
        assert "red" in header_span_style(app, "1 dead")
        assert "red" not in header_span_style(app, "1 left")
        await pilot.press("q")


@pytest.mark.asyncio
async def test_no_left_count_while_nobody_left(cluster: FakeCluster) -> None:
    # At 80 columns every cell of the counts line counts: "0 left" is not shown.
    cluster.add_peer("crashed", liveness=Liveness.DEAD)
    app = make_app(cluster)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        assert "left" not in str(app.screen.query_one(ClusterHeader).render())
        await pilot.press("q")


def test_left_and_dead_rows_are_drawn_in_different_colours() -> None:
    assert STATUS_STYLES[Liveness.LEFT] != STATUS_STYLES[Liveness.DEAD]
    assert "red" not in STATUS_STYLES[Liveness.LEFT]
