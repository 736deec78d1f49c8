"""--state-dir: the operator's keys survive a restart; a corrupt file is set aside.

Real time, not trio's autojump clock: the saves run in a worker thread, and while one
does, the autojump clock would see every task blocked and leap past the waits' deadlines.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import attrs
import pytest

from gossip_tui.node import open_node
from gossip_tui.node._identity import NODE_ID_FILE
from gossip_tui.node._local_store import STATE_FILE, load_local_keys
from gossip_tui.testing import MemoryNetwork

from .helpers import fast_config, open_cluster, wait_until


@pytest.mark.trio
async def test_keys_come_back_under_a_new_generation(tmp_path: Path) -> None:
    network = MemoryNetwork(seed=21)
    async with open_cluster(1, transport=network.transport()) as (observer,):
        base = fast_config(seeds=(str(observer.gossip_addr),), node_id="durable")
        config = attrs.evolve(base, state_dir=tmp_path, generation=1)
        async with open_node(config, transport=network.transport()) as node:
            node.set("role", "indexer")
            node.set("zone", "eu-1")
            node.delete("zone")
            node.set_with_ttl("lease", "temporary")
            await wait_until(
                lambda: load_local_keys(tmp_path) == {"role": "indexer"}, 5, "the save"
            )
        restarted = attrs.evolve(config, generation=2)
        async with open_node(restarted, transport=network.transport()) as node:
            assert node.get("role") == "indexer"
            assert node.get("zone") is None and node.get("lease") is None
            await wait_until(
                lambda: observer.get("role", node.self_id) == "indexer", 30, "gossiped again"
            )
            assert node.self_id.generation == 2


@pytest.mark.trio
async def test_the_last_change_is_kept_on_close(tmp_path: Path) -> None:
    network = MemoryNetwork(seed=22)
    config = attrs.evolve(fast_config(), state_dir=tmp_path)
    async with open_node(config, transport=network.transport()) as node:
        node.set("a", "1")
        await wait_until(lambda: load_local_keys(tmp_path) == {"a": "1"}, 5, "first save")
        node.set("b", "2")  # closes right away, before the saver runs again
    assert load_local_keys(tmp_path) == {"a": "1", "b": "2"}
    saved = json.loads((tmp_path / STATE_FILE).read_text())
    assert saved == {"format": 1, "keys": {"a": "1", "b": "2"}}
    # No temporary left over (beside the node id the node keeps there too).
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([STATE_FILE, NODE_ID_FILE])


@pytest.mark.trio
async def test_a_corrupt_file_is_reported_and_moved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / STATE_FILE).write_text('{"format": 1, "keys": {"a": 3}}')
    network = MemoryNetwork(seed=23)
    config = attrs.evolve(fast_config(), state_dir=tmp_path)
    with caplog.at_level(logging.ERROR, logger="gossip_tui.node"):
        async with open_node(config, transport=network.transport()) as node:
            assert node.get("a") is None
            node.set("b", "2")
    assert "corrupt" in caplog.text
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(f"{STATE_FILE}.corrupt-")]
    assert len(aside) == 1
    assert aside[0].read_text() == '{"format": 1, "keys": {"a": 3}}'
    assert load_local_keys(tmp_path) == {"b": "2"}
