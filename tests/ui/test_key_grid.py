"""Issue 15: the key grid (`K`): one key, or every key under a prefix, across every node,
with version, age and status, fed by the view model's events and readings."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from textual.widgets import Input
from textual.widgets._footer import FooterKey

from gossip_tui.core.models import KeyStatus, NodeId, VersionedValue
from gossip_tui.node import KeyChanged, KeyDeleted, NodeEvent
from gossip_tui.testing import FakeCluster, FakeNode, FakeNodeConfig
from gossip_tui.ui import GossipApp
from gossip_tui.ui._view_model import ClusterViewModel
from gossip_tui.ui.screens.help_screen import HelpScreen
from gossip_tui.ui.screens.key_grid import KeyGridScreen, KeyPicker
from gossip_tui.ui.widgets.key_grid import GridRow, KeyGridTable, KeyQuery, grid_rows_of
from tests.ui.conftest import (
    FIXED_CLOCK,
    burst,
    close_screen,
    make_app,
    open_screen,
    wait_ready,
    wait_until,
)


class Clock:
    """The fake cluster's clock, moved by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(FIXED_CLOCK)


@pytest.fixture
def shared(clock: Clock) -> FakeCluster:
    return FakeCluster(clock=clock)


def _svc_peers(cluster: FakeCluster) -> None:
    """Three peers publishing svc.* keys, one without any."""
    cluster.add_peer("p1", port=11001, keys={"svc.http": "8080", "svc.grpc": "9090"})
    cluster.add_peer("p2", port=11002, keys={"svc.http": "8081"})
    cluster.add_peer("p3", port=11003, keys={"zone": "eu"})


class Watched:
    """A node driven by hand: its events are taken as a dashboard would get them."""

    def __init__(self, cluster: FakeCluster) -> None:
        config = FakeNodeConfig(node_id="self", initial_key_values={"svc.http": "80"})
        self.node: FakeNode = cluster.add_node(config)
        self._events = self.node.subscribe()
        self.model = ClusterViewModel(self.node.self_id, self.node.node_snapshot)
        self.read()

    def read(self) -> None:
        self.model.apply_readings(self.node.liveness_readings())

    def events(self) -> None:
        """Hand the model every event published since the last call."""
        batch: list[NodeEvent] = []
        while True:
            try:
                batch.append(self._events.receive_nowait())
            except trio.WouldBlock:
                break
        self.model.apply_events(batch)


def _grid(model: ClusterViewModel, text: str) -> dict[tuple[str, str | None], GridRow]:
    query = KeyQuery(text)
    return {
        (row.node.node_id, row.key): row
        for node in model.rows
        for row in grid_rows_of(model, node, query)
    }


# -- the model: versions, ages, tombstones --------------------------------------------------


def test_query_is_a_key_or_a_prefix() -> None:
    keys = ["svc.http", "svc.grpc", "svc", "zone"]
    assert KeyQuery("svc").keys_in(keys) == ["svc"]
    assert KeyQuery("svc.").keys_in(keys) == ["svc.grpc", "svc.http"]
    assert KeyQuery("svc*").keys_in(keys) == ["svc", "svc.grpc", "svc.http"]
    assert KeyQuery("nope").keys_in(keys) == []
    assert KeyQuery("").keys_in(keys) == []


def test_one_row_per_node_absent_ones_included(shared: FakeCluster) -> None:
    _svc_peers(shared)
    model = Watched(shared).model
    grid = _grid(model, "svc.http")
    assert sorted(grid) == [
        ("p1", "svc.http"),
        ("p2", "svc.http"),
        ("p3", None),
        ("self", "svc.http"),
    ]
    assert grid[("p1", "svc.http")].value == "8080"
    assert grid[("p1", "svc.http")].version == 1
    assert grid[("p3", None)].absent
    # A prefix: one row per matching key, and still one absent row per node without any.
    grid = _grid(model, "svc.")
    assert ("p1", "svc.grpc") in grid and ("p1", "svc.http") in grid and ("p3", None) in grid


def test_age_is_when_the_version_was_seen_here(shared: FakeCluster, clock: Clock) -> None:
    _svc_peers(shared)
    watched = Watched(shared)
    model = watched.model
    p1 = shared.peer("p1")
    assert _grid(model, "svc.http")[("p1", "svc.http")].seen_at == FIXED_CLOCK
    clock.now = FIXED_CLOCK + 30
    shared.set_peer_key(p1, "svc.http", "8443")
    watched.events()
    row = _grid(model, "svc.http")[("p1", "svc.http")]
    # Events carry no time: the version is stamped by the next reading.
    assert (row.value, row.version, row.seen_at) == ("8443", 3, None)
    clock.now = FIXED_CLOCK + 31
    watched.read()
    assert _grid(model, "svc.http")[("p1", "svc.http")].seen_at == FIXED_CLOCK + 31
    # A stale report (an older version) changes nothing; nor does a full re-read.
    model.apply_events(_stale(p1))
    clock.now = FIXED_CLOCK + 50
    watched.read()
    row = _grid(model, "svc.http")[("p1", "svc.http")]
    assert (row.value, row.version, row.seen_at) == ("8443", 3, FIXED_CLOCK + 31)
    # Untouched keys of the same node keep their own age.
    assert _grid(model, "svc.grpc")[("p1", "svc.grpc")].seen_at == FIXED_CLOCK


