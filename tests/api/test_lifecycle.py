"""A node's life through the HTTP API of a real peer (UDP on 127.0.0.1): a restart shows
as one node that restarted, a left node is counted apart from dead ones and can be
forgotten, and /metrics keeps one series per node id whatever the restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest

from gossip_tui.api import make_app
from gossip_tui.core.models import Liveness, NodeId
from gossip_tui.node import Node, open_node
from tests.node.helpers import all_see_each_other, fast_config, wait_until

from .asgi_client import acall


async def _get(node: Node, method: str, path: str) -> tuple[int, Any]:
    reply = await acall(make_app(node), method, path)
    assert reply is not None
    return reply.status, reply.json()


async def _metrics(node: Node) -> list[str]:
    reply = await acall(make_app(node), "GET", "/metrics")
    assert reply is not None and reply.status == 200
    return [line for line in reply.body.decode().splitlines() if not line.startswith("#")]


def _liveness(node: Node, other: NodeId) -> Liveness | None:
    found = node.snapshot().node(other)
    return None if found is None else found.liveness


@pytest.mark.trio
async def test_a_restart_is_one_row_that_says_restarted(tmp_path: Path) -> None:
    async with open_node(fast_config(node_id="peer")) as peer:
        config = attrs.evolve(
            fast_config(seeds=(str(peer.gossip_addr),)),
            node_id=None,
            generation=None,
            state_dir=tmp_path,
        )
        async with open_node(config) as first:
            first_id = first.self_id
            await wait_until(lambda: all_see_each_other([peer, first]), 20, "a live pair")
        async with open_node(config) as second:
            second_id = second.self_id
            await wait_until(lambda: all_see_each_other([peer, second]), 20, "the restart live")
            assert _liveness(peer, first_id) is Liveness.LEFT

            _, listed = await _get(peer, "GET", "/nodes")
            rows = [n for n in listed["nodes"] if n["chitchat_id"]["node_id"] == first_id.node_id]
            assert len(rows) == 1
            [row] = rows
            assert row["chitchat_id"]["generation_id"] == second_id.generation
            assert row["liveness"] == "live"
            assert row["restarted"]["previous_generation"] == first_id.generation
            assert row["restarted"]["seconds_since_restart"] >= 0

            _, detail = await _get(peer, "GET", f"/nodes/{first_id.node_id}")
            assert detail["node"]["restarted"]["previous_generation"] == first_id.generation

            # chitchat's shape still holds both generations, as chitchat-test's GET / does.
            _, index = await _get(peer, "GET", "/")
            generations = sorted(
                state["chitchat_id"]["generation_id"]
                for state in index["cluster_state"]["node_states"]
                if state["chitchat_id"]["node_id"] == first_id.node_id
            )
            assert generations == [first_id.generation, second_id.generation]

            _, health = await _get(peer, "GET", "/health")
            assert (health["live_nodes"], health["dead_nodes"], health["left_nodes"]) == (2, 0, 0)

            metrics = await _metrics(peer)
            heartbeats = [m for m in metrics if m.startswith("gossip_tui_heartbeat{")]
            # One series per node id, no generation in the labels: bounded across restarts.
            assert sorted(m.split(" ")[0] for m in heartbeats) == sorted(
                f'gossip_tui_heartbeat{{node_id="{name}"}}' for name in ("peer", first_id.node_id)
            )
            assert "gossip_tui_dead_nodes 0" in metrics
            assert "gossip_tui_left_nodes 0" in metrics
            assert 'gossip_tui_nodes{liveness="left"} 0' in metrics


@pytest.mark.trio
async def test_a_left_node_is_counted_apart_and_can_be_forgotten() -> None:
    async with open_node(fast_config(node_id="peer")) as peer:
        async with open_node(fast_config(node_id="goer", seeds=(str(peer.gossip_addr),))) as goer:
            goer_id = goer.self_id
            await wait_until(lambda: all_see_each_other([peer, goer]), 20, "a live pair")
            assert (await _get(peer, "DELETE", "/nodes/goer"))[0] == 409
            status, body = await _get(peer, "DELETE", "/nodes/peer")
            assert status == 409 and "live" in body["error"]
        await wait_until(lambda: _liveness(peer, goer_id) is Liveness.LEFT, 10, "goer left")

        _, health = await _get(peer, "GET", "/health")
        assert (health["live_nodes"], health["dead_nodes"], health["left_nodes"]) == (1, 0, 1)
        metrics = await _metrics(peer)
        assert "gossip_tui_left_nodes 1" in metrics and "gossip_tui_dead_nodes 0" in metrics

        status, body = await _get(peer, "DELETE", "/nodes/goer")
        assert status == 200
        assert [n["node_id"] for n in body["forgotten"]] == ["goer"]
        assert peer.snapshot().node(goer_id) is None
        _, listed = await _get(peer, "GET", "/nodes")
        assert [n["chitchat_id"]["node_id"] for n in listed["nodes"]] == ["peer"]
        _, health = await _get(peer, "GET", "/health")
        assert health["left_nodes"] == 0

        status, body = await _get(peer, "DELETE", "/nodes/goer")
        assert status == 404 and body["error"]
