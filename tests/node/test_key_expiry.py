"""Node.set(key, value, ttl=SECONDS): the key lives until its deadline, then the node
deletes it; peers see an ordinary delete. The deadline survives a restart (--state-dir)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import attrs
import pytest
import trio

from gossip_tui.core.expiry import InvalidTtl
from gossip_tui.core.models import KeyStatus
from gossip_tui.node import KeyDeleted, Node, open_node
from gossip_tui.node._local_store import STATE_FILE, load_saved_keys, save_local_keys
from gossip_tui.testing import MemoryNetwork

from .helpers import fast_config, open_cluster, wait_until


def _deleted_on(peer: Node, owner: Node, key: str) -> bool:
    state = peer.engine.state.node_state(owner.self_id)
    value = None if state is None else state.key_values.get(key)
    return value is not None and value.status is KeyStatus.DELETED


@pytest.mark.trio
async def test_an_expired_key_is_deleted_and_a_peer_sees_it_deleted_over_udp() -> None:
    async with open_cluster(2) as (owner, peer):
        owner_events = owner.subscribe()
        peer_events = peer.subscribe("lease")
        set_at = trio.current_time()
        owner.set("lease", "holder-a", ttl=0.6)
        assert owner.key_expiries()["lease"] == pytest.approx(set_at + 0.6, abs=0.05)
        await wait_until(
            lambda: peer.get("lease", owner.self_id) == "holder-a", 5, "the peer to see the key"
        )
        await wait_until(lambda: _deleted_on(peer, owner, "lease"), 10, "the peer to see it go")
        assert trio.current_time() - set_at >= 0.6  # not before its deadline
        assert owner.get("lease") is None
        assert "lease" not in owner.key_expiries()
        with trio.fail_after(5):
            while True:
                event = await owner_events.receive()
                if isinstance(event, KeyDeleted) and event.key == "lease":
                    break
        assert event.reason == "expired"
        with trio.fail_after(5):
            while True:
                seen = await peer_events.receive()
                if isinstance(seen, KeyDeleted) and seen.key == "lease":
                    break
        # The wire carries a delete and nothing more: the peer cannot tell why.
        assert seen.reason == "deleted"


@pytest.mark.trio
async def test_setting_a_key_again_replaces_or_clears_its_expiry(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = fast_config(node_id="solo")
    async with open_node(config, transport=MemoryNetwork(seed=7).transport()) as node:
        node.set("plain", "1", ttl=1)
        node.set("plain", "2")  # no ttl: lives on
        node.set("longer", "1", ttl=1)
        node.set("longer", "1", ttl=10)  # same value, new deadline
        node.set("chitchat", "1", ttl=1)
        node.set_with_ttl("chitchat", "1")  # chitchat's own TTL takes over
        await trio.sleep(5)
        assert node.get("plain") == "2"
        assert node.get("longer") == "1"
        assert node.get("chitchat") == "1"
        assert set(node.key_expiries()) == {"longer"}
        await trio.sleep(6)
        assert node.get("longer") is None


@pytest.mark.trio
async def test_a_bad_ttl_is_refused_before_anything_changes(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_node(fast_config(), transport=MemoryNetwork(seed=8).transport()) as node:
        node.set("a", "old")
        version = node.engine.self_state.max_version
        for bad in (0, -1, float("nan"), float("inf"), 1e12):
            with pytest.raises(InvalidTtl):
                node.set("a", "new", ttl=bad)
        assert node.get("a") == "old"
        assert node.engine.self_state.max_version == version
        assert not node.key_expiries()


@pytest.mark.trio
async def test_the_deadline_survives_a_restart_as_wall_clock_time(tmp_path: Path) -> None:
    config = attrs.evolve(fast_config(node_id="durable"), state_dir=tmp_path)
    async with open_node(config) as node:
        node.set("lease", "holder-a", ttl=3600)
        node.set("plain", "x")
        await node.flush()
        written = time.time()
    saved = load_saved_keys(tmp_path)
    assert dict(saved.keys) == {"lease": "holder-a", "plain": "x"}
    assert saved.expires_at["lease"] == pytest.approx(written + 3600, abs=2)
    assert set(saved.expires_at) == {"lease"}
    async with open_node(config) as again:
        assert again.get("lease") == "holder-a"
        left = again.key_expiries()["lease"] - trio.current_time()
        assert 3600 - 5 < left <= 3600
        assert "plain" not in again.key_expiries()


@pytest.mark.trio
async def test_a_key_whose_deadline_passed_while_down_is_deleted_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "gossip_tui.node")
    now = time.time()
    save_local_keys(
        tmp_path,
        {"gone": "1", "kept": "2", "plain": "3"},
        expires_at={"gone": now - 10, "kept": now + 600},
    )
    config = attrs.evolve(fast_config(node_id="durable"), state_dir=tmp_path)
    async with open_node(config) as node:
        assert node.get("gone") is None
        assert node.get("kept") == "2" and node.get("plain") == "3"
        assert set(node.key_expiries()) == {"kept"}
        # The state file is saved again without the expired key.
        await wait_until(
            lambda: "gone" not in load_saved_keys(tmp_path).keys, 5, "the file saved anew"
        )
    assert "expired while the node was down" in caplog.text
    raw = json.loads((tmp_path / STATE_FILE).read_text())
    assert raw["format"] == 1 and set(raw["expires_at"]) == {"kept"}


def test_a_state_file_with_bad_deadlines_is_moved_aside(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text(
        json.dumps({"format": 1, "keys": {"a": "1"}, "expires_at": {"a": "soon"}})
    )
    assert dict(load_saved_keys(tmp_path).keys) == {}
    assert any(p.name.startswith(f"{STATE_FILE}.corrupt-") for p in tmp_path.iterdir())
