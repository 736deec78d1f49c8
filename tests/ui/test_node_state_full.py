"""The key form on a real node whose state is full shows why the write is refused
(issue 11, part B). UDP on 127.0.0.1 only."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from gossip_tui.core.models import SocketAddress
from gossip_tui.core.state import StateLimits
from gossip_tui.node import NodeConfig, NodeStateFull, open_node
from gossip_tui.ui import GossipApp
from gossip_tui.ui.screens import KeyFormScreen
from tests.ui.conftest import open_screen, wait_ready, wait_until


def _fill_until_refused(node: object, prefix: str, size: int) -> None:
    for i in range(10_000):
        try:
            node.set(f"{prefix}-{i:04d}", f"{i:04d}" + "x" * size)  # type: ignore[attr-defined]
        except NodeStateFull:
            return
    raise AssertionError("the node never refused a write")


@pytest.mark.asyncio
async def test_the_key_form_shows_why_a_full_node_refuses_a_write() -> None:
    config = NodeConfig(
        listen_addr=SocketAddress.parse("127.0.0.1:0"), node_id="ui-full", gossip_interval=0.1
    )
    app = GossipApp(config, open_node, cursor_blink=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        node = app.node
        assert node is not None
        # A small per-node bound, as peers would keep it: a dashboard with 8 MiB of long
        # values on screen takes minutes to draw. Filled up to less than what the form
        # lets one value take.
        node.engine.state.limits = StateLimits(max_node_state_bytes=30_000)  # type: ignore[attr-defined]
        _fill_until_refused(node, "small", 3_000)

        await open_screen(pilot, KeyFormScreen, "s")
        await pilot.press(*"last", "enter")
        app.screen.query_one("#value-input", Input).value = "y" * 8_000
        await pilot.press("enter")

        def refused() -> list[str]:
            return [n.message for n in app._notifications if "peers would refuse" in n.message]

        await wait_until(pilot, lambda: bool(refused()), what="the refusal on screen")
        assert "Could not set 'last'" in [
            n.title for n in app._notifications if n.message in refused()
        ]
        snapshot = node.snapshot()
        own = snapshot.node(snapshot.self_node)
        assert own is not None and "last" not in own.key_values
        await pilot.press("q")
