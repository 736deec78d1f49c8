"""What a key press costs the screen, counted rather than timed (issue 15: with 500 nodes a
press shows within 100 ms). Layouts are counted per screen class (Screen._refresh_layout):
each one re-arranges and repaints a whole screen, and the set form cost several per open.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import pytest
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Input
from textual.widgets._footer import FooterKey

from gossip_tui.testing import FakeCluster
from gossip_tui.ui import app as app_module
from gossip_tui.ui._trio_bridge import LivenessRead
from gossip_tui.ui._view_model import ViewChanges
from gossip_tui.ui.screens.agreement import AgreementScreen
from gossip_tui.ui.screens.key_forms import KeyFormScreen
from gossip_tui.ui.screens.key_grid import KeyGridScreen
from gossip_tui.ui.screens.propagation import PropagationScreen
from gossip_tui.ui.widgets.nodes_table import NodesTable
from gossip_tui.ui.widgets.steady_footer import SteadyFooter
from tests.ui.conftest import (
    close_screen,
    make_app,
    open_screen,
    populate,
    wait_ready,
    wait_until,
)

pytestmark = pytest.mark.asyncio


async def test_the_set_form_is_laid_out_once_not_at_every_open(
    cluster: FakeCluster, layouts: Counter[str]
) -> None:
    """The form is built and laid out the first time; later opens only paint it (each
    open composed and laid it out three times)."""
    populate(cluster)
    app = make_app(cluster)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        await open_screen(pilot, KeyFormScreen, "s")
        await close_screen(pilot, KeyFormScreen, "escape")
        first = layouts["KeyFormScreen"]
        assert first >= 1
        for _ in range(3):
            await open_screen(pilot, KeyFormScreen, "s")
            await pilot.pause()
            await close_screen(pilot, KeyFormScreen, "escape")
        assert layouts["KeyFormScreen"] == first


async def test_typing_in_the_set_form_lays_nothing_out(
    cluster: FakeCluster, layouts: Counter[str]
) -> None:
    """Each keystroke cleared the (empty) error line, and clearing it asked for a layout."""
    populate(cluster)
    app = make_app(cluster)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        form = await open_screen(pilot, KeyFormScreen, "s")
        await pilot.pause()
        before = layouts["KeyFormScreen"]
        await pilot.press(*"color")
        await wait_until(pilot, lambda: form.query_one("#key-input", Input).value == "color")
        assert layouts["KeyFormScreen"] == before


async def test_a_kept_form_opens_as_new(cluster: FakeCluster) -> None:
    """What was typed in a form that was cancelled, and its error, are gone when it opens
    again; an edit's form shows the key now edited."""
    populate(cluster)
    app = make_app(cluster)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        form = await open_screen(pilot, KeyFormScreen, "s")
        await pilot.press("enter", *"abc", "enter")  # an empty key: an error
        await wait_until(pilot, lambda: bool(form.error), what="the error")
        await close_screen(pilot, KeyFormScreen, "escape")
        again = await open_screen(pilot, KeyFormScreen, "s")
        assert again is form
        fields = {field.id: field.value for field in again.query(Input)}
        assert fields == {"key-input": "", "value-input": ""}
        assert again.error == ""
        assert app.focused is again.query_one("#key-input", Input)
        await pilot.press(*"k1")
        await wait_until(pilot, lambda: again.query_one("#key-input", Input).value == "k1")


