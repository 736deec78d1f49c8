"""Issue 15: input that never drops, keys that act on the focused pane, protected and
internal keys, and the habits of k9s/htop/lazygit (j/k, sort keys, drill-down, copy,
pause, theme, key=value filter)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console
from textual import events
from textual.widgets import Input

from gossip_tui.core.models import KeyStatus
from gossip_tui.node import KeyChanged
from gossip_tui.testing import FakeCluster
from gossip_tui.ui import DemoCluster, GossipApp
from gossip_tui.ui.screens import ConfirmDeleteScreen, HelpScreen, KeyFormScreen
from gossip_tui.ui.screens.key_forms import ConfirmProtectedScreen
from gossip_tui.ui.screens.node_screen import NodeScreen
from gossip_tui.ui.widgets import NodeDetail, NodeFilter
from tests.ui.conftest import (
    SELF_CONFIG,
    burst,
    close_screen,
    make_app,
    open_screen,
    populate,
    wait_ready,
    wait_until,
)

LEAVING = "__gossip_tui.leaving"


def _calls(cluster: FakeCluster, app: GossipApp) -> list[tuple[Any, ...]]:
    assert app.node is not None
    return cluster.handles[app.node.self_id].calls


def _text(widget: Any, width: int = 120) -> str:
    """What a Static shows, as plain text, laid out ``width`` columns wide."""
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(widget.content)
    return console.export_text()


def _names(app: GossipApp) -> list[str]:
    return [key.split(":")[0] for key in app.nodes_table.shown_keys]


# -- input that never drops --------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_burst_with_enters_fills_the_form_field_by_field(cluster: FakeCluster) -> None:
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        # `s` opens the form; every key after it arrives before the form is even mounted.
        burst(app, ["s", *"abc", "enter", *"def", "enter"])
        await wait_until(pilot, lambda: ("set", "abc", "def") in _calls(cluster, app))
        assert not isinstance(app.screen, KeyFormScreen)
        # A longer one: every character arrives, in its field.
        key, value = "burst-key-0123456789", "value with spaces, and more: 42"
        burst(app, ["s", *key, "enter", *["space" if c == " " else c for c in value], "enter"])
        await wait_until(pilot, lambda: ("set", key, value) in _calls(cluster, app))


@pytest.mark.asyncio
async def test_a_paste_into_the_form_is_taken_whole(cluster: FakeCluster) -> None:
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        form = await open_screen(pilot, KeyFormScreen, "s")
        app.post_message(events.Paste("pasted-key\nline one\nline two\n"))
        key_field = form.query_one("#key-input", Input)
        value_field = form.query_one("#value-input", Input)
        await wait_until(pilot, lambda: value_field.value == "line one\nline two")
        assert key_field.value == "pasted-key"
        assert form.focused is value_field
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: ("set", "pasted-key", "line one\nline two") in _calls(cluster, app)
        )


@pytest.mark.asyncio
async def test_typing_right_after_slash_reaches_the_filter(cluster: FakeCluster) -> None:
    populate(cluster)
    for index in range(200):  # the issue lost these keys with 200 nodes
        cluster.add_peer(f"peer-{index:03}", port=20000 + index)
    app = make_app(cluster, refresh_interval=0.05)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        # "delta" holds a `d` and an `e`: delete and edit, were they to reach the table.
        burst(app, ["slash", *"delta"])
        field = app.query_one(NodeFilter)
        await wait_until(pilot, lambda: field.value == "delta", what="every letter")
        await wait_until(pilot, lambda: _names(app) == ["delta"])
        assert not isinstance(app.screen, ConfirmDeleteScreen | KeyFormScreen)


@pytest.mark.asyncio
async def test_a_validation_error_focuses_the_field_at_fault(cluster: FakeCluster) -> None:
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        form = await open_screen(pilot, KeyFormScreen, "s")
        await pilot.press("enter", *"value", "enter")  # no key
        await wait_until(pilot, lambda: "must not be empty" in form.error)
        assert form.focused is form.query_one("#key-input", Input)
        await pilot.press(*"__gossip_tui.x", "enter", "enter")
        await wait_until(pilot, lambda: "belong to the node" in form.error)
        assert form.focused is form.query_one("#key-input", Input)
        assert not [call for call in _calls(cluster, app) if call[0] == "set"]


@pytest.mark.asyncio
async def test_edit_and_delete_act_only_on_the_focused_local_keys(cluster: FakeCluster) -> None:
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        await wait_until(pilot, lambda: app.local_keys.selected_key == "role")
        assert app.focused is app.nodes_table
        await pilot.press("d")
        await pilot.pause()
        # Nothing asked about a key out of sight: focus went to the pane the key is in.
        assert not isinstance(app.screen, ConfirmDeleteScreen)
        assert app.focused is app.local_keys
        await open_screen(pilot, ConfirmDeleteScreen, "d")
        await close_screen(pilot, ConfirmDeleteScreen, "n")
        app.screen.set_focus(app.nodes_table)
        await pilot.press("e")
        await pilot.pause()
        assert not isinstance(app.screen, KeyFormScreen)


# -- protected and internal keys, one spelling per status --------------------------------


@pytest.mark.asyncio
async def test_bind_changes_only_after_a_confirmation(cluster: FakeCluster) -> None:
    config = SELF_CONFIG.__class__(node_id="node-0", initial_key_values={"bind": "127.0.0.1:10000"})
    app = make_app(cluster, config=config)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        await wait_until(pilot, lambda: app.local_keys.selected_key == "bind")
        app.screen.set_focus(app.local_keys)
        for answer in ("n", "y"):
            await open_screen(pilot, KeyFormScreen, "e")
            app.screen.query_one("#value-input", Input).value = ""
            await open_screen(pilot, ConfirmProtectedScreen, "X", "enter")
            assert not [call for call in _calls(cluster, app) if call[0] == "set"]
            await close_screen(pilot, ConfirmProtectedScreen, answer)
        assert [call for call in _calls(cluster, app) if call[0] == "set"] == [("set", "bind", "X")]
        await open_screen(pilot, ConfirmProtectedScreen, "d")
        await close_screen(pilot, ConfirmProtectedScreen, "escape")
        assert ("delete", "bind") not in _calls(cluster, app)


@pytest.mark.asyncio
async def test_internal_keys_are_hidden_and_statuses_read_alike(cluster: FakeCluster) -> None:
    peer = cluster.add_peer("alpha", port=10001, keys={"role": "api", LEAVING: "1"})
    config = SELF_CONFIG.__class__(node_id="node-0", initial_key_values={"role": "x", LEAVING: "1"})
    app = make_app(cluster, config=config)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        await wait_until(pilot, lambda: app.local_keys.row_count == 1)
        assert app.local_keys.selected_key == "role"
        assert app.local_keys.border_title == "Local keys (1)"
        assert app.local_keys.get_cell("role", "status").plain == "set"
        table = app.nodes_table
        assert table.get_cell(str(peer), "keys").plain == "1"
        cluster.emit(KeyChanged(peer, LEAVING, "2", 9))
        cluster.emit(KeyChanged(peer, "zone", "eu", 10))
        await wait_until(pilot, lambda: "zone" in "".join(x.text for x in app.event_log.lines))
        assert LEAVING not in "".join(line.text for line in app.event_log.lines)
        await wait_until(pilot, lambda: (table.selected_key or "").startswith("alpha"))
        detail = app.query_one(NodeDetail)
        await wait_until(pilot, lambda: detail.shown_node is not None)
        shown = _text(detail.query_one("#node-detail-body"))
        assert "role" in shown and LEAVING not in shown
        # The detail spells the key status as the local keys pane does.
        assert " set" in shown and "Set" not in shown

        # Deleted keys stay listed until collected: the title counts the rows it heads.
        app.screen.set_focus(app.local_keys)
        await pilot.press("d", "y")
        await wait_until(pilot, lambda: "deleted" in str(app.local_keys.border_title))
        assert app.local_keys.border_title == "Local keys (1) · 1 deleted"
        assert app.local_keys.get_cell("role", "status").plain == "deleted"


# -- habits -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_j_k_move_and_digits_sort_by_their_column(cluster: FakeCluster) -> None:
    populate(cluster)
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        table = app.nodes_table
        assert table.cursor_row == 0
        await pilot.press("j", "j")
        assert table.cursor_row == 2
        await pilot.press("k")
        assert table.cursor_row == 1
        await pilot.press("G")
        assert table.cursor_row == table.row_count - 1
        await pilot.press("g")
        assert table.cursor_row == 0
        await pilot.press("3")  # the third column: phi
        assert (table.sort_column, table.sort_reverse) == ("phi", False)
        await pilot.press("3")
        assert (table.sort_column, table.sort_reverse) == ("phi", True)
        assert table.get_cell(table.shown_keys[0], "phi").plain == "11.3"
        await pilot.press("5")
        assert (table.sort_column, table.sort_reverse) == ("heartbeat", False)


@pytest.mark.asyncio
async def test_enter_drills_down_to_the_node_full_screen(cluster: FakeCluster) -> None:
    populate(cluster)
    app = make_app(cluster, refresh_interval=0.05)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        await pilot.press("j")  # bravo
        await wait_until(pilot, lambda: (app.nodes_table.selected_key or "").startswith("bravo"))
        screen = await open_screen(pilot, NodeScreen, "enter")
        assert screen.node is not None and screen.node.node.node_id == "bravo"
        body = screen.query_one("#node-detail-body")
        await wait_until(pilot, lambda: "shards" in _text(body))
        # It follows the node while it is up.
        cluster.members[cluster.peer("bravo")].heartbeat = 5_555
        await wait_until(pilot, lambda: "5555" in _text(body), what="a newer reading")
        await close_screen(pilot, NodeScreen, "escape")


@pytest.mark.asyncio
async def test_c_copies_what_is_under_the_cursor(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(cluster)
    app = make_app(cluster)
    copied: list[str] = []
    monkeypatch.setattr(app, "copy_to_clipboard", copied.append)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        await pilot.press("c")
        assert copied == ["alpha"]
        app.screen.set_focus(app.local_keys)
        await pilot.press("c")
        assert copied == ["alpha", "dashboard"]


@pytest.mark.asyncio
async def test_p_pauses_the_view_and_resume_catches_up(cluster: FakeCluster) -> None:
    peer = cluster.add_peer("alpha", port=10001, heartbeat=10)
    app = make_app(cluster, refresh_interval=0.05)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        table = app.nodes_table
        await pilot.press("p")
        assert app.paused
        readings = cluster.handles[app.node.self_id].readings_taken if app.node else 0
        cluster.members[peer].heartbeat = 777
        late = cluster.add_peer("late", port=10002)
        handle = cluster.handles[app.node.self_id] if app.node else None
        assert handle is not None
        await wait_until(pilot, lambda: handle.readings_taken > readings + 2, what="readings")
        await pilot.pause()
        assert table.get_cell(str(peer), "heartbeat").plain == "10"  # frozen
        assert str(late) not in table.shown_keys
        assert app.held is not None and app.held.pushes > 0
        await pilot.press("p")
        assert not app.paused
        assert table.get_cell(str(peer), "heartbeat").plain == "777"
        assert str(late) in table.shown_keys


@pytest.mark.asyncio
async def test_capital_t_switches_the_theme(cluster: FakeCluster) -> None:
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        seen = {app.theme}
        for _ in range(3):
            await pilot.press("T")
            seen.add(app.theme)
        assert len(seen) == 4
        assert all(theme in app.available_themes for theme in seen)


@pytest.mark.asyncio
async def test_the_filter_takes_key_value_selectors(cluster: FakeCluster) -> None:
    populate(cluster)
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        await pilot.press("slash")
        field = app.query_one(NodeFilter)
        field.value = "role=api"
        await wait_until(pilot, lambda: _names(app) == ["alpha"])
        field.value = "role!=api"
        await wait_until(
            pilot, lambda: _names(app) == ["bravo", "charlie", "delta", "echo", "node-0"]
        )
        field.value = "role=worker live"
        await wait_until(pilot, lambda: _names(app) == ["bravo"])
        # A key changing its value moves the node in or out of the filter.
        cluster.write(cluster.peer("alpha"), "role", "worker", KeyStatus.SET)
        await wait_until(pilot, lambda: _names(app) == ["alpha", "bravo"])


@pytest.mark.asyncio
async def test_help_runs_a_long_section_on_into_the_next_column(cluster: FakeCluster) -> None:
    # 20 lines hold 16 rows a column: the dashboard's 20 keys go on in the second column
    # (three of 16 rows hold them all), where keeping sections whole would scroll.
    app = make_app(cluster)
    async with app.run_test(size=(120, 20)) as pilot:
        await wait_ready(pilot)
        await open_screen(pilot, HelpScreen, "question_mark")
        await pilot.pause()
        body = app.screen.query_one("#help-body")
        assert body.max_scroll_y == 0 and body.max_scroll_x == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("demo", [False, True], ids=["node", "demo"])
async def test_help_fits_on_screen_at_80x24(cluster: FakeCluster, demo: bool) -> None:
    # The demo lists one key more (x, stop a random peer): it must fit too.
    app = make_app(cluster, demo=DemoCluster(1) if demo else None)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await open_screen(pilot, HelpScreen, "question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        assert any(keys == "x" for _section, keys, _text in app.screen.rows) is demo
        body = app.screen.query_one("#help-body")
        assert body.max_scroll_y == 0 and body.max_scroll_x == 0
        table = app.screen.query_one("#help-table")
        text = _text(table, table.content_size.width)
        # Nothing cut: the only ellipses are the keys' own ("1…9", the sort keys).
        assert "Column sort; again flips" in text
        assert "…" not in text.replace("1…9", "").replace("1…7", "")
