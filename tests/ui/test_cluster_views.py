"""The cluster-wide screens: `P` (propagation of this node's keys) and `A` (agreement
groups), on the shared fake (gossip_tui.testing), with pilot and snapshot tests.

Regenerate the snapshots after an intended change with
``pytest tests/ui/test_cluster_views.py --snapshot-update`` and look at the SVGs."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from gossip_tui.core.agreement import VIEW_KEY, summarize
from gossip_tui.core.models import NodeId
from gossip_tui.testing import FakeCluster, FakeNodeConfig
from gossip_tui.ui import GossipApp
from gossip_tui.ui.screens.agreement import OWN_MARK, AgreementScreen
from gossip_tui.ui.screens.help_screen import HelpScreen
from gossip_tui.ui.screens.propagation import PropagationScreen
from tests.ui.conftest import (
    FIXED_CLOCK,
    FIXED_NOW,
    close_screen,
    open_screen,
    wait_ready,
    wait_until,
)

SMALL = (80, 24)
LARGE = (200, 60)
SELF = FakeNodeConfig(
    node_id="node-0", initial_key_values={"role": "dashboard", "zone": "eu-west-1"}
)


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster(clock=lambda: FIXED_CLOCK)


def _app(cluster: FakeCluster, refresh_interval: float = 3600.0) -> GossipApp:
    return GossipApp(
        SELF,
        cluster.open_node,
        clock=lambda: FIXED_NOW,
        cursor_blink=False,
        refresh_interval=refresh_interval,
        live_sample_interval=3600.0,
    )


def _peers(cluster: FakeCluster, count: int, name: str = "peer") -> list[NodeId]:
    return [
        cluster.add_peer(f"{name}-{index}", port=20_000 + index, heartbeat=50 + index)
        for index in range(count)
    ]


def _me(app: GossipApp) -> NodeId:
    assert app.node is not None
    return app.node.self_id


def _lagging(cluster: FakeCluster, app: GossipApp, peers: list[NodeId]) -> None:
    """peer-0 holds none of our keys, peer-1 only the first; the rest hold everything."""
    me = _me(app)
    cluster.set_held(peers[0], me, 0)
    cluster.set_held(peers[1], me, 1)


def _split(cluster: FakeCluster, app: GossipApp, peers: list[NodeId]) -> None:
    """A partition: this node and the first two peers see each other; the other peers
    (one of them a chitchat peer, seen by its digest) see only their side."""
    me = _me(app)
    ours, theirs = [me, *peers[:2]], peers[2:]
    for node in ours:
        cluster.publish_view(node, ours)
    for node in theirs[:-1]:
        cluster.publish_view(node, theirs)
    cluster.set_digest_nodes(theirs[-1], theirs)
    cluster.kill(theirs[0])


def _table(app: GossipApp) -> DataTable[Any]:
    return app.screen.query_one("#propagation-table", DataTable)


def _cells(app: GossipApp) -> list[list[str]]:
    table = _table(app)
    return [[str(cell) for cell in table.get_row_at(row)] for row in range(table.row_count)]


def _text_of(app: GossipApp, selector: str) -> str:
    """What a Static shows, as plain text."""
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(app.screen.query_one(selector, Static).content)
    return console.export_text()


async def _open(pilot: Pilot[Any], key: str, screen: type[Any]) -> None:
    await wait_ready(pilot)
    await pilot.press(key)
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, screen), what=f"{key} screen")
    await pilot.pause()


# -- propagation ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_p_lists_each_key_with_the_live_peers_holding_it(cluster: FakeCluster) -> None:
    peers = _peers(cluster, 4)
    app = _app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        _lagging(cluster, app, peers)
        cluster.kill(peers[3])  # dead: out of the count
        app.node.set(VIEW_KEY, "00000000:1")  # type: ignore[union-attr]  # internal: hidden
        await _open(pilot, "P", PropagationScreen)
        rows = _cells(app)
        assert [row[0] for row in rows] == ["role", "zone"]
        assert rows[0][3] == "2/3" and rows[1][3] == "1/3"
        assert rows[1][5] == "2: peer-0, peer-1"
        # The cursor's key lists who lags, and what they hold.
        await pilot.press("j")
        await pilot.pause()
        lag = _text_of(app, "#propagation-lag")
        assert "peer-0" in lag and "no report" not in lag and "holds v0" in lag
        assert "peer-1" in lag and "holds v1" in lag and "peer-2" not in lag
        await close_screen(pilot, PropagationScreen, "escape")


@pytest.mark.asyncio
async def test_the_propagation_screen_follows_the_peers_live(cluster: FakeCluster) -> None:
    peers = _peers(cluster, 2)
    app = _app(cluster, refresh_interval=0.05)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        cluster.set_held(peers[0], _me(app), 0)
        await _open(pilot, "P", PropagationScreen)
        assert _cells(app)[0][3] == "1/2"
        cluster.set_held(peers[0], _me(app), 99)
        await wait_until(pilot, lambda: _cells(app)[0][3] == "2/2", what="a catch-up")
        assert "Every live peer holds" in _text_of(app, "#propagation-lag")


# -- agreement --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_groups_the_nodes_by_view_and_marks_this_nodes_group(cluster: FakeCluster) -> None:
    peers = _peers(cluster, 5)
    app = _app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        _split(cluster, app, peers)
        await _open(pilot, "A", AgreementScreen)
        screen = app.screen
        assert isinstance(screen, AgreementScreen) and screen.reading is not None
        own, other = screen.reading.groups
        assert own.includes_self and {m.node.node_id for m in own.members} == {
            "node-0",
            "peer-0",
            "peer-1",
        }
        assert {m.node.node_id for m in other.members} == {"peer-2", "peer-3", "peer-4"}
        text = _text_of(app, "#agreement-groups")
        assert "2 views" in text and OWN_MARK in text and "(digest)" in text
        assert own.summary == summarize([_me(app), *peers[:2]])


@pytest.mark.asyncio
async def test_the_agreement_screen_shows_a_heal_live(cluster: FakeCluster) -> None:
    peers = _peers(cluster, 3)
    app = _app(cluster, refresh_interval=0.05)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        me = _me(app)
        cluster.publish_view(peers[0], [me, peers[0]])
        cluster.publish_view(peers[1], peers[1:])
        await _open(pilot, "A", AgreementScreen)
        screen = app.screen
        assert isinstance(screen, AgreementScreen)
        assert screen.reading is not None and not screen.reading.agreed
        everyone = [me, *peers]
        for peer in peers:
            cluster.publish_view(peer, everyone)
        await wait_until(
            pilot, lambda: screen.reading is not None and screen.reading.agreed, what="heal"
        )
        await pilot.pause()
        assert "All 4 nodes with a known view agree" in _text_of(app, "#agreement-groups")


@pytest.mark.asyncio
async def test_help_lists_the_new_keys_and_fits_80x24(cluster: FakeCluster) -> None:
    app = _app(cluster)
    async with app.run_test(size=SMALL) as pilot:
        await wait_ready(pilot)
        await open_screen(pilot, HelpScreen, "question_mark")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HelpScreen)
        keys = {(keys, text) for _section, keys, text in screen.rows}
        assert ("P", "My keys: held by peers") in keys
        assert ("A", "Nodes grouped by view") in keys
        body = screen.query_one("#help-body")
        assert body.max_scroll_y == 0  # everything on screen, no scrolling


# -- snapshots --------------------------------------------------------------------------


def _snapshot_app(cluster: FakeCluster, peers: int) -> GossipApp:
    _peers(cluster, peers, name="server:127.0.0.1:34000-peer")
    return _app(cluster)


def _run_to(key: str, screen: type[Any], prepare: Any) -> Any:
    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_ready(pilot)
        app = pilot.app
        assert isinstance(app, GossipApp)
        peers = sorted(n for n in app.node.cluster.members if n != _me(app))  # type: ignore[union-attr]
        prepare(app.node.cluster, app, peers)  # type: ignore[union-attr]
        await _open(pilot, key, screen)

    return run_before


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "200x60"])
def test_propagation_screen_snapshot(
    snap_compare: Any, cluster: FakeCluster, size: tuple[int, int]
) -> None:
    app = _snapshot_app(cluster, 12)
    assert snap_compare(
        app, terminal_size=size, run_before=_run_to("P", PropagationScreen, _lagging)
    )


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "200x60"])
def test_agreement_screen_snapshot(
    snap_compare: Any, cluster: FakeCluster, size: tuple[int, int]
) -> None:
    app = _snapshot_app(cluster, 12)
    assert snap_compare(app, terminal_size=size, run_before=_run_to("A", AgreementScreen, _split))
