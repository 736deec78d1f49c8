"""--state-dir: Node.flush() returns once every change made before it is on disk, and
concurrent writers share the saves (group commit).

Real time, like test_local_store.py: the saves run in worker threads.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import attrs
import pytest
import trio

from gossip_tui.node import KeysNotSaved, open_node
from gossip_tui.node import _persistence as node_module
from gossip_tui.node._local_store import load_local_keys, save_local_keys
from gossip_tui.testing import MemoryNetwork

from .helpers import fast_config


@pytest.mark.trio
async def test_flush_returns_once_the_change_is_on_disk(tmp_path: Path) -> None:
    config = attrs.evolve(fast_config(), state_dir=tmp_path)
    async with open_node(config, transport=MemoryNetwork(seed=41).transport()) as node:
        node.set("a", "1")
        node.set("b", "2")
        await node.flush()
        assert load_local_keys(tmp_path) == {"a": "1", "b": "2"}
        node.delete("a")
        await node.flush()
        assert load_local_keys(tmp_path) == {"b": "2"}
        await node.flush()  # nothing new: returns at once


@pytest.mark.trio
async def test_flush_without_a_state_dir_returns_at_once() -> None:
    async with open_node(fast_config(), transport=MemoryNetwork(seed=42).transport()) as node:
        node.set("a", "1")
        with trio.fail_after(0.01):
            await node.flush()


@pytest.mark.trio
async def test_concurrent_writers_share_the_saves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saves: list[int] = []
    lock = threading.Lock()

    def slow_save(state_dir: Path, keys: Mapping[str, str]) -> None:
        with lock:
            saves.append(len(keys))
        time.sleep(0.05)  # a slow disk: the writers arriving meanwhile wait for one save
        save_local_keys(state_dir, keys)

    monkeypatch.setattr(node_module, "save_local_keys", slow_save)
    config = attrs.evolve(fast_config(), state_dir=tmp_path)
    writers = 50
    async with open_node(config, transport=MemoryNetwork(seed=43).transport()) as node:

        async def write(i: int) -> None:
            node.set(f"k{i}", str(i))
            await node.flush()
            assert load_local_keys(tmp_path)[f"k{i}"] == str(i)

        async with trio.open_nursery() as nursery:
            for i in range(writers):
                nursery.start_soon(write, i)
            # A second wave while the first save runs.
            await trio.sleep(0.01)
            for i in range(writers, 2 * writers):
                nursery.start_soon(write, i)
        assert len(load_local_keys(tmp_path)) == 2 * writers
        assert len(saves) <= 4, saves


@pytest.mark.trio
async def test_a_failed_save_fails_the_flush_and_the_next_change_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = [OSError(errno.ENOSPC, "No space left on device")]

    def flaky_save(state_dir: Path, keys: Mapping[str, str]) -> None:
        if failures:
            raise failures.pop()
        save_local_keys(state_dir, keys)

    monkeypatch.setattr(node_module, "save_local_keys", flaky_save)
    config = attrs.evolve(fast_config(), state_dir=tmp_path)
    async with open_node(config, transport=MemoryNetwork(seed=44).transport()) as node:
        node.set("a", "1")
        with pytest.raises(KeysNotSaved, match="No space left") as caught, trio.fail_after(5):
            await node.flush()
        assert caught.value.errno == errno.ENOSPC
        assert load_local_keys(tmp_path) == {}
        node.set("b", "2")
        await node.flush()
        assert load_local_keys(tmp_path) == {"a": "1", "b": "2"}
