"""--headless: the node with its HTTP API, membership logs, signals, busy ports."""

from __future__ import annotations

import errno
import linecache
import logging
import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from gossip_tui import cli
from gossip_tui._config_file import CliSettings
from gossip_tui.core.models import SocketAddress
from tests.processes import answers, free_port, get_json, running_node, wait_for

from .fake_runtime import FakeRuntimeNode, fake_open_node

# --------------------------------------------------------------------------- with a fake node


@pytest.mark.trio
async def test_serves_http_logs_members_and_stops_on_sigterm(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = CliSettings(listen_addr=SocketAddress.parse("127.0.0.1:0"), headless=True)
    seen: dict[str, Any] = {}

    async def on_ready(node: FakeRuntimeNode) -> None:
        assert node.http_addr is not None
        seen["health"] = await trio.to_thread.run_sync(get_json, f"http://{node.http_addr}/health")
        seen["http_addr"] = node.http_addr
        while "2 live node(s)" not in caplog.text:  # the membership, logged at start
            await trio.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    with caplog.at_level(logging.INFO, logger="gossip_tui"), trio.fail_after(10):
        await cli.serve_headless(
            settings, settings, fake_open_node, report_interval=0.01, on_ready=on_ready
        )

    assert seen["health"]["status"] == "ok"
    assert seen["http_addr"].port != 0
    assert "fake-0 sees 2 live node(s): fake-0 bind=127.0.0.1:0, fake-1 bind=?" in caplog.text
    assert "SIGTERM received: shutting down" in caplog.text
    # The service ended with the node: nothing listens any more.
    addr = seen["http_addr"]
    with pytest.raises(OSError), socket.create_connection((addr.host, addr.port), timeout=5):
        pass


@pytest.mark.trio
async def test_a_ready_node_keeps_no_generated_source() -> None:
    # attrs keeps each generated method's source in linecache (for debuggers): ~0.22 MB
    # a headless node holds for nothing.
    settings = CliSettings(listen_addr=SocketAddress.parse("127.0.0.1:0"), no_http=True)
    kept: list[str] = []

    async def on_ready(node: FakeRuntimeNode) -> None:
        kept.extend(name for name in linecache.cache if name.startswith("<attrs generated"))
        os.kill(os.getpid(), signal.SIGINT)

    @attrs.frozen
    class Generated:  # a class made now: its methods' source is in linecache
        value: int

    assert any(name.startswith("<attrs generated") for name in linecache.cache)
    with trio.fail_after(10):
        await cli.serve_headless(settings, settings, fake_open_node, on_ready=on_ready)

    assert kept == []


@pytest.mark.trio
async def test_no_http_serves_nothing() -> None:
    settings = CliSettings(listen_addr=SocketAddress.parse("127.0.0.1:0"), no_http=True)
    nodes: list[FakeRuntimeNode] = []

    async def on_ready(node: FakeRuntimeNode) -> None:
        nodes.append(node)
        os.kill(os.getpid(), signal.SIGINT)

    with trio.fail_after(10):
        await cli.serve_headless(settings, settings, fake_open_node, on_ready=on_ready)

    assert nodes[0].http_addr is None
    assert nodes[0].services == []


@contextmanager
def _busy_tcp_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        yield blocker.getsockname()[1]


def test_a_busy_http_port_is_a_one_line_error_with_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The UDP side is free (the fake binds nothing); the TCP port is taken.
    monkeypatch.setattr(cli, "to_node_config", lambda settings: settings)
    monkeypatch.setattr(cli, "run_headless", partial(cli.run_headless, open_node=fake_open_node))

    with _busy_tcp_port() as port:
        code = cli.main(["--headless", "--listen-addr", f"127.0.0.1:{port}"])

    assert code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"gossip-tui: error: address 127.0.0.1:{port} is already in use"
    assert "Traceback" not in err


def test_other_errors_are_not_disguised_as_busy_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "to_node_config", lambda settings: settings)

    def broken_open_node(config: Any) -> Any:
        raise OSError(errno.ENOENT, "something else")

    with pytest.raises(OSError, match="something else"):
        cli.run_headless(CliSettings(headless=True), open_node=broken_open_node)


# --------------------------------------------------------------------------- the real node


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_two_real_nodes_meet_and_stop_cleanly(tmp_path: Path, stop: signal.Signals) -> None:
    port0, port1 = free_port(), free_port()
    first = ("--listen-addr", f"127.0.0.1:{port0}", "--interval-ms", "100")
    second = ("--listen_addr", f"127.0.0.1:{port1}", "--interval_ms", "100")
    with (
        running_node(tmp_path, "real-0", *first) as (p0, log0),
        running_node(tmp_path, "real-1", *second, "--seed", f"127.0.0.1:{port0}") as (p1, _),
    ):
        url = f"http://127.0.0.1:{port0}/"

        def both_live() -> bool:
            if not answers(url):
                return False
            return {n["node_id"] for n in get_json(url)["live_nodes"]} == {"real-0", "real-1"}

        wait_for(both_live, 30, "both nodes live in node 0's view")
        wait_for(lambda: "real-1 bind=" in log0.read_text(), 10, "a membership log line")
        index = get_json(url)
        p0.send_signal(stop)
        p1.send_signal(stop)

        assert p0.wait(timeout=15) == 0, log0.read_text()
        assert p1.wait(timeout=15) == 0

    states = {s["chitchat_id"]["node_id"]: s for s in index["cluster_state"]["node_states"]}
    assert states["real-1"]["key_values"]["bind"] == {
        "value": f"127.0.0.1:{port1}",
        "version": 1,
        "status": "Set",
    }
    expected = f"real-0 sees 2 live node(s): real-0 bind=127.0.0.1:{port0}, real-1 bind="
    assert expected in log0.read_text()


def test_a_real_node_on_a_busy_port_exits_2_with_one_line(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        port = blocker.getsockname()[1]
        with running_node(tmp_path, "busy", "--listen-addr", f"127.0.0.1:{port}") as (process, log):
            code = process.wait(timeout=30)

    assert code == 2
    assert log.read_text().splitlines() == [
        f"gossip-tui: error: address 127.0.0.1:{port} is already in use"
    ]
