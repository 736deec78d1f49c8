"""The dashboard's TTL: the form takes a duration, Local keys counts down from the view
model's per-tick readings, and an expired key leaves the pane (shared fake node, whose
cluster clock the test moves by hand)."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import Input

from gossip_tui.core.models import NodeId, SocketAddress
from gossip_tui.node import KeyChanged, KeyDeleted
from gossip_tui.testing import FakeCluster, FakeNodeConfig
from gossip_tui.ui import GossipApp
from gossip_tui.ui._view_model import ClusterViewModel
from gossip_tui.ui.screens.key_forms import KeyFormScreen, parse_ttl_field
from gossip_tui.ui.widgets.event_log import describe
from gossip_tui.ui.widgets.local_keys import format_countdown

from .conftest import FIXED_NOW, open_screen, wait_ready, wait_until


class ManualClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _app(cluster: FakeCluster) -> GossipApp:
    return GossipApp(
        FakeNodeConfig(node_id="node-0"),
        cluster.open_node,
        clock=lambda: FIXED_NOW,
        cursor_blink=False,
        refresh_interval=0.05,
    )


def _cell(app: GossipApp, key: str, column: str) -> str:
    return str(app.local_keys.get_cell(key, column))


def _has_column(app: GossipApp, column: str) -> bool:
    return any(str(c.key.value) == column for c in app.local_keys.ordered_columns)


def _log_text(app: GossipApp) -> str:
    return "\n".join(line.text for line in app.event_log.lines)


@pytest.mark.asyncio
async def test_a_key_set_with_a_duration_counts_down_and_disappears() -> None:
    clock = ManualClock()
    cluster = FakeCluster(clock=clock)
    app = _app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        assert app.node is not None
        handle = cluster.handles[app.node.self_id]
        assert not _has_column(app, "expires")  # no ttl, no column

        await open_screen(pilot, KeyFormScreen, "t")
        await pilot.press(*"lease", "enter", *"held", "enter", *"30s", "enter")
        await wait_until(pilot, lambda: ("set", "lease", "held", "ttl=30") in handle.calls)
        await wait_until(
            pilot,
            lambda: "lease" in app.local_keys._rows and _has_column(app, "expires"),
            what="the row with its countdown column",
        )
        await wait_until(pilot, lambda: _cell(app, "lease", "expires") == "in 30s")

        clock.now += 10.5  # the next reading ticks the figure down, no event needed
        await wait_until(pilot, lambda: _cell(app, "lease", "expires") == "in 20s")

        clock.now += 20  # past the deadline: the node's next round deletes it
        await wait_until(pilot, lambda: _cell(app, "lease", "expires") == "due")
        cluster.beat()
        await wait_until(
            pilot, lambda: "lease" not in app.local_keys._rows, what="the expired key to go"
        )
        assert handle.get("lease") is None
        assert not _has_column(app, "expires")
        await wait_until(pilot, lambda: "expired node-0 lease" in _log_text(app))


@pytest.mark.asyncio
async def test_a_bad_duration_is_refused_in_the_form_with_focus_on_the_ttl() -> None:
    cluster = FakeCluster(clock=ManualClock())
    app = _app(cluster)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        assert app.node is not None
        handle = cluster.handles[app.node.self_id]
        screen = await open_screen(pilot, KeyFormScreen, "t")
        await pilot.press(*"k", "enter", *"v", "enter", "0", "enter")
        await wait_until(pilot, lambda: screen.error != "")
        assert "more than 0" in screen.error
        focused = screen.focused
        assert isinstance(focused, Input) and focused.id == "ttl-input"
        assert handle.calls == []
        await pilot.press("backspace", *"5m", "enter")
        await wait_until(pilot, lambda: ("set", "k", "v", "ttl=300") in handle.calls)


SELF = NodeId("node-0", 1, SocketAddress.parse("127.0.0.1:10000"))


def test_the_view_model_ticks_countdowns_once_a_second_at_most() -> None:
    cluster = FakeCluster(clock=ManualClock(100.0))
    node = cluster.add_node(FakeNodeConfig(node_id="node-0", generation=1))
    model = ClusterViewModel(node.self_id, node.node_snapshot, node.key_expiries)
    model.apply_readings(node.liveness_readings())
    node.set("lease", "a", ttl=3)
    changes = model.apply_events([KeyChanged(node.self_id, "lease", "a", 1)])
    assert "lease" in changes.local_keys and model.local_countdowns == {"lease": 3}

    clock = cluster.clock
    assert isinstance(clock, ManualClock)
    clock.now += 0.4  # 2.6 s left: still "3" once rounded up, so no row changes
    assert "lease" not in model.apply_readings(node.liveness_readings()).local_keys
    clock.now += 0.7
    changes = model.apply_readings(node.liveness_readings())
    assert "lease" in changes.local_keys and model.local_countdowns == {"lease": 2}

    clock.now += 5
    cluster.beat()  # fires the expiry
    changes = model.apply_events([KeyDeleted(node.self_id, "lease", 2, "expired")])
    assert model.local_expired == frozenset({"lease"})
    assert model.local_countdowns == {}
    node.set("lease", "b")
    model.apply_events([KeyChanged(node.self_id, "lease", "b", 3)])
    assert model.local_expired == frozenset()


def test_formats_and_the_log_line() -> None:
    assert format_countdown(None) == ""
    assert format_countdown(0) == "due"
    assert format_countdown(299) == "in 4m59s"
    assert parse_ttl_field("") is None and parse_ttl_field(" 1h30m ") == 5400
    with pytest.raises(ValueError):
        parse_ttl_field("soon")
    expired: Any = describe(KeyDeleted(SELF, "lease", 4, "expired"))
    assert "expired" in expired.plain
    assert "deleted" in describe(KeyDeleted(SELF, "lease", 4)).plain
