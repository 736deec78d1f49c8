"""A seed that has not answered shows in the dashboard's header, until it answers."""

from __future__ import annotations

import pytest

from gossip_tui.core.models import SocketAddress
from gossip_tui.node import NodeConfig, SeedAnswered, SeedUnreachable, open_node
from gossip_tui.testing import FakeCluster, FakeNodeConfig
from gossip_tui.ui import GossipApp
from gossip_tui.ui.widgets.cluster_header import ClusterHeader
from tests.processes import free_port
from tests.ui.conftest import header_span_style, make_app, wait_ready, wait_until

SEEDS = ("127.0.0.1:47001", "127.0.0.1:47002")
WARNING = "seeds: 1 of 2 unreachable"


def _header_text(app: GossipApp) -> str:
    return str(app.screen.query_one(ClusterHeader).render())


@pytest.mark.asyncio
async def test_an_unreachable_seed_is_in_the_header_until_it_answers(
    cluster: FakeCluster,
) -> None:
    app = make_app(cluster, config=FakeNodeConfig(node_id="node-0", seeds=SEEDS))
    silent = SocketAddress.parse(SEEDS[1])
    async with app.run_test(size=(140, 36)) as pilot:
        await wait_ready(pilot)
        assert "seeds" not in _header_text(app)  # nothing to say while the seeds answer

        cluster.emit(SeedUnreachable(silent, unanswered=3))
        await wait_until(pilot, lambda: WARNING in _header_text(app), what="the warning")
        assert "yellow" in header_span_style(app, WARNING)  # in the warning colour

        cluster.emit(SeedAnswered(silent))
        await wait_until(pilot, lambda: "seeds" not in _header_text(app), what="it to go")
        await pilot.press("q")


@pytest.mark.asyncio
async def test_a_real_node_whose_seed_never_answers_says_so_in_the_header() -> None:
    # A port with nobody on it, on 127.0.0.1: the Syns go unanswered.
    silent = f"127.0.0.1:{free_port()}"
    config = NodeConfig(
        listen_addr=SocketAddress.parse("127.0.0.1:0"),
        node_id="lonely",
        cluster_id="seed-header",
        seeds=(silent,),
        gossip_interval=0.05,
    )
    app = GossipApp(config, open_node, cursor_blink=False)
    async with app.run_test(size=(140, 36)) as pilot:
        await wait_ready(pilot)
        await wait_until(
            pilot, lambda: "seeds: 1 of 1 unreachable" in _header_text(app), what="the warning"
        )
        await pilot.press("q")
