"""What a tick and a filter keystroke cost the table, counted rather than timed (issue 15:
with 500 nodes a press shows within 100 ms, and a press that arrives during a tick waits
for the tick's work and paint). Beside test_keypress_cost.py, with its layout counter."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from typing import Any

import pytest
from textual.screen import Screen
from textual.timer import Timer

from gossip_tui.core.models import KeyStatus
from gossip_tui.testing import FakeCluster
from gossip_tui.ui import GossipApp
from gossip_tui.ui.screens.key_forms import KeyFormScreen
from tests.ui.conftest import (
    FIXED_CLOCK,
    FIXED_NOW,
    burst,
    close_screen,
    make_app,
    open_screen,
    wait_until,
)

pytestmark = pytest.mark.asyncio

_PEERS = 200


def _many_peers() -> FakeCluster:
    """200 peers peer0..peer199 on a frozen clock (ages stand still: a tick changes only
    the rows whose readings moved)."""
    cluster = FakeCluster(clock=lambda: FIXED_CLOCK)
    for index in range(_PEERS):
        cluster.add_peer(f"peer{index}", port=20000 + index, keys={"role": "worker"})
    return cluster


async def _all_rows(pilot: Any, app: GossipApp) -> None:
    await wait_until(pilot, lambda: app.nodes_table.row_count == _PEERS + 1, what="the rows")
    await pilot.pause()


async def _no_samples(pilot: Any, app: GossipApp) -> None:
    """The sparkline's sample stops: once a second, a frame of its own (not the one a test
    counts) when the machine is slow enough for a test to last a second."""
    await wait_until(pilot, lambda: app._sampler is not None, what="the sampler")
    assert app._sampler is not None
    app._sampler.pause()


async def _filtered(pilot: Any, app: GossipApp, text: str) -> None:
    """The filter opened and ``text`` typed into it, the table following, all settled."""
    await pilot.press("slash", *text)
    await wait_until(pilot, lambda: app.nodes_table.filter_text == text, what=text)
    await pilot.pause()


async def _on_peer1(pilot: Any, app: GossipApp) -> None:
    """The cursor on peer1 (rows by name: node-0, peer0, peer1, peer10...), which every
    filter below keeps: the detail pane shows the same node throughout."""
    app.nodes_table.focus()
    await pilot.press("j", "j")
    await pilot.pause()
    row = app.nodes_table.selected_row
    assert row is not None and row.node.node_id == "peer1"


async def test_a_tick_that_changed_three_rows_draws_three_table_lines_again() -> None:
    """DataTable keys each drawn line on its update count, which every update_cell bumps: a
    tick that changed three rows' heartbeats drew every row on screen again (~40 lines at
    160x45). Lines are now keyed by what their row shows."""
    cluster = _many_peers()
    app = make_app(cluster, refresh_interval=0.05)
    async with app.run_test(size=(160, 45)) as pilot:
        await _all_rows(pilot, app)
        table = app.nodes_table
        changed = [
            member
            for member in cluster.members.values()
            if member.node.node_id in {"peer0", "peer1", "peer10"}
        ]  # rows 1-3: on screen
        assert len(changed) == 3
        written = table.cells_written
        drawn = table.lines_rendered
        for member in changed:
            member.heartbeat += 1
        await wait_until(pilot, lambda: table.cells_written == written + 3, what="the tick")
        await pilot.pause()
        assert table.lines_rendered - drawn <= 3


async def test_a_keystroke_that_hides_rows_lays_nothing_out(layouts: Counter[str]) -> None:
    """A filter keystroke that hid or showed rows changed the table's virtual size, which
    laid the whole dashboard out (~70 ms at 500 nodes, more than the rest of the
    keystroke); a row removed alone asked for one at once. The table keeps its size on
    screen: a repaint and its scrollbar show the change."""
    app = make_app(_many_peers(), refresh_interval=3600)  # no tick: the keystrokes alone
    async with app.run_test(size=(160, 45)) as pilot:
        await _all_rows(pilot, app)
        await _on_peer1(pilot, app)
        await pilot.press("slash")  # the field appears: a layout
        await pilot.pause()
        before = layouts["Screen"]
        await pilot.press("p")  # hides node-0 alone: removed by itself
        await wait_until(pilot, lambda: app.nodes_table.filter_text == "p", what="p")
        await pilot.pause()
        assert app.nodes_table.row_count == _PEERS
        assert layouts["Screen"] == before
        await pilot.press(*"eer1")  # peer1, peer10..19, peer100..199: a rebuild
        await wait_until(pilot, lambda: app.nodes_table.filter_text == "peer1", what="peer1")
        await pilot.pause()
        assert app.nodes_table.row_count == 111
        assert layouts["Screen"] == before


async def test_a_keystroke_that_changes_the_detail_pane_lays_nothing_out(
    layouts: Counter[str],
) -> None:
    """The detail pane's body was as tall as what it showed: a filter keystroke that moved
    the cursor to a node with more keys, or left no rows ("no node selected", one line), or
    brought rows back changed its height, and each change laid the dashboard out twice
    (the pane's new virtual size asks for another: ~100 ms at 500 nodes). The body fills
    the pane now, whatever it shows that fits: a repaint shows the next."""
    cluster = _many_peers()
    peer19 = next(member for member in cluster.members if member.node_id == "peer19")
    for key in ("zone", "rack", "load"):
        cluster.write(peer19, key, "1", KeyStatus.SET)  # three lines more than peer1's
    app = make_app(cluster, refresh_interval=3600)  # no tick: the keystrokes alone
    async with app.run_test(size=(160, 45)) as pilot:
        await _all_rows(pilot, app)
        await _on_peer1(pilot, app)
        await _filtered(pilot, app, "peer1")
        before = layouts["Screen"]
        steps = (
            ("9", "peer19", "peer19"),
            ("x", "peer19x", None),
            ("backspace", "peer19", "peer19"),
        )
        for key, text, shown in steps:
            await pilot.press(key)
            await wait_until(
                pilot, lambda text=text: app.nodes_table.filter_text == text, what=text
            )
            await pilot.pause()
            node = app.node_detail.shown_node
            assert (node.node.node_id if node is not None else None) == shown
            assert layouts["Screen"] == before, text


async def test_a_keystroke_that_leaves_no_rows_lays_nothing_out(layouts: Counter[str]) -> None:
    """With no rows left, the node column narrowed to its label, and with names long
    enough for the columns to run past the pane's right edge, the horizontal scrollbar
    (zero lines high) went away, and came back with the rows: each laid the dashboard out
    twice. It is always there now, as the vertical one is."""
    cluster = FakeCluster(clock=lambda: FIXED_CLOCK)
    for index in range(_PEERS):
        cluster.add_peer(f"zone-a.rack-7.gossip-peer{index}", port=20000 + index)
    app = make_app(cluster, refresh_interval=3600)
    async with app.run_test(size=(160, 45)) as pilot:
        await _all_rows(pilot, app)
        table = app.nodes_table
        assert table.virtual_size.width > table.size.width  # columns past the right edge
        await _filtered(pilot, app, "peer1")
        before = layouts["Screen"]
        for key, text, rows in (("x", "peer1x", 0), ("backspace", "peer1", 111)):
            await pilot.press(key)
            await wait_until(pilot, lambda text=text: table.filter_text == text, what=text)
            await pilot.pause()
            assert table.row_count == rows
            assert layouts["Screen"] == before, text


async def test_a_keystroke_that_leaves_rows_that_fit_lays_nothing_out(
    layouts: Counter[str],
) -> None:
    """A filter keystroke that left fewer rows than the table holds hid its scrollbar (and
    one that showed more rows brought it back), which laid the whole dashboard out: the
    table's content grew or shrank by the scrollbar's width (~65 ms at 500 nodes, the
    filter presses over 100 ms). The scrollbar keeps its place; rows that fit leave it an
    empty track."""
    app = make_app(_many_peers(), refresh_interval=3600)
    async with app.run_test(size=(160, 45)) as pilot:
        await _all_rows(pilot, app)
        table = app.nodes_table
        await pilot.press("slash")
        await pilot.pause()
        before = layouts["Screen"]
        width = table.scrollable_content_region.width
        for text, rows in (("peer19", 11), ("peer1", 111), ("peer19", 11), ("", _PEERS + 1)):
            table.set_filter(text)
            await pilot.pause()
            assert table.row_count == rows
            assert table.scrollable_content_region.width == width
        assert layouts["Screen"] == before
        table.set_filter("peer19")
        await pilot.pause()
        bar = table.vertical_scrollbar
        assert bar.display and bar.window_virtual_size == 0  # a track, no thumb


async def test_a_rebuilt_table_measures_its_rows_without_rich(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DataTable measured each new row's cells through Rich's measure protocol, which asks
    the console for its options (the terminal's size) once a cell: a filter key that
    rebuilt 500 rows spent ~50 ms measuring 4,500 cells, more than the rebuild. The widths
    come from the cells' texts now, the same widths."""
    import textual.widgets._data_table as data_table_module

    app = make_app(_many_peers(), refresh_interval=3600)  # no tick: the filter alone
    async with app.run_test(size=(160, 45)) as pilot:
        await _all_rows(pilot, app)
        table = app.nodes_table
        widths = {key: column.content_width for key, column in table.columns.items()}
        measured = [0]
        measure = data_table_module.measure

        def counting(*args: Any, **kwargs: Any) -> int:
            measured[0] += 1
            return measure(*args, **kwargs)

        monkeypatch.setattr(data_table_module, "measure", counting)
        for text in ("peer1", "", "peer19", ""):
            rebuilds = table.rebuilds
            table.set_filter(text)
            await pilot.pause()
            assert table.rebuilds == rebuilds + 1
        assert measured[0] == 0
        assert {key: column.content_width for key, column in table.columns.items()} == widths


async def test_a_filter_keystroke_is_one_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """A filter keystroke drew the field's new character in a frame of its own, then the
    rows it filters in another (and the detail of the node the cursor landed on in a
    third): each frame repaints the table, two or three times the drawing of one. Frames
    wait now until the rows and the detail follow the text: the keystroke is one frame."""
    app = make_app(_many_peers(), refresh_interval=3600)  # no tick: the keystrokes alone
    async with app.run_test(size=(160, 45)) as pilot:
        await _all_rows(pilot, app)
        await _no_samples(pilot, app)
        await pilot.press("slash")
        await pilot.pause()
        frames = _count_frames(monkeypatch, app)
        table = app.nodes_table
        # peer1 and its 110 namesakes (a rebuild), peer19.. (the cursor's node is gone:
        # the detail changes), back to peer1 (a rebuild again), then a row or two.
        for key, text in (("p", "p"), ("e", "pe"), ("e", "pee"), ("r", "peer")):
            await pilot.press(key)
            await wait_until(pilot, lambda text=text: table.filter_text == text, what=text)
            await pilot.pause()
        for key, text in (("1", "peer1"), ("9", "peer19"), ("backspace", "peer1")):
            before = frames[0]
            await pilot.press(key)
            await wait_until(pilot, lambda text=text: table.filter_text == text, what=text)
            await pilot.pause()
            assert frames[0] - before == 1, (text, frames[0] - before)
        assert table.row_count == 111


async def test_a_filter_keystrokes_frame_goes_out_without_waiting_for_the_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once the rows followed the text, the frames held for it were let go and the screen
    resumed its refresh timer, which ticks at most every 1/60 s: a keystroke within 1/60 s
    of the last frame waited up to 16 ms more for its own. The screen writes it the moment
    it is idle now, not on the timer's tick."""
    app = make_app(_many_peers(), refresh_interval=3600)  # no tick: the keystrokes alone
    async with app.run_test(size=(160, 45)) as pilot:
        await _all_rows(pilot, app)
        await _no_samples(pilot, app)
        await _filtered(pilot, app, "peer")
        tick = Timer._tick.__code__
        written: list[bool] = []  # per frame: whether a timer's tick wrote it
        shown = asyncio.Event()
        display = app._display

        def recording(screen: Screen[Any], renderable: Any) -> None:
            display(screen, renderable)
            if renderable is None:
                return
            frame = sys._getframe()
            from_timer = False
            while frame is not None:
                from_timer = from_timer or frame.f_code is tick
                frame = frame.f_back
            written.append(from_timer)
            if app.nodes_table.filter_text == "peer1":
                shown.set()

        monkeypatch.setattr(app, "_display", recording)
        burst(app, ["1"])  # as a terminal sends it: no Pilot refresh after it
        await asyncio.wait_for(shown.wait(), 10)
        assert app.nodes_table.row_count == 111
        assert written == [False]


def _count_frames(monkeypatch: pytest.MonkeyPatch, app: GossipApp) -> list[int]:
    """Frames written to the terminal (compositor updates handed to the driver)."""
    frames = [0]
    display = app._display

    def counting(screen: Screen[Any], renderable: Any) -> None:
        frames[0] += renderable is not None
        display(screen, renderable)

    monkeypatch.setattr(app, "_display", counting)
    return frames


async def test_characters_typed_ahead_of_the_filter_rebuild_the_rows_once() -> None:
    """Each character typed into the filter rebuilt the rows for its own text, though the
    characters behind it were already typed: `peer19` in one burst rebuilt them for
    `peer1` (111 rows) and then for `peer19` (11). The last text wins, once."""
    app = make_app(_many_peers(), refresh_interval=3600)
    async with app.run_test(size=(160, 45)) as pilot:
        await _all_rows(pilot, app)
        await pilot.press("slash")
        await pilot.pause()
        table = app.nodes_table
        rebuilds = table.rebuilds
        burst(app, list("peer19"))
        await wait_until(pilot, lambda: table.filter_text == "peer19", what="the filter")
        await pilot.pause()
        assert app.focused is not None and getattr(app.focused, "value", None) == "peer19"
        assert table.row_count == 11
        assert table.rebuilds == rebuilds + 1


async def test_the_set_form_lays_nothing_out_behind_it(layouts: Counter[str]) -> None:
    """Behind a form, the dashboard's keys were hidden from its footer, which rebuilt it and
    laid the dashboard out twice at every open and twice at every close. They now dim in
    place (disabled, not hidden): the dashboard behind the form is only repainted."""
    app = make_app(_many_peers(), refresh_interval=3600)
    async with app.run_test(size=(160, 45)) as pilot:
        await _all_rows(pilot, app)
        await open_screen(pilot, KeyFormScreen, "s")  # the first open builds the form
        await close_screen(pilot, KeyFormScreen, "escape")
        await pilot.pause()
        before = layouts["Screen"]
        for _ in range(3):
            await open_screen(pilot, KeyFormScreen, "s")
            await pilot.pause()
            await close_screen(pilot, KeyFormScreen, "escape")
            await pilot.pause()
        assert layouts["Screen"] == before


async def test_the_event_log_shows_new_lines_in_one_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The log scrolled to its new lines only after the next frame, which showed it as it
    was: each batch of events cost two frames, each repainting the pane. It scrolls at
    once now: one frame."""
    cluster = _many_peers()
    app = make_app(cluster, refresh_interval=3600)  # no tick: the events alone
    async with app.run_test(size=(160, 45)) as pilot:
        await _all_rows(pilot, app)
        await _no_samples(pilot, app)
        log = app.event_log
        for index in range(100):  # more lines than the pane holds: it scrolls
            log.note(f"line {index}", FIXED_NOW)
        await pilot.pause()
        assert log.max_scroll_y > 0 and log.scroll_y == log.max_scroll_y
        frames = 0
        display = app._display

        def counting(screen: Screen[Any], renderable: Any) -> None:
            nonlocal frames
            frames += renderable is not None
            display(screen, renderable)

        monkeypatch.setattr(app, "_display", counting)
        peer = next(node for node in cluster.members if node.node_id == "peer7")
        lines = len(log.lines)
        cluster.write(peer, "load", "0.7", KeyStatus.SET)
        await wait_until(pilot, lambda: len(log.lines) > lines, what="the event's line")
        await pilot.pause()
        assert log.scroll_y == log.max_scroll_y
        assert frames == 1


async def test_a_rebuilt_table_stamps_cells_it_drew_before_instead_of_rendering_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A filter that rebuilds the rows moves them to other indexes: a cell drawn before is
    the same lines with the mouse's row stamped again, not a Rich render (most of a slow
    filter key at 500 nodes); the stamp is the cell's new row, so a click lands on it."""
    from textual.widgets import DataTable

    cluster = _many_peers()
    app = make_app(cluster)
    async with app.run_test(size=(160, 45)) as pilot:
        await _all_rows(pilot, app)
        table = app.nodes_table
        renders = _count_renders(monkeypatch, DataTable)
        table.set_filter("peer1")  # peer1, peer10..peer19, peer100..: rows move up
        await pilot.pause()
        rebuilt = renders[0]
        table.set_filter("")
        await pilot.pause()
        # Back to all rows and to the filter again: every cell on screen was drawn before.
        assert renders[0] - rebuilt <= 2, renders[0] - rebuilt
        back = renders[0]
        table.set_filter("peer1")
        await pilot.pause()
        assert renders[0] - back <= 2, renders[0] - back
        for row_index in range(5):
            lines = table._render_cell(row_index, 0, table.rich_style, 20)
            metas = {seg.style.meta.get("row") for line in lines for seg in line if seg.style}
            assert metas == {row_index}, (row_index, metas)


async def test_a_rebuilt_table_draws_again_only_the_lines_it_never_drew() -> None:
    """A rebuild of the rows (a filter key that hid or showed many) keyed every line of the
    table afresh, by where it sits and the table's update count: every line on screen was
    drawn again, ~3 ms each at 500 nodes, though the rows were the same as a key or two
    before. Lines are keyed by what their row shows now, and stamped with their new row
    for the mouse: back to rows shown before, only the header is drawn again."""
    app = make_app(_many_peers(), refresh_interval=3600)  # no tick: the filter alone
    async with app.run_test(size=(160, 45)) as pilot:
        await _all_rows(pilot, app)
        await _no_samples(pilot, app)
        table = app.nodes_table
        for text in ("peer1", ""):
            table.set_filter(text)
            await pilot.pause()
        for text in ("peer1", ""):  # all rows again, then peer1's again: drawn before
            drawn = table.lines_rendered
            rebuilds = table.rebuilds
            table.set_filter(text)
            await pilot.pause()
            assert table.rebuilds == rebuilds + 1
            assert table.lines_rendered - drawn <= 1, (text, table.lines_rendered - drawn)
        assert table.scroll_y == 0
        for y in range(1, 10):  # under the header: rows 0..8
            strip = table._render_line(y, 0, table.size.width, table.rich_style)
            rows = {seg.style.meta["row"] for seg in strip if seg.style and seg.style.meta}
            assert rows == {y - 1}, (y, rows)


def _count_renders(monkeypatch: pytest.MonkeyPatch, data_table: Any) -> list[int]:
    """Calls of DataTable's own cell render (a Rich render of the cell) for plain cells of
    scrolling rows: the cursor's and the mouse's row, and the fixed row, render anew
    whenever another row comes under them (their highlight is part of what they show)."""
    calls = [0]
    render = data_table._render_cell

    def counting(
        self: Any,
        row_index: int,
        column_index: int,
        base_style: Any,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> Any:
        if not (cursor or hover) and row_index >= self.fixed_rows:
            calls[0] += 1
        return render(self, row_index, column_index, base_style, width, cursor, hover)

    monkeypatch.setattr(data_table, "_render_cell", counting)
    return calls