def test_tombstones_show_as_deleted_and_collected_keys_as_absent(shared: FakeCluster) -> None:
    _svc_peers(shared)
    watched = Watched(shared)
    model = watched.model
    p2 = shared.peer("p2")
    shared.write(p2, "svc.http", "", KeyStatus.DELETED)
    watched.events()
    row = _grid(model, "svc.http")[("p2", "svc.http")]
    assert row.deleted and row.value is None and row.version == 2
    # Garbage collected: the key is gone from the node (version 0 says forgotten).
    del shared.members[p2].key_values["svc.http"]
    model.apply_events([KeyDeleted(p2, "svc.http", 0)])
    assert _grid(model, "svc.http")[("p2", None)].absent


def test_a_full_read_keeps_each_key_status(shared: FakeCluster) -> None:
    # A node first learnt (a full read, no key event) keeps its keys' statuses too.
    marked = VersionedValue("8080", 1, KeyStatus.DELETE_AFTER_TTL)
    shared.add_peer("p1", port=11001, key_values={"svc.http": marked})
    row = _grid(Watched(shared).model, "svc.http")[("p1", "svc.http")]
    assert (row.status, row.value) == (KeyStatus.DELETE_AFTER_TTL, "8080")


def test_a_node_that_goes_away_leaves_the_grid(shared: FakeCluster) -> None:
    _svc_peers(shared)
    watched = Watched(shared)
    model = watched.model
    p1 = shared.peer("p1")
    shared.remove(p1)
    watched.events()
    assert not [key for key in _grid(model, "svc.http") if key[0] == "p1"]
    assert shared.peer("p2") in model.rows and not model.key_sightings.of(p1)


def _stale(node: NodeId) -> list[NodeEvent]:
    return [KeyChanged(node, "svc.http", "8080", 1)]


# -- the screen ----------------------------------------------------------------------------


# The dashboard's own node, on the shared fake (conftest's SELF_CONFIG is the retired one's).
SELF = FakeNodeConfig(node_id="node-0", initial_key_values={"role": "dashboard"})


def _app(cluster: FakeCluster, **options: Any) -> GossipApp:
    _svc_peers(cluster)
    return make_app(cluster, config=SELF, **options)


def _cells(table: KeyGridTable, column: str) -> list[str]:
    return [table.get_cell(key, column).plain for key in table.shown_keys]


def _names(table: KeyGridTable) -> list[str]:
    return _cells(table, "node")


@pytest.mark.asyncio
async def test_K_opens_the_grid_and_the_typed_key_arrives_whole(shared: FakeCluster) -> None:
    for index in range(300):  # enough rows for the grid to take a while to come up
        shared.add_peer(f"q{index:03d}", port=12000 + index, keys={"role": "worker"})
    app = _app(shared)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        # Typed at once behind K, as a paste or tmux send-keys delivers them: type-ahead
        # keeps every character for the field, and Enter moves to the grid.
        burst(app, ["K", *"svc.http", "enter"])
        await wait_until(pilot, lambda: isinstance(app.screen, KeyGridScreen), what="the grid")
        screen = app.screen
        assert isinstance(screen, KeyGridScreen)
        table = screen.grid
        await wait_until(pilot, lambda: app.focused is table, what="focus on the grid")
        assert screen.query_one("#key-grid-query", Input).value == "svc.http"
        assert _names(table)[:4] == ["node-0", "p1", "p2", "p3"]
        assert _cells(table, "value")[:4] == ["absent", "8080", "8081", "absent"]
        assert _cells(table, "version")[:4] == ["", "1", "1", ""]
        assert _cells(table, "status")[:4] == ["self", "live", "live", "live"]
        assert "2 have it, 302 absent" in str(table.border_title)
        # An exact key needs no key column; a prefix does, one row per key.
        assert "key" not in table.columns_shown
        await close_screen(pilot, KeyGridScreen, "escape")


@pytest.mark.asyncio
async def test_K_is_in_the_help_and_leaves_the_footer_room_for_quit(shared: FakeCluster) -> None:
    # At 80 columns a footer entry for K would cut "q Quit"; like P and A, K is in the help.
    app = _app(shared)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        await pilot.pause()
        shown = {(key.key, key.description) for key in app.screen.query(FooterKey)}
        assert ("q", "Quit") in shown
        assert ("K", "Grid") not in shown
        help_screen = await open_screen(pilot, HelpScreen, "question_mark")
        rows = help_screen.rows
        assert ("Dashboard", "K", "One key on every node") in rows
        assert any(section == "Key grid" and keys == "a" for section, keys, _ in rows)


