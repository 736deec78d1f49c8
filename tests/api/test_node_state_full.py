"""The HTTP API over a real node whose state is full: the refusal and its reason reach
the client (issue 11, part B: writes peers would refuse are no longer acknowledged)."""

from __future__ import annotations

import pytest
import trio

from gossip_tui.api import make_app
from gossip_tui.core.models import SocketAddress
from gossip_tui.node import NodeConfig, NodeStateFull, open_node
from gossip_tui.testing import MemoryNetwork

from .asgi_client import acall


@pytest.mark.trio
async def test_a_put_past_the_per_node_bound_is_413_with_the_reason(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork(seed=21)
    config = NodeConfig(
        listen_addr=SocketAddress.parse("127.0.0.1:0"), node_id="full", generation=1
    )
    async with open_node(config, transport=network.transport()) as node:
        app = make_app(node)
        statuses = []
        for i in range(200):
            reply = await acall(app, "PUT", f"/keys/big-{i:03d}", body=b"x" * 59_000)
            assert reply is not None
            statuses.append(reply.status)
            if reply.status != 200:
                break
        assert reply is not None and statuses[-1] == 413, "200 PUTs of 59 KB were all acknowledged"
        assert set(statuses[:-1]) == {200}
        error = reply.json()["error"]
        assert "peers would refuse" in error
        assert node.get(f"big-{len(statuses) - 1:03d}") is None
        by_query = await acall(app, "GET", "/set_kv/", query=f"key=big-x&value={'y' * 59_000}")
        assert by_query is not None and by_query.status == 413
        assert "peers would refuse" in by_query.json()["error"]
        with pytest.raises(NodeStateFull):
            node.set("big-y", "z" * 59_000)
