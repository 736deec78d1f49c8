"""What a headless node logs: each membership change from the node's events (no member
list every second), at the level asked, as text or as one JSON object a line."""

from __future__ import annotations

import io
import json
import logging
import socket
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from gossip_tui import cli
from gossip_tui._config_file import CliSettings
from gossip_tui._logging import configure_logging
from gossip_tui.core.models import ClusterSnapshot, NodeId, SocketAddress
from gossip_tui.core.simulation import sim_address
from gossip_tui.node import NodeJoined, _lifecycle_log, log_lifecycle, open_node
from gossip_tui.testing import MemoryNetwork

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


class _FlakyResolver(trio.abc.HostnameResolver):
    """Fails the first ``failures`` look-ups, then answers 127.0.0.1: no real DNS."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        await trio.lowlevel.checkpoint()
        if self.calls <= self.failures:
            raise OSError(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", int(port)))]

    async def getnameinfo(self, sockaddr: Any, flags: int) -> Any:
        raise NotImplementedError


@pytest.mark.trio
async def test_a_seed_host_that_does_not_resolve_is_logged_once(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.abc.Clock
) -> None:
    caplog.set_level(logging.DEBUG, logger="gossip_tui")
    resolver = _FlakyResolver(failures=4)
    trio.socket.set_custom_hostname_resolver(resolver)
    config = fast_config("127.0.0.1:7100", seeds=("seed.example:7101",), node_id="n")
    async with open_node(config, transport=MemoryNetwork(seed=5).transport()) as node:
        await wait_until(lambda: resolver.calls > resolver.failures, 60, "the name resolving")
        assert node.engine.seed_addrs == {SocketAddress.parse("127.0.0.1:7101")}
    warnings = [
        r for r in caplog.records if r.levelno >= logging.WARNING and "resolve seed" in r.message
    ]
    assert len(warnings) == 1
    assert sum("resolves again" in r.message for r in caplog.records) == 1


@attrs.frozen
class _KnowsNames:
    """A node that knows ``known`` and cannot take a snapshot of the cluster."""

    self_id: NodeId
    known: list[NodeId]

    def live_nodes(self) -> list[NodeId]:
        return list(self.known)

    def known_nodes(self) -> list[NodeId]:
        return list(self.known)

    def get(self, key: str, node: NodeId | None = None) -> str | None:
        return None

    def snapshot(self) -> ClusterSnapshot:
        raise AssertionError("a snapshot of the whole cluster was taken")


def test_a_join_of_a_name_known_under_no_other_generation_takes_no_snapshot() -> None:
    # A forming node logs a join for every other node: copying every node's state for
    # each one costs ~0.05 s of CPU per node while 100 nodes form.
    me = NodeId("me", 1, sim_address(0))
    peers = [NodeId(f"peer-{i}", 1, sim_address(i)) for i in range(1, 50)]
    # Another name's second generation is no restart of this one.
    other = NodeId("peer-2", 2, sim_address(60))
    node = _KnowsNames(me, [me, *peers, other])
    described = _lifecycle_log._describe(node, NodeJoined(peers[0]))  # type: ignore[arg-type]
    assert described == (logging.INFO, f"peer-1 joined ({peers[0]})")
