"""Screenshots of the dashboard on fixed fake data (fixed clocks, no blinking cursor).

Regenerate after an intended change with ``pytest tests/ui/test_snapshots.py --snapshot-update``
and look at the SVGs under __snapshots__/ before committing them.
"""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from gossip_tui.testing import FakeCluster
from gossip_tui.ui import GossipApp
from tests.ui.conftest import FIXED_CLOCK, make_app, populate, wait_ready, wait_until

SIZE = (120, 36)
SMALL = (80, 24)
LARGE = (200, 60)


def _crowded(cluster: FakeCluster) -> Any:
    """The small cluster plus 40 peers named as the demo names them (long, alike but for
    their ends), as a 200x60 window shows them."""
    for index in range(40):
        cluster.add_peer(
            f"server:127.0.0.1:{34000 + index}-peer{index}",
            port=20000 + index,
            keys={"role": "worker"},
            heartbeat=100 + index,
            phi=1.0,
            last_update=FIXED_CLOCK - 1.0,
        )
    return _app(cluster)


def _app(cluster: FakeCluster) -> Any:
    populate(cluster)
    # Intervals longer than any test: the screen shows exactly the first snapshot, and the
    # sparkline exactly one sample.
    return make_app(cluster, refresh_interval=3600.0, live_sample_interval=3600.0)


async def _ready_on_bravo(pilot: Pilot[Any]) -> None:
    """The first snapshot on screen, the cursor on "bravo" (whose value is JSON)."""
    await wait_ready(pilot)
    app = pilot.app
    assert isinstance(app, GossipApp)
    await pilot.press("down")  # from alpha, the first row
    await wait_until(
        pilot,
        lambda: (app.nodes_table.selected_key or "").startswith("bravo:"),
        what="the cursor on bravo",
    )


def test_main_screen(snap_compare: Any, cluster: FakeCluster) -> None:
    assert snap_compare(_app(cluster), terminal_size=SIZE, run_before=_ready_on_bravo)


def test_main_screen_base64_json_value(snap_compare: Any, cluster: FakeCluster) -> None:
    async def on_charlie(pilot: Pilot[Any]) -> None:
        await _ready_on_bravo(pilot)
        await pilot.press("down")
        await pilot.pause()

    assert snap_compare(_app(cluster), terminal_size=SIZE, run_before=on_charlie)


def test_help_screen(snap_compare: Any, cluster: FakeCluster) -> None:
    async def open_help(pilot: Pilot[Any]) -> None:
        await wait_ready(pilot)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: pilot.app.screen.id != "_default", what="help")

    assert snap_compare(_app(cluster), terminal_size=SIZE, run_before=open_help)


def test_set_key_form_with_a_validation_error(snap_compare: Any, cluster: FakeCluster) -> None:
    async def bad_key(pilot: Pilot[Any]) -> None:
        await wait_ready(pilot)
        await pilot.press("s")
        await wait_until(pilot, lambda: pilot.app.screen.id != "_default", what="the form")
        await pilot.press("enter", "enter")

    assert snap_compare(_app(cluster), terminal_size=SIZE, run_before=bad_key)


def test_main_screen_80x24(snap_compare: Any, cluster: FakeCluster) -> None:
    assert snap_compare(_app(cluster), terminal_size=SMALL, run_before=_ready_on_bravo)


def test_help_screen_80x24(snap_compare: Any, cluster: FakeCluster) -> None:
    async def open_help(pilot: Pilot[Any]) -> None:
        await wait_ready(pilot)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: pilot.app.screen.id != "_default", what="help")

    assert snap_compare(_app(cluster), terminal_size=SMALL, run_before=open_help)


def test_main_screen_200x60(snap_compare: Any, cluster: FakeCluster) -> None:
    assert snap_compare(_crowded(cluster), terminal_size=LARGE, run_before=_ready_on_bravo)


def test_node_screen_200x60(snap_compare: Any, cluster: FakeCluster) -> None:
    async def drill_down(pilot: Pilot[Any]) -> None:
        await _ready_on_bravo(pilot)
        await pilot.press("enter")
        await wait_until(pilot, lambda: pilot.app.screen.id != "_default", what="the node")

    assert snap_compare(_crowded(cluster), terminal_size=LARGE, run_before=drill_down)
