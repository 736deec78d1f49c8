#!/usr/bin/env python3
"""Run a local cluster: N headless gossip-tui nodes on 127.0.0.1, until Ctrl-C.

Node i listens on base-port + i (gossip over UDP, HTTP API over TCP on the same port);
every node but the first is seeded with node 0. Each node's log goes to this terminal's
stderr. Ctrl-C (or SIGTERM) stops them all; a node that dies on its own stops the rest.

    python scripts/local_cluster.py --nodes 5
    python scripts/local_cluster.py -n 3 --base-port 20000 -- --phi-threshold 4
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]
STOP_TIMEOUT = 10.0


def node_command(
    index: int,
    *,
    base_port: int,
    interval_ms: int,
    extra: Sequence[str] = (),
    python: str = sys.executable,
) -> list[str]:
    """The command line of node ``index``."""
    command = [
        python,
        "-m",
        "gossip_tui",
        "--headless",
        "--listen-addr",
        f"{HOST}:{base_port + index}",
        "--node-id",
        f"node-{index}",
        "--interval-ms",
        str(interval_ms),
    ]
    if index > 0:
        command += ["--seed", f"{HOST}:{base_port}"]
    return command + list(extra)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Start N headless gossip-tui nodes on 127.0.0.1 until Ctrl-C.",
        epilog="Arguments after -- are passed to every node.",
    )
    parser.add_argument("-n", "--nodes", type=int, default=3, help="how many nodes (default 3)")
    parser.add_argument(
        "--base-port", type=int, default=10000, help="port of node 0 (default 10000)"
    )
    parser.add_argument(
        "--interval-ms", type=int, default=500, help="gossip interval (default 500)"
    )
    parser.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    if not 1 <= args.base_port <= 0xFFFF - (args.nodes - 1):
        parser.error(f"ports {args.base_port}..{args.base_port + args.nodes - 1} are not valid")
    if args.interval_ms < 1:
        parser.error("--interval-ms must be at least 1")
    return args


class _Stop(Exception):
    """SIGTERM: stop the cluster as Ctrl-C does."""


def _raise_stop(_signum: int, _frame: FrameType | None) -> None:
    raise _Stop


def _stop_all(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for index, process in enumerate(processes):
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"node-{index} did not stop; killing it", file=sys.stderr)
            process.kill()
            process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    # Ctrl-C (SIGINT) stops the cluster even when it was inherited ignored: a shell without
    # job control starts `local_cluster.py &` so, and Python keeps an inherited SIG_IGN.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    processes: list[subprocess.Popen[bytes]] = []
    status = 0
    try:
        for index in range(args.nodes):
            command = node_command(
                index, base_port=args.base_port, interval_ms=args.interval_ms, extra=args.extra
            )
            processes.append(subprocess.Popen(command, env=env))
            port = args.base_port + index
            print(f"node-{index}: gossip udp {HOST}:{port}  http http://{HOST}:{port}/", flush=True)
        print(f"{args.nodes} node(s) running; Ctrl-C to stop them.", flush=True)
        # Block until a node exits (it should not): then stop the others.
        pid, wait_status = os.wait()
        code = os.waitstatus_to_exitcode(wait_status)
        index = next(i for i, process in enumerate(processes) if process.pid == pid)
        print(f"node-{index} exited with status {code}; stopping the cluster", file=sys.stderr)
        status = 1
    except (KeyboardInterrupt, _Stop):
        print("stopping the cluster", file=sys.stderr)
    finally:
        _stop_all(processes)
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    return status


if __name__ == "__main__":
    sys.exit(main())