@pytest.mark.asyncio
async def test_prefix_absent_toggle_sort_and_j_k(shared: FakeCluster) -> None:
    app = _app(shared)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        screen = await open_screen(pilot, KeyGridScreen, "K", *"svc.", "enter")
        table = screen.grid
        await wait_until(pilot, lambda: app.focused is table)
        assert "key" in table.columns_shown
        assert list(zip(_names(table), _cells(table, "key"), strict=True)) == [
            ("node-0", ""),
            ("p1", "svc.grpc"),
            ("p1", "svc.http"),
            ("p2", "svc.http"),
            ("p3", ""),
        ]
        # `a` hides the nodes without the key, and brings them back.
        await pilot.press("a")
        assert _names(table) == ["p1", "p1", "p2"]
        assert "absent hidden" in str(table.border_title)
        await pilot.press("a")
        assert len(table.shown_keys) == 5
        # j/k move the cursor; the sort keys sort, again reverses; `o` goes to the next column.
        await pilot.press("g", "j", "j")
        assert table.cursor_row == 2
        await pilot.press("k")
        assert table.cursor_row == 1
        await pilot.press("G")
        assert table.cursor_row == 4
        await pilot.press("g", "j")
        selected = table.selected_row
        await pilot.press("7")  # the seventh column shown: the value
        assert (table.sort_column, table.sort_reverse) == ("value", False)
        assert _cells(table, "value")[:3] == ["8080", "8081", "9090"]
        assert table.selected_row == selected  # the cursor stays on its row
        await pilot.press("7")
        assert table.sort_reverse and _cells(table, "value")[0] == "absent"
        await pilot.press("o")
        assert (table.sort_column, table.sort_reverse) == ("node", False)
        await pilot.press("O")
        assert _names(table)[0] == "p3"
        assert str(table.border_title).endswith("· node ▼")


@pytest.mark.asyncio
async def test_the_grid_follows_the_cluster_while_open(shared: FakeCluster, clock: Clock) -> None:
    app = _app(shared, refresh_interval=0.05)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        screen = await open_screen(pilot, KeyGridScreen, "K", *"svc.http", "enter")
        table = screen.grid
        await wait_until(pilot, lambda: len(table.shown_keys) == 4)
        p1 = shared.peer("p1")
        # A new value: value, version and age move (the age is counted from the reading
        # that first saw it).
        clock.now = FIXED_CLOCK + 5
        shared.set_peer_key(p1, "svc.http", "8443")
        await wait_until(pilot, lambda: _cells(table, "value")[1] == "8443", what="new value")
        assert _cells(table, "version")[1] == "3"
        clock.now = FIXED_CLOCK + 20
        await wait_until(pilot, lambda: _cells(table, "age")[1] == "15s", what="the age")
        assert _cells(table, "age")[2] == "20s"
        # A node that gains the key, a node that joins, a node that dies, one that goes.
        shared.set_peer_key(shared.peer("p3"), "svc.http", "7000")
        shared.add_peer("p4", port=11004, keys={"svc.http": "1"})
        shared.kill(shared.peer("p2"))
        await wait_until(
            pilot, lambda: _names(table) == ["node-0", "p1", "p2", "p3", "p4"], what="p4 in"
        )
        await wait_until(pilot, lambda: _cells(table, "status")[2] == "dead", what="p2 dead")
        assert _cells(table, "value")[3:] == ["7000", "1"]
        shared.remove(p1)
        await wait_until(pilot, lambda: "p1" not in _names(table), what="p1 gone")
        # A deletion shows as such.
        shared.write(shared.peer("p4"), "svc.http", "", KeyStatus.DELETED)
        await wait_until(pilot, lambda: _cells(table, "key_status")[-1] == "deleted")
        assert _cells(table, "value")[-1] == ""
        assert "3 have it, 1 absent" in str(table.border_title)
        # No widget polls snapshots: the node is read one node at a time, on events.
        assert app.node is not None and app.node.snapshots_taken == 0


