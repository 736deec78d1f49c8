"""The dashboard against fake nodes: keys, liveness, filter, sort, help, lifecycle."""

from __future__ import annotations

import gc

import outcome
import pytest
import trio
from textual.command import CommandList
from textual.widgets import Input
from textual.widgets.data_table import ColumnKey

from gossip_tui.core.models import Liveness, SocketAddress
from gossip_tui.node import KeyChanged
from gossip_tui.testing import FakeCluster, FakeNode, FakeNodeConfig, crashing_open_node
from gossip_tui.ui import GossipApp, run_dashboard
from gossip_tui.ui.screens import ConfirmDeleteScreen, HelpScreen, KeyFormScreen
from gossip_tui.ui.widgets import LiveHistory, NodeFilter
from gossip_tui.ui.widgets.nodes_table import COLUMN_KEYS
from tests.ui.conftest import (
    SELF_CONFIG,
    close_screen,
    make_app,
    open_screen,
    populate,
    wait_ready,
    wait_until,
)


def _status(app: GossipApp, row_key: str) -> str:
    return app.nodes_table.get_cell(row_key, "status").plain


def _log_text(app: GossipApp) -> str:
    return "".join(line.text for line in app.event_log.lines)  # wrapped lines, rejoined


@pytest.mark.asyncio
async def test_set_key_reaches_the_node_and_another_node_sees_it(cluster: FakeCluster) -> None:
    observer = cluster.add_node(FakeNodeConfig(node_id="observer", listen_addr=_addr(10009)))
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        assert app.node is not None
        me = app.node.self_id

        await open_screen(pilot, KeyFormScreen, "s")
        await pilot.press(*"color", "enter", *"blue", "enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, KeyFormScreen), what="close")

        handle = cluster.handles[me]
        assert ("set", "color", "blue") in handle.calls
        # Another node of the same (fake) cluster sees the new key-value.
        assert observer.get("color", node=me) == "blue"
        seen = observer.snapshot().node(me)
        assert seen is not None and seen.key_values["color"].value == "blue"
        # And the dashboard shows it among the local keys.
        await wait_until(pilot, lambda: app.local_keys.value_of("color") is not None)


@pytest.mark.asyncio
async def test_validation_rejects_an_empty_key(cluster: FakeCluster) -> None:
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        form = await open_screen(pilot, KeyFormScreen, "s")
        await pilot.press("enter", *_keys("some value"), "enter")
        await pilot.pause()
        assert "must not be empty" in form.error
        assert app.screen is form  # still open
        assert app.node is not None
        assert not [call for call in cluster.handles[app.node.self_id].calls if call[0] == "set"]
        await close_screen(pilot, KeyFormScreen, "escape")


@pytest.mark.asyncio
async def test_edit_prefills_the_selected_local_key(cluster: FakeCluster) -> None:
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        await wait_until(pilot, lambda: app.local_keys.selected_key == "role")
        app.screen.set_focus(app.local_keys)
        await open_screen(pilot, KeyFormScreen, "e")
        assert app.screen.query_one("#key-input", Input).value == "role"
        value = app.screen.query_one("#value-input", Input)
        assert value.value == "dashboard"
        value.value = ""
        await close_screen(pilot, KeyFormScreen, *"viewer", "enter")
        assert app.node is not None
        assert ("set", "role", "viewer") in cluster.handles[app.node.self_id].calls


@pytest.mark.asyncio
async def test_delete_asks_first_and_set_with_ttl(cluster: FakeCluster) -> None:
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        assert app.node is not None
        calls = cluster.handles[app.node.self_id].calls
        await wait_until(pilot, lambda: app.local_keys.selected_key == "role")
        app.screen.set_focus(app.local_keys)

        await open_screen(pilot, ConfirmDeleteScreen, "d")
        await close_screen(pilot, ConfirmDeleteScreen, "n")
        assert ("delete", "role") not in calls

        await open_screen(pilot, ConfirmDeleteScreen, "d")
        await pilot.press("y")
        await wait_until(pilot, lambda: ("delete", "role") in calls, what="the delete")

        await open_screen(pilot, KeyFormScreen, "t")
        # An empty TTL field is chitchat's TTL (after the grace period).
        await pilot.press(*"lease", "enter", *"held", "enter", "enter")
        await wait_until(pilot, lambda: ("set_with_ttl", "lease", "held") in calls)


@pytest.mark.asyncio
async def test_a_peer_death_shows_in_the_table(cluster: FakeCluster) -> None:
    peer = cluster.add_peer("peer-1", port=10001)
    # Only the NodeDead event can refresh the table; the sparkline samples often.
    app = make_app(cluster, refresh_interval=60.0, live_sample_interval=0.05)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        assert _status(app, str(peer)) == "live"
        history = app.query_one(LiveHistory)
        assert history.samples[-1] == 2
        rows_before = app.nodes_table.row_count

        cluster.kill(peer)

        await wait_until(pilot, lambda: _status(app, str(peer)) == "dead", what="dead status")
        assert app.nodes_table.row_count == rows_before
        assert app.last_snapshot is not None and peer in app.last_snapshot.dead_nodes
        await wait_until(pilot, lambda: "dead" in _log_text(app), what="the log line")
        assert f"dead    {peer.node_id}" in _log_text(app)
        await wait_until(pilot, lambda: history.samples[-1] == 1, what="the sparkline's dip")
        assert 2 in history.samples


@pytest.mark.asyncio
async def test_events_from_the_first_replies_are_logged(cluster: FakeCluster) -> None:
    # A seed's first reply can land while the dashboard still starts the HTTP API: the
    # keys it carries are events all the same.
    peer = cluster.add_peer("seed-1", port=10001)

    async def http_that_takes_a_moment(node: FakeNode) -> None:
        cluster.emit(KeyChanged(peer, "role", "indexer", 1))
        await trio.sleep(0)

    app = make_app(cluster, http=http_that_takes_a_moment)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        await wait_until(pilot, lambda: "indexer" in _log_text(app), what="the early key")
        assert "seed-1 role = indexer (v1)" in _log_text(app)


@pytest.mark.asyncio
async def test_rows_update_in_place_and_keep_the_cursor(cluster: FakeCluster) -> None:
    for index in range(1, 6):
        cluster.add_peer(f"peer-{index}", port=10000 + index, heartbeat=100 - index)
    app = make_app(cluster, refresh_interval=0.05)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        table = app.nodes_table
        table.sort_by("heartbeat", reverse=True)
        table.move_cursor(row=1)
        await pilot.pause()
        selected = table.selected_key
        assert selected is not None and selected.startswith("peer-2")

        # peer-2 overtakes everyone: it moves to the top, and the cursor follows it.
        cluster.members[cluster.peer("peer-2")].heartbeat = 1_000
        await wait_until(pilot, lambda: table.shown_keys[0] == selected, what="the re-sort")
        assert table.selected_key == selected
        assert table.cursor_row == 0
        assert table.get_cell(selected, "heartbeat").plain == "1000"

        # A node that disappears loses its row; the others stay.
        cluster.remove(cluster.peer("peer-5"))
        await wait_until(pilot, lambda: table.row_count == 5, what="the removal")
        assert table.selected_key == selected


@pytest.mark.asyncio
async def test_slash_filters_rows_and_escape_clears(cluster: FakeCluster) -> None:
    populate(cluster)
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        table = app.nodes_table
        assert table.row_count == 6

        await pilot.press("slash")
        field = app.query_one(NodeFilter)
        await wait_until(pilot, lambda: field.has_focus, what="the filter's focus")
        await pilot.press(*"bravo")
        await wait_until(pilot, lambda: table.row_count == 1, what="filtered rows")
        assert table.shown_keys[0].startswith("bravo:")

        # By status and by address too.
        field.value = "dead"
        await wait_until(pilot, lambda: [k.split(":")[0] for k in table.shown_keys] == ["delta"])
        field.value = ":10003"
        await wait_until(pilot, lambda: [k.split(":")[0] for k in table.shown_keys] == ["charlie"])

        await pilot.press("escape")
        await wait_until(pilot, lambda: table.row_count == 6, what="all rows back")
        assert field.value == ""
        assert not field.has_class("visible")
        assert table.has_focus

        # Enter keeps the filter and goes back to the table; Escape there clears it too.
        await pilot.press("slash", *"alpha", "enter")
        await wait_until(pilot, lambda: table.has_focus and table.row_count == 1)
        await pilot.press("escape")
        await wait_until(pilot, lambda: table.row_count == 6, what="all rows back again")


@pytest.mark.asyncio
async def test_sorting_cycles_with_o_and_header_clicks(cluster: FakeCluster) -> None:
    populate(cluster)
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        table = app.nodes_table
        assert table.sort_column == "node"
        await pilot.press("o")
        assert table.sort_column == "status"
        names = [key.split(":")[0] for key in table.shown_keys]
        assert names[0] == "node-0" and names[-2:] == ["delta", "echo"]

        table.sort_by("phi")
        phis = [table.get_cell(key, "phi").plain for key in table.shown_keys]
        assert phis == ["-", "-", "0.8", "4.2", "7.1", "11.3"]
        await pilot.press("O")
        assert table.sort_reverse
        assert table.get_cell(table.shown_keys[0], "phi").plain == "11.3"

        # A click on the "Heartbeat" header (past the border and the columns before it).
        before = COLUMN_KEYS[: COLUMN_KEYS.index("heartbeat")]
        x = 1 + sum(table.columns[ColumnKey(key)].get_render_width(table) for key in before) + 2
        await pilot.click("#nodes-table", offset=(x, 1))
        await wait_until(pilot, lambda: table.sort_column == "heartbeat", what="header sort")
        beats = [int(table.get_cell(key, "heartbeat").plain) for key in table.shown_keys]
        assert beats == sorted(beats)


@pytest.mark.asyncio
async def test_question_mark_opens_the_help_screen(cluster: FakeCluster) -> None:
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        help_screen = await open_screen(pilot, HelpScreen, "question_mark")
        listed = {description for _section, _keys, description in help_screen.rows}
        keys = {keys for _section, keys, _description in help_screen.rows}
        for binding in GossipApp.BINDINGS:
            assert not isinstance(binding, tuple)
            if binding.action.startswith("sort_column"):
                continue  # the nine sort keys share one line, "1…9"
            if binding.action in ("cycle_sort", "reverse_sort"):
                continue  # o and O share one line, "o/O"
            if binding.action == "clear_filter":
                assert "Clear the filter, close it" in listed  # the Filter section's esc
                continue
            if binding.action != "kill_peer":  # demo only
                assert (binding.tooltip or binding.description) in listed
        assert {"s", "e", "d", "t", "/", "?", "q/^c", "1…9", "j/k", "o/O", "F"} <= {k for k in keys}
        await close_screen(pilot, HelpScreen, "escape")


@pytest.mark.asyncio
async def test_command_palette_runs_actions(cluster: FakeCluster) -> None:
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*_keys("Set a key w"))  # "Set a key with TTL"
        hits = app.screen.query_one(CommandList)
        await wait_until(
            pilot,
            lambda: hits.option_count > 0 and "TTL" in str(hits.get_option_at_index(0).prompt),
            what="the palette's hit",
        )
        await open_screen(pilot, KeyFormScreen, "enter")
        assert "TTL" in app.screen.query_one(".modal-title").render().__str__()


