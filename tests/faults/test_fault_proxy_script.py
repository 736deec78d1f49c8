"""scripts/fault_proxy.py: its arguments and command lines, and a real run with 3 nodes."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio

from gossip_tui.core.models import SocketAddress
from gossip_tui.testing import FaultController, LinkFaults, MemoryNetwork, open_proxy, proxy_host
from tests.processes import answers, get_json, wait_for

from .helpers import needs_loopback_aliases

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "fault_proxy.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fault_proxy", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_spawned_nodes_advertise_their_proxy_and_seed_with_node_0s(script: Any) -> None:
    args = script.parse_args(["run", "--spawn", "3", "--base-port", "20000", "--loss", "0.1"])
    nodes = script.node_addresses(args)
    fronts = script.proxy_addresses(args, nodes)
    assert [str(n) for n in nodes] == ["127.0.0.1:20000", "127.0.0.1:20001", "127.0.0.1:20002"]
    assert [str(f) for f in fronts] == [
        "127.0.0.10:20000",
        "127.0.0.11:20001",
        "127.0.0.12:20002",
    ]
    first = script.node_command(0, nodes[0], fronts[0], fronts[0], interval_ms=100, python="py")
    third = script.node_command(
        2, nodes[2], fronts[2], fronts[0], interval_ms=100, extra=["--no-http"], python="py"
    )
    assert first == [
        "py", "-m", "gossip_tui", "--headless", "--listen-addr", "127.0.0.1:20000",
        "--public-addr", "127.0.0.10:20000", "--node-id", "node-0", "--interval-ms", "100",
    ]  # fmt: skip
    assert third[-4:] == ["100", "--seed", "127.0.0.10:20000", "--no-http"]
    assert args.loss == 0.1


def test_proxies_for_given_nodes_and_other_ports(script: Any) -> None:
    args = script.parse_args(
        ["run", "--node", "127.0.0.1:7001", "--node", "127.0.0.5:7005", "--proxy-base", "40"]
    )
    fronts = script.proxy_addresses(args, script.node_addresses(args))
    assert [str(f) for f in fronts] == ["127.0.0.40:7001", "127.0.0.41:7005"]
    args = script.parse_args(["run", "--node", "127.0.0.1:7001", "--proxy-port", "0"])
    assert [str(f) for f in script.proxy_addresses(args, script.node_addresses(args))] == [
        "127.0.0.10:0"
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--node", "10.0.0.1:7001"],  # off this machine
        ["run", "--node", "[::1]:7001"],  # loopback, but not 127.0.0.0/8
        ["run", "--spawn", "3", "--loss", "1.5"],
        ["run", "--spawn", "0"],
        ["run", "--spawn", "300"],
        ["run", "--spawn", "2", "--node", "127.0.0.1:1"],
        ["run", "--spawn", "2", "--control", "192.0.2.1:9"],
        ["ctl", "8.8.8.8:53", "show"],
        ["run", "--spawn", "2", "--delay-ms", "-5"],
    ],
)
def test_bad_arguments_are_refused(script: Any, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        script.parse_args(argv)
    assert exit_info.value.code == 2


@needs_loopback_aliases
def test_a_busy_address_or_a_bad_command_ends_the_run_with_one_line(
    script: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.10", 0))
        port = taken.getsockname()[1]
        assert script.main(["run", "--node", f"127.0.0.1:{port}", "--no-stdin"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fault_proxy: ") and "in use" in err and err.count("\n") == 1
    argv = ["run", "--node", f"127.0.0.1:{port}", "--no-stdin", "--duration", "0"]
    assert script.main([*argv, "--exec", "set loss=0.5"]) == 0
    assert "default: loss=0.5" in capsys.readouterr().out
    assert script.main([*argv, "--exec", "explode"]) == 2
    assert capsys.readouterr().err == "fault_proxy: unknown command 'explode'; try help\n"


def _free_run(count: int) -> int:
    """A base port with ``count`` consecutive ports free on 127.0.0.1 (UDP and TCP)."""
    for base in range(31_000, 60_000, 97):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as control:
                control.bind(("127.0.0.1", base + count))
            for port in range(base, base + count):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind(("127.0.0.1", port))
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                    tcp.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise AssertionError("no run of free ports")


def _dead(port: int) -> set[str]:
    return {n["node_id"] for n in get_json(f"http://127.0.0.1:{port}/")["dead_nodes"]}


def _live(port: int) -> set[str]:
    return {n["node_id"] for n in get_json(f"http://127.0.0.1:{port}/")["live_nodes"]}


def _ctl(control: str, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "ctl", control, *words],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.slow
@needs_loopback_aliases
def test_a_real_run_isolates_and_heals_a_spawned_node(tmp_path: Path) -> None:
    base = _free_run(3)
    ports = [base, base + 1, base + 2]
    control = f"127.0.0.1:{base + 3}"
    names = {"node-0", "node-1", "node-2"}
    with (tmp_path / "script.out").open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                str(SCRIPT),
                "run",
                "--spawn",
                "3",
                "--base-port",
                str(base),
                "--interval-ms",
                "100",
                # The isolation is seen as chitchat's rule sees it: without the 3 s of
                # silence the nodes tolerate on top by default, which only delay the
                # verdict this test waits for (tests/faults/test_sigstop.py covers it).
                "--node-arg=--acceptable-pause=0",
                "--control",
                control,
                "--no-stdin",
                "--log-dir",
                str(tmp_path),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group: the script and its nodes
        )
    try:
        wait_for(lambda: all(answers(f"http://127.0.0.1:{p}/") for p in ports), 60, "HTTP up")
        wait_for(lambda: all(_live(p) == names for p in ports), 60, "3 live nodes everywhere")
        index = get_json(f"http://127.0.0.1:{ports[0]}/")
        advertised = {n["node_id"]: n["gossip_advertise_addr"] for n in index["live_nodes"]}
        assert advertised == {f"node-{i}": f"127.0.0.{10 + i}:{ports[i]}" for i in range(3)}

        isolated = _ctl(control, "isolate", "2")
        assert isolated.returncode == 0, isolated
        assert "blocked" in isolated.stdout
        wait_for(
            lambda: all(
                "node-2" in _dead(p) and _live(p) == {"node-0", "node-1"} for p in ports[:2]
            ),
            30,
            "node 2 dead, nodes 0 and 1 live",
        )

        assert _ctl(control, "heal").returncode == 0
        wait_for(lambda: all(_live(p) == names for p in ports), 30, "node 2 back")
        assert _ctl(control, "no-such-command").returncode == 1

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert not any(answers(f"http://127.0.0.1:{p}/") for p in ports)
        output = (tmp_path / "script.out").read_text()
        assert "dropped: blocked=" in output
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_text_commands_change_the_controller(script: Any) -> None:
    async def main() -> None:
        network = MemoryNetwork()
        controller = FaultController()
        async with AsyncExitStack() as stack:
            proxies = [
                await stack.enter_async_context(
                    open_proxy(
                        controller,
                        SocketAddress.parse(f"{proxy_host(i)}:7000"),
                        SocketAddress.parse(f"127.0.0.1:{8000 + i}"),
                        transport=network.transport(),
                    )
                )
                for i in range(3)
            ]
            p = [proxy.public_addr for proxy in proxies]

            def run(line: str) -> str:
                return str(script.run_command(controller, proxies, line))

            run("set loss=0.2 delay_ms=30 jitter_ms=10")
            assert controller.default_faults == LinkFaults(loss=0.2, delay=0.03, jitter=0.01)
            run("set 0 127.0.0.1:8001 duplicate=0.5")  # a node address names its proxy
            assert controller.faults(p[0], p[1]) == LinkFaults(
                loss=0.2, delay=0.03, jitter=0.01, duplicate=0.5
            )
            assert controller.faults(p[1], p[0]) == controller.default_faults
            run("block 1 2 both")
            assert controller.faults(p[1], p[2]).blocked and controller.faults(p[2], p[1]).blocked
            run("heal")
            run("isolate 2 in")
            assert controller.faults(p[0], p[2]).blocked
            assert not controller.faults(p[2], p[0]).blocked
            run("clear")
            assert controller.links() == {} and controller.default_faults == LinkFaults()
            run("partition 0 1,2")
            assert set(controller.links()) == {
                (a, b) for a in p for b in p if (a == p[0]) != (b == p[0])
            }
            run("set * 0 corrupt=1")
            assert controller.faults(p[1], p[0]).corrupt == 1.0
            assert "blocked" in run("show") and "stats:" in run("stats")
            assert "partition" in run("help")
            for bad in (
                "set loss=2",
                "set loss=-1",
                "set bogus=1",
                "set loss",
                "block 0",
                "isolate 9",
                "partition 0,1 1",
                "explode",
                "set 0 1",
                "set blocked=maybe",
                'set "unclosed',
            ):
                with pytest.raises(script.CommandError):
                    run(bad)

    trio.run(main)
