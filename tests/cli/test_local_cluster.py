"""scripts/local_cluster.py: the node command lines, its arguments, and a real run."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "local_cluster.py"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("local_cluster", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_node_zero_has_no_seed_and_the_others_seed_with_it(script: Any) -> None:
    first = script.node_command(0, base_port=20000, interval_ms=100, python="py")
    third = script.node_command(
        2, base_port=20000, interval_ms=100, extra=["--no-http"], python="py"
    )

    assert first == [
        "py", "-m", "gossip_tui", "--headless", "--listen-addr", "127.0.0.1:20000",
        "--node-id", "node-0", "--interval-ms", "100",
    ]  # fmt: skip
    assert third == [
        "py", "-m", "gossip_tui", "--headless", "--listen-addr", "127.0.0.1:20002",
        "--node-id", "node-2", "--interval-ms", "100", "--seed", "127.0.0.1:20000", "--no-http",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [["--nodes", "0"], ["--base-port", "65535", "--nodes", "2"], ["--interval-ms", "0"]],
)
def test_bad_arguments_exit_2(script: Any, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        script.main(argv)

    assert raised.value.code == 2


def _two_free_ports() -> int:
    """A base port such that base and base + 1 are free for UDP and TCP on 127.0.0.1."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base >= 0xFFFF:
            continue
        sockets = []
        try:
            for port in (base, base + 1):
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    sock = socket.socket(socket.AF_INET, kind)
                    sockets.append(sock)
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise AssertionError("no two consecutive free ports")


def _live_names(url: str) -> set[str]:
    try:
        with _OPENER.open(url, timeout=5) as response:
            body = json.loads(response.read())
    except (OSError, urllib.error.URLError):
        return set()
    return {node["node_id"] for node in body["live_nodes"]}


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.slow
@pytest.mark.parametrize("started_in_background", [False, True])
def test_starts_a_cluster_and_stops_it_on_sigint(
    tmp_path: Path, started_in_background: bool
) -> None:
    # A shell without job control starts a background job (`script &`) with SIGINT
    # ignored, and Python keeps an inherited SIG_IGN: the script must still stop on it.
    base = _two_free_ports()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSIP_TUI_")}
    out = tmp_path / "out.txt"
    with out.open("wb") as stdout, (tmp_path / "err.txt").open("wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                str(SCRIPT),
                "-n",
                "2",
                "--base-port",
                str(base),
                "--interval-ms",
                "100",
            ],
            stdout=stdout,
            stderr=stderr,
            env=env,
            preexec_fn=_ignore_sigint if started_in_background else None,
        )
    try:
        deadline = time.monotonic() + 30
        url = f"http://127.0.0.1:{base + 1}/"
        while _live_names(url) != {"node-0", "node-1"}:
            assert process.poll() is None, (tmp_path / "err.txt").read_text()
            assert time.monotonic() < deadline, "the two nodes never saw each other"
            time.sleep(0.1)

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    printed = out.read_text()
    assert f"node-0: gossip udp 127.0.0.1:{base}  http http://127.0.0.1:{base}/" in printed
    assert f"node-1: gossip udp 127.0.0.1:{base + 1}" in printed
    # The nodes are gone with the script.
    assert _live_names(url) == set()
