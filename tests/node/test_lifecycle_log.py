"""What a headless node logs: each membership change from the node's events (no member
list every second), at the level asked, as text or as one JSON object a line."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import attrs
import pytest
import trio

from gossip_tui import cli
from gossip_tui._config_file import CliSettings
from gossip_tui._logging import configure_logging
from gossip_tui.node import log_lifecycle, open_node

from .helpers import all_see_each_other, fast_config, wait_until


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gossip_tui.cluster"]


def _count(caplog: pytest.LogCaptureFixture, fragment: str) -> int:
    return sum(fragment in m for m in _messages(caplog))


@pytest.mark.trio
async def test_changes_are_logged_as_they_happen_and_only_then(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO, logger="gossip_tui")
    async with open_node(fast_config(node_id="watcher")) as watcher, trio.open_nursery() as nursery:
        nursery.start_soon(log_lifecycle, watcher)
        await wait_until(lambda: _count(caplog, "watcher sees 1 live") == 1, 5, "start line")
        config = attrs.evolve(
            fast_config(seeds=(str(watcher.gossip_addr),)),
            node_id="goer",
            generation=None,
            state_dir=tmp_path,
        )
        async with open_node(config) as goer:
            first = goer.self_id
            await wait_until(lambda: all_see_each_other([watcher, goer]), 20, "a pair")
            await wait_until(lambda: _count(caplog, "goer joined") == 1, 5, "the join")
            # Quiet rounds log nothing: no member list every interval.
            logged = len(_messages(caplog))
            rounds = watcher.stats.rounds + 10
            await wait_until(lambda: watcher.stats.rounds >= rounds, 10, "ten quiet rounds")
            assert len(_messages(caplog)) == logged
        await wait_until(lambda: _count(caplog, "goer left") == 1, 10, "the leave")
        async with open_node(config) as again:
            second = again.self_id
            await wait_until(lambda: _count(caplog, "goer restarted") == 1, 20, "restart")
        await wait_until(lambda: _count(caplog, "goer left") == 2, 10, "the second leave")
        watcher.forget(first)
        await wait_until(lambda: _count(caplog, "goer forgotten") == 1, 5, "the forget")
        nursery.cancel_scope.cancel()
    restarted = next(m for m in _messages(caplog) if "goer restarted" in m)
    assert f"(generation {first.generation} -> {second.generation})" in restarted
    assert "watcher sees 2 live node(s): goer bind=" in restarted
    assert _count(caplog, "is dead") == 0  # leaves, not deaths


def test_json_log_lines_are_one_object_each() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("warning", "json", stream)
        logging.getLogger("gossip_tui.node").info("not at this level")
        logging.getLogger("gossip_tui.node").warning("seed %s\nis quiet", "127.0.0.1:1")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("gossip_tui.node").exception("caught")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = stream.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["level"], r["logger"], r["message"]) for r in records] == [
        ("WARNING", "gossip_tui.node", "seed 127.0.0.1:1\nis quiet"),
        ("ERROR", "gossip_tui.node", "caught"),
    ]
    assert "RuntimeError: boom" in records[1]["exception"]
    assert records[0]["time"].endswith("Z")


def test_the_log_options_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    captured: list[CliSettings] = []
    monkeypatch.setattr(cli, "run_headless", lambda settings: captured.append(settings) or 0)
    monkeypatch.setenv("GOSSIP_TUI_LOG_LEVEL", "debug")

    assert cli.main(["--headless", "--log-format", "JSON"]) == 0
    assert cli.main(["--headless", "--log-level", "loud"]) == 2

    assert [(s.log_level, s.log_format) for s in captured] == [("debug", "json")]
