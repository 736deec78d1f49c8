"""A node's life as operators live it: how it stops, restarts and is forgotten.

Real UDP on 127.0.0.1, real time, deadlines rather than sleeps.
"""

from __future__ import annotations

import pytest
import trio

from gossip_tui.core.models import Liveness, NodeId
from gossip_tui.node import Node, open_node

from .helpers import all_see_each_other, fast_config, wait_until

INTERVAL = 0.2
# Two gossip rounds, and slack for a loaded machine.
LEFT_DEADLINE = 2 * INTERVAL + 1.0


def _liveness(node: Node, other: NodeId) -> Liveness | None:
    found = node.snapshot().node(other)
    return None if found is None else found.liveness


@pytest.mark.trio
@pytest.mark.parametrize("how", ["outer_cancel_scope", "normal_exit"])
async def test_a_stopping_node_is_left_on_its_peer_within_two_rounds(how: str) -> None:
    async with open_node(fast_config(node_id="peer", interval=INTERVAL)) as peer:
        config = fast_config(node_id="goer", interval=INTERVAL, seeds=(str(peer.gossip_addr),))
        with trio.move_on_after(60) as outer:
            async with open_node(config) as goer:
                goer_id = goer.self_id
                await wait_until(lambda: all_see_each_other([peer, goer]), 20, "a live pair")
                if how == "outer_cancel_scope":
                    outer.deadline = trio.current_time()  # what move_on_after expiring does
                    await trio.sleep_forever()
        closed_at = trio.current_time()
        assert not outer.cancelled_caught or how == "outer_cancel_scope"
        await wait_until(
            lambda: _liveness(peer, goer_id) is Liveness.LEFT,
            LEFT_DEADLINE,
            "the peer to show the goer LEFT",
        )
        # The close itself waited for the peer's SynAck, not for the leave timeout.
        assert trio.current_time() - closed_at < LEFT_DEADLINE
