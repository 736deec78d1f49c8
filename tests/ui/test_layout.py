"""Issue 15: the layout fits 80x24 and uses 200x60 (counts on screen, phi never scrolled
out, the node column sized to the names, panes rebalanced by width)."""

from __future__ import annotations

import attrs
import pytest
from textual.widgets.data_table import ColumnKey

from gossip_tui.testing import FakeCluster
from gossip_tui.ui import GossipApp
from gossip_tui.ui.widgets import ClusterHeader
from tests.ui.conftest import FIXED_CLOCK, make_app, populate, wait_ready

LONG = "server:127.0.0.1:34965-peer"


def _add_long_names(cluster: FakeCluster, count: int) -> None:
    for index in range(count):
        cluster.add_peer(f"{LONG}{index}", port=20000 + index, last_update=FIXED_CLOCK)


def _right_edge_of(app: GossipApp, column: str) -> int:
    """The x just past ``column``, in the table's content (no horizontal scroll)."""
    table = app.nodes_table
    edge = 0
    for key in table.columns:
        edge += table.columns[key].get_render_width(table)
        if key == ColumnKey(column):
            return edge
    raise KeyError(column)


@pytest.mark.asyncio
@pytest.mark.parametrize("size", [(80, 24), (160, 45), (220, 60)])
async def test_counts_and_phi_stay_on_screen(cluster: FakeCluster, size: tuple[int, int]) -> None:
    populate(cluster)
    _add_long_names(cluster, 200)
    app = make_app(cluster)
    async with app.run_test(size=size) as pilot:
        await wait_ready(pilot)
        await pilot.pause()
        header = app.query_one(ClusterHeader)
        assert header.size.height == 2  # never wrapped onto more lines
        first_line = str(header.render()).splitlines()[0]
        assert "live" in first_line and "dead" in first_line
        table = app.nodes_table
        for column in ("phi", "age"):
            assert _right_edge_of(app, column) <= table.scrollable_content_region.width
        # Scrolled sideways to the last columns, name, status, phi and age stay put.
        await pilot.press(*["right"] * 60)
        assert table.scroll_x == table.max_scroll_x
        keys = list(table.columns)
        assert keys.index(ColumnKey("age")) < table.fixed_columns
        # The names are whole wherever the window leaves room for them.
        node_width = table.columns[ColumnKey("node")].width
        if size[0] >= 160:
            assert node_width == len(f"{LONG}199")


@pytest.mark.asyncio
async def test_panes_rebalance_by_width(cluster: FakeCluster) -> None:
    populate(cluster)
    app = make_app(cluster)
    async with app.run_test(size=(220, 60)) as pilot:
        await wait_ready(pilot)
        await pilot.pause()
        log, table = app.event_log, app.nodes_table
        # Wide: the log takes a third of the width and the whole height under the header.
        assert log.size.width >= 220 // 3 - 2
        assert log.size.height > table.size.height
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        await pilot.pause()
        assert table.size.width >= 78  # the nodes across the screen
        assert log.size.width >= 38


@pytest.mark.asyncio
async def test_a_60_character_node_id_never_pushes_phi_off_an_80_column_screen(
    cluster: FakeCluster,
) -> None:
    """The Node column caps and ellipsizes a name over 44 characters (issue 15): status,
    phi and age keep their place on screen, and the name still starts as it does."""
    from tests.ui.conftest import SELF_CONFIG

    long_self = "dashboard-" + "x" * 40 + "-0123456789"
    long_peer = "server:127.0.0.1:34965-" + "very-long-peer-name-" * 2 + "ab"
    assert len(long_self) == 61 and len(long_peer) == 65
    cluster.add_peer(long_peer, port=20001, phi=0.5, last_update=FIXED_CLOCK)
    config = attrs.evolve(SELF_CONFIG, node_id=long_self)
    app = make_app(cluster, config=config)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await pilot.pause()
        table = app.nodes_table
        assert table.row_count == 2
        width = table.scrollable_content_region.width
        for column in ("status", "phi", "age"):
            assert _right_edge_of(app, column) <= width, column
        node_width = table.columns[ColumnKey("node")].width
        assert 12 <= node_width < len(long_self)
        # What the screen shows: the Phi heading, and the names cut with an ellipsis.
        lines = [table.render_line(y).text for y in range(table.size.height)]
        heading = next(line for line in lines if "Node" in line)
        assert "Phi" in heading and "Status" in heading
        shown = "\n".join(lines)
        assert long_self[: node_width - 2] in shown and long_self not in shown
        assert "…" in shown
