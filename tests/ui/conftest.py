"""Helpers for the dashboard tests: a fake cluster, an app on it, and bounded waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from textual.pilot import Pilot

from gossip_tui.core.models import Liveness
from gossip_tui.testing import FakeCluster, FakeNodeConfig
from gossip_tui.ui import GossipApp

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