class _Toggle(App[None]):
    """A screen whose one shown binding is enabled or disabled (check_action: None)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("x", "act", "Act")]
    enabled = True

    def compose(self) -> ComposeResult:
        yield SteadyFooter()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return True if action != "act" or self.enabled else None

    def action_act(self) -> None:
        pass


async def test_the_footer_dims_a_disabled_key_in_place() -> None:
    """A key that only turns disabled (or back) keeps its widget and is dimmed: a rebuild of
    the footer lays its whole screen out again."""
    app = _Toggle()
    async with app.run_test(size=(60, 5)) as pilot:
        footer = app.query_one(SteadyFooter)
        await wait_until(pilot, lambda: bool(footer.query(FooterKey)), what="the keys")
        (key,) = [k for k in footer.query(FooterKey) if k.action == "act"]
        built = footer.relayouts  # the first build
        app.enabled = False
        app.refresh_bindings()
        await wait_until(pilot, lambda: key.has_class("-disabled"), what="the key dimmed")
        assert key.is_attached and footer.relayouts == built
        app.enabled = True
        app.refresh_bindings()
        await wait_until(pilot, lambda: not key.has_class("-disabled"), what="the key back")
        assert key.is_attached and footer.relayouts == built


@pytest.mark.parametrize(
    ("key", "kind", "method"),
    [
        ("K", KeyGridScreen, "apply"),
        ("P", PropagationScreen, "refresh_reading"),
        ("A", AgreementScreen, "refresh_reading"),
    ],
)
async def test_a_closed_view_does_no_work_on_the_ticks_after_it(
    cluster: FakeCluster,
    monkeypatch: pytest.MonkeyPatch,
    key: str,
    kind: type[Screen[Any]],
    method: str,
) -> None:
    """The key grid, propagation and agreement screens refresh while they are up; once
    closed, the ticks that follow reach none of them."""
    populate(cluster)
    app = make_app(cluster, refresh_interval=0.05)
    calls = 0
    original = getattr(kind, method)

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(kind, method, counting)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        await open_screen(pilot, kind, key)
        await wait_until(pilot, lambda: calls >= 1, what=f"the {kind.__name__} at work")
        await close_screen(pilot, kind, "escape")
        await pilot.pause()
        calls, ticks = 0, 0
        show = app._show

        def counting_show(changes: ViewChanges) -> None:
            nonlocal ticks
            ticks += changes.ticked
            show(changes)

        monkeypatch.setattr(app, "_show", counting_show)
        await wait_until(pilot, lambda: ticks >= 5, what="five ticks")
        assert calls == 0


async def test_typing_in_the_filter_lays_the_dashboard_out_only_when_the_rows_change(
    cluster: FakeCluster, layouts: Counter[str]
) -> None:
    """Each character typed in the `/` filter laid the whole dashboard out again (the
    field's text grew). Characters that keep every row shown now lay nothing out."""
    populate(cluster)
    app = make_app(cluster)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        await pilot.press("slash")
        await pilot.pause()
        shown = app.nodes_table.row_count
        before = layouts["Screen"]
        await pilot.press(*"127")  # every node's address: no row comes or goes
        await wait_until(pilot, lambda: app.nodes_table.filter_text == "127", what="the filter")
        await pilot.pause()
        assert app.nodes_table.row_count == shown
        assert layouts["Screen"] == before


async def test_j_draws_again_only_the_rows_the_cursor_left_and_reached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DataTable keys each drawn line on the cursor's position, so a `j` drew again every
    table line its frame covered (about five a press at 500 nodes, 160x45); only the row the
    cursor left and the one it reached look different."""
    cluster = FakeCluster()
    for index in range(200):
        cluster.add_peer(f"peer{index}", port=20000 + index, keys={"role": "worker"})
    drawn = 0
    render_line_in_row = DataTable._render_line_in_row

    def counting(self: DataTable[Any], *args: Any, **kwargs: Any) -> Any:
        nonlocal drawn
        drawn += isinstance(self, NodesTable)
        return render_line_in_row(self, *args, **kwargs)

    monkeypatch.setattr(DataTable, "_render_line_in_row", counting)
    app = make_app(cluster, refresh_interval=3600)  # no tick: the presses alone
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_until(pilot, lambda: app.nodes_table.row_count == 201, what="the rows")
        app.nodes_table.focus()
        await pilot.pause()
        drawn = 0
        presses = 10
        for _ in range(presses):
            await pilot.press("j")
            await pilot.pause()
        assert app.nodes_table.cursor_row == presses
        assert drawn <= 2 * presses


async def test_a_key_reaches_the_screen_before_a_tick_that_came_after_it(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tick queued right behind a key was shown at once, and the key's frame waited for
    the tick's redraw of every row it touched. The key's frame now goes first."""
    populate(cluster)
    # The safety net that shows held updates anyway after 0.25 s fired first on a loaded CI
    # machine (the key and its frame took longer): it is not what this test is about.
    monkeypatch.setattr(app_module, "_FLUSH_AT_THE_LATEST", 3600.0)
    app = make_app(cluster, refresh_interval=3600)  # the test posts the one tick
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        app.nodes_table.focus()
        await pilot.pause()
        node = app.node
        assert node is not None
        order: list[str] = []
        row = app.nodes_table.cursor_row
        display = app._display

        def recording(screen: Screen[Any], renderable: Any) -> None:
            display(screen, renderable)
            if renderable is not None and app.nodes_table.cursor_row == row + 1:
                order.append("frame")

        show = app._show

        def recording_show(changes: ViewChanges) -> None:
            if changes.ticked:
                order.append("tick")
            show(changes)

        monkeypatch.setattr(app, "_display", recording)
        monkeypatch.setattr(app, "_show", recording_show)
        cluster.beat()
        # The key in the app's queue, then the tick behind it (the driver's own posting goes
        # through the loop first, which would put the tick ahead).
        key = events.Key("j", "j")
        key.set_sender(app)
        app.post_message(key)
        app.post_message(LivenessRead(node.liveness_readings()))
        await wait_until(pilot, lambda: "tick" in order and "frame" in order, what="both")
        assert order.index("frame") < order.index("tick")
