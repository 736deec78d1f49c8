"""--state-dir: start-up survives whatever is in the state file's place, and the keys it
holds pass the checks a new key passes.

Real time, like test_local_store.py: the loads and saves run in worker threads.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from gossip_tui.node import MAX_KEY_VALUE_BYTES, open_node
from gossip_tui.node._identity import NODE_ID_FILE
from gossip_tui.node._local_store import (
    STATE_FILE,
    load_local_keys,
    recover_local_keys,
    save_local_keys,
)
from gossip_tui.testing import MemoryNetwork

from .helpers import fast_config, open_cluster, wait_until


def _nested(depth: int) -> bytes:
    return b'{"format": 1, "keys": ' + b"[" * depth + b"]" * depth + b"}"


def _write(content: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(content)


def _make_directory(path: Path) -> None:
    path.mkdir()
    (path / "inside").write_text("kept")


def _symlink_loop(path: Path) -> None:
    # ELOOP: a file that cannot be opened, even by root (who reads mode 000 files).
    path.symlink_to(path.name)


def _unreadable(path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads a mode 000 file")
    path.write_text('{"format": 1, "keys": {"a": "1"}}')
    path.chmod(0)


BAD_FILES = {
    "deeply nested JSON": _write(_nested(200_000)),
    "a directory": _make_directory,
    "binary garbage": _write(bytes(range(256)) * 4),
    "invalid UTF-8 in JSON": _write(b'{"format": 1, "keys": {"a": "\xff"}}'),
    "a JSON list": _write(b"[1, 2, 3]"),
    "another format": _write(b'{"format": 2, "keys": {}}'),
    "keys not a mapping": _write(b'{"format": 1, "keys": ["a"]}'),
    "a number as a value": _write(b'{"format": 1, "keys": {"a": 3}}'),
    "an empty file": _write(b""),
    "a symlink loop": _symlink_loop,
    "an unreadable file": _unreadable,
}


@pytest.mark.parametrize("make_bad", BAD_FILES.values(), ids=BAD_FILES.keys())
@pytest.mark.trio
async def test_start_up_survives_any_state_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, make_bad: Callable[[Path], None]
) -> None:
    path = tmp_path / STATE_FILE
    make_bad(path)
    config = attrs.evolve(fast_config(), state_dir=tmp_path)
    with caplog.at_level(logging.ERROR, logger="gossip_tui.node"):
        async with open_node(config, transport=MemoryNetwork(seed=31).transport()) as node:
            assert node.durable_keys() == {}
            node.set("b", "2")
            await node.flush()
            assert load_local_keys(tmp_path) == {"b": "2"}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "\n" not in errors[0].getMessage()
    assert errors[0].exc_info is None  # one line, no traceback
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(f"{STATE_FILE}.corrupt-")]
    assert len(aside) == 1, sorted(p.name for p in tmp_path.iterdir())
    assert str(aside[0]) in errors[0].getMessage()


@pytest.mark.trio
async def test_the_moved_file_keeps_its_content(tmp_path: Path) -> None:
    garbage = bytes(range(256))
    (tmp_path / STATE_FILE).write_bytes(garbage)
    assert load_local_keys(tmp_path) == {}
    (tmp_path / STATE_FILE).write_bytes(garbage[::-1])
    assert load_local_keys(tmp_path) == {}  # the same second: a second name, not a clobber
    aside = sorted(p for p in tmp_path.iterdir() if p.name.startswith(f"{STATE_FILE}.corrupt-"))
    assert {p.read_bytes() for p in aside} == {garbage, garbage[::-1]}


@pytest.mark.trio
async def test_a_stale_temporary_file_is_removed_at_start(tmp_path: Path) -> None:
    save_local_keys(tmp_path, {"a": "1"})
    stale = tmp_path / f".{STATE_FILE}.x1y2z3"
    stale.write_text('{"format": 1, "keys": {"half')
    assert load_local_keys(tmp_path) == {"a": "1"}
    assert stale.exists()  # a plain load (a reader beside a running node) leaves it
    config = attrs.evolve(fast_config(), state_dir=tmp_path)
    async with open_node(config, transport=MemoryNetwork(seed=34).transport()) as node:
        assert node.get("a") == "1"
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([STATE_FILE, NODE_ID_FILE])
    assert recover_local_keys(tmp_path) == {"a": "1"}


@pytest.mark.trio
async def test_saved_keys_pass_the_size_check(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    too_large = "v" * 100_000
    saved = {"big": too_large, "": "empty key", "bind": "1.2.3.4:5", "ok": "fine"}
    save_local_keys(tmp_path, saved)
    network = MemoryNetwork(seed=32)
    async with open_cluster(1, transport=network.transport()) as (observer,):
        base = fast_config(seeds=(str(observer.gossip_addr),), node_id="loaded")
        config = attrs.evolve(base, state_dir=tmp_path, publish_bind_key=False)
        with caplog.at_level(logging.ERROR, logger="gossip_tui.node"):
            async with open_node(config, transport=network.transport()) as node:
                assert node.durable_keys() == {"ok": "fine"}
                assert node.get("big") is None and node.get("bind") is None
                await wait_until(lambda: observer.get("ok", node.self_id) == "fine", 10, "ok")
                assert observer.get("big", node.self_id) is None
                assert node.stats.send_errors == 0
                # The state file is saved again without them, so that the next start does
                # not set them aside once more.
                await wait_until(
                    lambda: load_local_keys(tmp_path) == {"ok": "fine"}, 5, "the resave"
                )
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "refused 3 saved key(s)" in errors[0], errors
    refused = [p for p in tmp_path.iterdir() if p.name.startswith(f"{STATE_FILE}.refused-")]
    assert len(refused) == 1
    assert json.loads(refused[0].read_text())["keys"] == {
        "big": too_large,
        "": "empty key",
        "bind": "1.2.3.4:5",
    }
    assert len(too_large) > MAX_KEY_VALUE_BYTES


@pytest.mark.trio
async def test_config_keys_win_over_saved_ones(tmp_path: Path) -> None:
    save_local_keys(tmp_path, {"role": "old", "zone": "eu"})
    base = fast_config()
    config = attrs.evolve(base, state_dir=tmp_path, initial_key_values={"role": "new"})
    async with open_node(config, transport=MemoryNetwork(seed=33).transport()) as node:
        assert node.get("role") == "new" and node.get("zone") == "eu"