@pytest.mark.asyncio
@pytest.mark.parametrize("key", ["q", "ctrl+c"])
async def test_quitting_cancels_trio_cleanly(cluster: FakeCluster, key: str) -> None:
    app = make_app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        assert app.node is not None
        handle = cluster.handles[app.node.self_id]
        await pilot.press(key)
    assert app.return_code == 0
    assert isinstance(app.trio_outcome, outcome.Value)
    assert handle.closed  # the node's context manager exited
    assert cluster.members[handle.self_id].liveness is Liveness.LEFT
    # No Trio run is left behind: a new one starts fine in this process.
    assert trio.run(_answer) == 42


@pytest.mark.asyncio
async def test_a_crash_in_the_node_factory_exits_nonzero_with_the_traceback() -> None:
    app = GossipApp(SELF_CONFIG, crashing_open_node, cursor_blink=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_until(pilot, lambda: app.trio_outcome is not None, what="the crash")
    assert app.return_code == 1
    assert isinstance(app.trio_outcome, outcome.Error)
    assert app.trio_traceback is not None
    assert "RuntimeError: boom: the fake node could not start" in app.trio_traceback
    assert "Traceback" in app.trio_traceback


def test_run_dashboard_returns_the_exit_code_and_prints_the_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    thresholds = gc.get_threshold()
    assert run_dashboard(SELF_CONFIG, crashing_open_node, headless=True) == 1
    assert "boom: the fake node could not start" in capfd.readouterr().err
    # The dashboard's collector policy (QuietCollector) is given back with the app: the
    # process goes on as it was, a test session's included.
    assert gc.get_threshold() == thresholds


def _keys(text: str) -> list[str]:
    """Key names that type ``text`` (a space is the "space" key)."""
    return ["space" if char == " " else char for char in text]


async def _answer() -> int:
    await trio.sleep(0)
    return 42


def _addr(port: int) -> SocketAddress:
    return SocketAddress.parse(f"127.0.0.1:{port}")
