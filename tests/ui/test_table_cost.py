"""What the nodes table rewrites and re-renders with 500 nodes, counted (issue 15).

A tick moves every node's age; writing 500 cells into the DataTable throws away every
cell it had rendered, and a filter keystroke that hid 450 rows removed them one at a time
(each removal renumbers the rows after it). The counts are exact: they do not depend on
the machine's speed or load.
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import DataTable

from gossip_tui.testing import FakeCluster
from gossip_tui.ui import GossipApp
from gossip_tui.ui._format import format_age
from gossip_tui.ui._view_model import ViewChanges
from tests.ui.conftest import make_app, wait_until

pytestmark = pytest.mark.asyncio

_NODES = 500
_START = 1_000.0


class _Clock:
    """The cluster's clock, moved by the test only: a tick then changes nothing but it."""

    def __init__(self) -> None:
        self.now = _START

    def __call__(self) -> float:
        return self.now


def _cluster(clock: _Clock) -> FakeCluster:
    cluster = FakeCluster(clock=clock)
    for index in range(_NODES - 1):
        cluster.add_peer(
            f"server:127.0.0.1:{20000 + index}-peer{index}",
            port=20000 + index,
            keys={"role": "worker" if index % 10 else "api"},
            phi=0.5,
            last_update=_START - index,  # ages all differ: "0s" ... "8m18s"
        )
    return cluster


async def _ready(pilot: Any, app: GossipApp) -> None:
    await wait_until(
        pilot, lambda: app.nodes_table.row_count == _NODES, timeout=60, what="500 rows"
    )
    await pilot.pause()


def _count_ticks(app: GossipApp) -> list[int]:
    ticks = [0]
    show = app._show

    def counting_show(changes: ViewChanges) -> None:
        ticks[0] += changes.ticked
        show(changes)

    app._show = counting_show  # type: ignore[method-assign]
    return ticks


async def _tick(pilot: Any, clock: _Clock, ticks: list[int]) -> None:
    seen = ticks[0]
    clock.now += 7.0  # every age shown moves
    await wait_until(pilot, lambda: ticks[0] > seen, timeout=20, what="a tick")
    await pilot.pause()


def _visible_rows(app: GossipApp) -> int:
    table = app.nodes_table
    return table.scrollable_content_region.height - table.header_height


async def test_a_tick_that_only_moves_the_clock_rewrites_the_ages_on_screen_only() -> None:
    clock = _Clock()
    app = make_app(_cluster(clock), refresh_interval=0.05)
    async with app.run_test(size=(160, 45)) as pilot:
        await _ready(pilot, app)
        table = app.nodes_table
        written = 0
        update_cell = table.update_cell

        def counting_update_cell(*args: Any, **kwargs: Any) -> None:
            nonlocal written
            written += 1
            update_cell(*args, **kwargs)

        table.update_cell = counting_update_cell  # type: ignore[method-assign]
        ticks = _count_ticks(app)
        for _ in range(3):
            written = 0
            await _tick(pilot, clock, ticks)
            # Before: all 500 ages, each throwing away the table's rendered cells.
            assert 0 < written <= _visible_rows(app) + 2, f"{written} cells written in a tick"

        # A row off screen shows its age as of now once it scrolls into view.
        last = table.shown_keys[-1]
        row = table._shown[last]
        assert row.last_update is not None
        table.move_cursor(row=table.row_count - 1, animate=False)
        await pilot.pause()
        expected = format_age(clock.now - row.last_update)
        assert table.get_cell(last, "age").plain == expected


async def test_a_tick_that_only_moves_the_clock_renders_only_the_cells_that_changed() -> None:
    clock = _Clock()
    app = make_app(_cluster(clock), refresh_interval=0.05)
    async with app.run_test(size=(160, 45)) as pilot:
        await _ready(pilot, app)
        ticks = _count_ticks(app)
        await _tick(pilot, clock, ticks)
        rendered = 0
        render_cell = DataTable._render_cell

        def counting_render_cell(
            self: DataTable[Any], row_index: int, *args: Any, **kwargs: Any
        ) -> Any:
            nonlocal rendered
            rendered += row_index >= 0
            return render_cell(self, row_index, *args, **kwargs)

        DataTable._render_cell = counting_render_cell  # type: ignore[method-assign]
        try:
            await _tick(pilot, clock, ticks)
            await pilot.pause()
        finally:
            DataTable._render_cell = render_cell  # type: ignore[method-assign]
        # The age column of the rows on screen (twice for the zebra's fixed/scrolling part
        # at most); before, every cell on screen: 9 per row.
        assert 0 < rendered <= 2 * _visible_rows(app) + 4, f"{rendered} cells rendered"


async def test_a_filter_keystroke_rebuilds_the_table_once_instead_of_removing_rows() -> None:
    clock = _Clock()
    app = make_app(_cluster(clock), refresh_interval=1000)
    async with app.run_test(size=(160, 45)) as pilot:
        await _ready(pilot, app)
        table = app.nodes_table
        removed = cleared = 0
        remove_row, clear = table.remove_row, table.clear

        def counting_remove_row(*args: Any) -> None:
            nonlocal removed
            removed += 1
            remove_row(*args)

        def counting_clear(*args: Any, **kwargs: Any) -> Any:
            nonlocal cleared
            cleared += 1
            return clear(*args, **kwargs)

        table.remove_row = counting_remove_row  # type: ignore[method-assign]
        table.clear = counting_clear  # type: ignore[method-assign]
        await pilot.press("slash", "r", "o", "l", "e", "=", "a", "p", "i")
        await wait_until(pilot, lambda: table.row_count == 50, what="the 50 api nodes")
        assert table.filter_text == "role=api"
        # A keystroke that changes many rows is one rebuild: "ro" (none left) and
        # "role=api" (50); "r" removes the one row without an r (this node's) by itself.
        # Before: 499 removals, one at a time.
        assert removed <= 1, f"{removed} rows removed one at a time"
        assert cleared <= 2, f"{cleared} rebuilds"
        await pilot.press("escape")
        await wait_until(pilot, lambda: table.row_count == _NODES, what="all rows back")
        assert removed <= 1
