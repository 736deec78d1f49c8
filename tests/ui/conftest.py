"""Helpers for the dashboard tests: a fake cluster, an app on it, bounded waits, and the
moves many tests make (a screen opened or closed by keys, a burst of keys, a header
colour)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from textual import events
from textual.pilot import Pilot
from textual.screen import Screen

from gossip_tui.core.models import Liveness
from gossip_tui.testing import FakeCluster, FakeNodeConfig
from gossip_tui.ui import GossipApp
from gossip_tui.ui.widgets.cluster_header import ClusterHeader

FIXED_NOW = datetime(2024, 5, 17, 12, 34, 56, tzinfo=UTC)
FIXED_CLOCK = 1_000.0
SELF_CONFIG = FakeNodeConfig(node_id="node-0", initial_key_values={"role": "dashboard"})


async def wait_until(
    pilot: Pilot[Any], condition: Callable[[], bool], *, timeout: float = 10.0, what: str = ""
) -> None:
    """Let the app (and Trio, its guest) run until ``condition()`` holds, or fail."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await pilot.pause()


async def wait_ready(pilot: Pilot[Any]) -> None:
    """Until the node is open and its first snapshot is on screen."""
    app = pilot.app
    assert isinstance(app, GossipApp)
    await wait_until(
        pilot,
        lambda: app.node is not None and app.nodes_table.row_count > 0,
        what="the node and its first snapshot",
    )
    await pilot.pause()


ScreenT = TypeVar("ScreenT", bound=Screen[Any])


async def open_screen(pilot: Pilot[Any], kind: type[ScreenT], *keys: str) -> ScreenT:
    """Press ``keys`` (``"s"`` for the key form, ``"K"`` for the key grid...) until a
    ``kind`` screen is on top; that screen."""
    app = pilot.app
    await pilot.press(*keys)
    await wait_until(pilot, lambda: isinstance(app.screen, kind), what=f"a {kind.__name__}")
    screen = app.screen
    assert isinstance(screen, kind)
    return screen


async def close_screen(pilot: Pilot[Any], kind: type[Screen[Any]], *keys: str) -> None:
    """Press ``keys`` until no ``kind`` screen is on top any more."""
    app = pilot.app
    await pilot.press(*keys)
    await wait_until(
        pilot, lambda: not isinstance(app.screen, kind), what=f"the {kind.__name__} closed"
    )


_CHARACTERS = {"enter": "\r", "space": " ", "slash": "/"}


def burst(app: GossipApp, keys: list[str]) -> None:
    """Post ``keys`` to the app at once, as a terminal delivers a paste or tmux send-keys:
    no pause between them for focus to catch up (pilot.press waits after each key)."""
    driver = app._driver
    assert driver is not None
    for key in keys:
        character = _CHARACTERS.get(key, key if len(key) == 1 else None)
        event = events.Key(key, character)
        event.set_sender(app)
        driver.send_message(event)  # as a terminal's input thread would: queued, no wait


def header_span_style(app: GossipApp, words: str) -> str:
    """The style the header draws ``words`` in (the first span holding them)."""
    header = app.screen.query_one(ClusterHeader).render()
    assert hasattr(header, "spans")
    styles = [str(s.style) for s in header.spans if words in header.plain[s.start : s.end]]
    assert styles, f"{words!r} not in the header: {header.plain!r}"
    return styles[0]


def make_app(cluster: FakeCluster, **options: Any) -> GossipApp:
    options.setdefault("clock", lambda: FIXED_NOW)
    options.setdefault("cursor_blink", False)
    options.setdefault("refresh_interval", 0.2)
    config = options.pop("config", SELF_CONFIG)
    return GossipApp(config, cluster.open_node, **options)


def populate(cluster: FakeCluster) -> None:
    """A small cluster with something of everything: phi levels, dead nodes, JSON values."""
    cluster.add_peer(
        "alpha",
        port=10001,
        keys={"role": "api", "zone": "eu-west-1"},
        heartbeat=412,
        phi=0.8,
        last_update=FIXED_CLOCK - 0.4,
    )
    cluster.add_peer(
        "bravo",
        port=10002,
        keys={"role": "worker", "config": '{"shards": [1, 2, 3], "leader": true}'},
        heartbeat=397,
        phi=4.2,
        last_update=FIXED_CLOCK - 3.5,
    )
    cluster.add_peer(
        "charlie",
        port=10003,
        keys={"meta": "eyJkYyI6ICJwYXItMSIsICJyYWNrIjogN30="},  # {"dc": "par-1", "rack": 7}
        heartbeat=388,
        phi=7.1,
        last_update=FIXED_CLOCK - 9.0,
    )
    cluster.add_peer(
        "delta",
        port=10004,
        heartbeat=120,
        phi=11.3,
        liveness=Liveness.DEAD,
        last_update=FIXED_CLOCK - 95.0,
    )
    cluster.add_peer(
        "echo",
        port=10005,
        heartbeat=42,
        phi=None,
        liveness=Liveness.SCHEDULED_FOR_DELETION,
        last_update=FIXED_CLOCK - 4000.0,
    )


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster(clock=lambda: FIXED_CLOCK)


@pytest.fixture
def layouts(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Screen layouts, by the class of the screen laid out."""
    counts: Counter[str] = Counter()
    refresh_layout = Screen._refresh_layout

    def counting(self: Screen[Any], *args: Any, **kwargs: Any) -> None:
        counts[type(self).__name__] += 1
        refresh_layout(self, *args, **kwargs)

    monkeypatch.setattr(Screen, "_refresh_layout", counting)
    yield counts