@pytest.mark.asyncio
async def test_pick_a_key_of_the_selected_node_and_type_another(shared: FakeCluster) -> None:
    app = _app(shared)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        await wait_until(pilot, lambda: (app.nodes_table.selected_key or "").startswith("node-0"))
        await pilot.press("j")  # p1
        await wait_until(pilot, lambda: (app.nodes_table.selected_key or "").startswith("p1"))
        screen = await open_screen(pilot, KeyGridScreen, "K")
        field = screen.query_one("#key-grid-query", Input)
        await wait_until(pilot, lambda: app.focused is field)
        assert "type a key" in str(screen.grid.border_title)
        picker = screen.query_one(KeyPicker)
        assert [str(picker.get_option_at_index(i).prompt) for i in range(picker.option_count)] == [
            "svc.grpc",
            "svc.http",
        ]
        screen.set_focus(picker)
        await pilot.press("j", "k", "j", "enter")  # the second: svc.http
        await wait_until(pilot, lambda: field.value == "svc.http", what="the pick")
        assert app.focused is screen.grid
        assert _cells(screen.grid, "value") == ["absent", "8080", "8081", "absent"]
        # `/` goes back to the field; letters there are text, not the grid's keys.
        await pilot.press("slash")
        assert app.focused is field
        field.value = ""
        await pilot.press(*"zone", "enter")
        await wait_until(pilot, lambda: field.value == "zone")
        assert screen.grid.show_absent  # `a` was typed, not a toggle
        assert _cells(screen.grid, "value") == ["absent", "absent", "absent", "eu"]
        await close_screen(pilot, KeyGridScreen, "q")


@pytest.mark.asyncio
async def test_K_on_local_keys_opens_the_grid_on_that_key(shared: FakeCluster) -> None:
    app = _app(shared)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        app.screen.set_focus(app.local_keys)
        await wait_until(pilot, lambda: app.local_keys.selected_key == "role")
        screen = await open_screen(pilot, KeyGridScreen, "K")
        await wait_until(pilot, lambda: app.focused is screen.grid)
        assert screen.grid.key_query == KeyQuery("role")
        assert _cells(screen.grid, "value")[0] == "dashboard"


@pytest.mark.asyncio
async def test_paused_view_holds_the_grid_too(shared: FakeCluster) -> None:
    app = _app(shared, refresh_interval=0.05)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        app.action_toggle_pause()
        screen = await open_screen(pilot, KeyGridScreen, "K", *"svc.http", "enter")
        table = screen.grid
        await wait_until(pilot, lambda: app.focused is table)
        shared.set_peer_key(shared.peer("p2"), "svc.http", "9999")
        model = app.view_model
        assert model is not None
        await wait_until(
            pilot, lambda: model.key_values_of(shared.peer("p2"))["svc.http"] == "9999"
        )
        await pilot.pause()
        assert _cells(table, "value")[2] == "8081"
        app.action_toggle_pause()
        await wait_until(pilot, lambda: _cells(table, "value")[2] == "9999", what="resumed")


@pytest.mark.asyncio
async def test_the_status_column_reads_as_on_each_node(shared: FakeCluster, clock: Clock) -> None:
    # chitchat's delete-after-TTL mark travels: every node's row says ttl. A ttl in seconds
    # is the owner's deadline: its own row counts down, a peer's (gossip-tui) reads set.
    app = _app(shared, refresh_interval=0.05)
    other = shared.add_node(FakeNodeConfig(node_id="p5", initial_key_values={}))
    async with app.run_test(size=(160, 36)) as pilot:
        await wait_ready(pilot)
        node = app.node
        assert node is not None
        node.set("svc.http", "80", ttl=30)
        other.set("svc.http", "85", ttl=60)
        shared.write(shared.peer("p1"), "svc.http", "8080", KeyStatus.DELETE_AFTER_TTL)
        screen = await open_screen(pilot, KeyGridScreen, "K", *"svc.http", "enter")
        table = screen.grid

        def statuses() -> dict[str, str]:
            return dict(zip(_names(table), _cells(table, "key_status"), strict=True))

        want = {
            "node-0": "set · 30s left",
            "p1": "ttl",
            "p2": "set",
            "p3": "",
            "p5": "set",
        }
        await wait_until(pilot, lambda: statuses() == want, what=f"statuses {want}")
        # The local keys pane spells them the same way.
        assert app.local_keys.get_cell("svc.http", "status").plain == "set"
        # Live: the countdown moves with the readings; a mark, a set again, a delete.
        clock.now = FIXED_CLOCK + 10
        shared.write(shared.peer("p2"), "svc.http", "8081", KeyStatus.DELETE_AFTER_TTL)
        shared.set_peer_key(shared.peer("p1"), "svc.http", "8080")
        other.delete("svc.http")
        want = {**want, "node-0": "set · 20s left", "p1": "set", "p2": "ttl"}
        want["p5"] = "deleted"
        await wait_until(pilot, lambda: statuses() == want, what=f"statuses {want}")
        assert _cells(table, "value")[1:3] == ["8080", "8081"]  # a ttl mark keeps its value
        # Expired on its owner: a tombstone there, as on every peer.
        clock.now = FIXED_CLOCK + 31
        shared.beat()
        await wait_until(pilot, lambda: statuses()["node-0"] == "deleted", what="expired")
