#!/usr/bin/env python3
"""What one wake-up of an otherwise idle process costs on this machine (issue 17).

An idle node is woken a dozen times a second (each datagram in, its round's timer, its
liveness sweep), so its CPU per minute is wake-ups times their cost plus the protocol's
work. This prints the CPU per wake-up, and what that makes per minute at a given rate, of
processes that do nothing else between sleeps:

- ``epoll``: a bare ``select.epoll().poll(timeout)`` loop, no Trio: what any event loop
  pays, chitchat's tokio included, short of its own work;
- ``trio-sleep``: ``await trio.sleep(1 / rate)`` in ``trio.run`` (a cancel scope and a
  deadline each, as the node's round timer);
- ``trio-readable``: ``await trio.lowlevel.wait_readable(sock)`` on a UDP socket that a
  thread of the parent process sends one byte to at the rate (as the node's receive
  loop: one scheduler round a datagram, no timer).

Each runs in a child of its own for ``--seconds``; CPU is the child's user + system time
minus its start-up (read by the child itself around the loop). With ``--instructions``
(valgrind installed) each mode also runs under callgrind twice, with ``--count`` and with
ten times as many wake-ups, and the difference gives instructions per wake-up: the count
does not depend on the machine, the seconds do (a process woken after a sleep finds its
caches cold, so the same instructions take longer than in a busy loop).

    python scripts/bench/wakeup_cost.py
    python scripts/bench/wakeup_cost.py --rate 10 --seconds 20 --instructions
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import Any

MODES = ("epoll", "trio-sleep", "trio-readable")


def _child(mode: str, rate: float, count: int, port: int) -> None:
    """Wake ``count`` times at ``rate`` a second; print the CPU the loop took."""
    if mode == "epoll":
        import select

        poll = select.epoll().poll
        started = time.process_time()
        for _ in range(count):
            poll(1 / rate)
        print(json.dumps({"cpu": time.process_time() - started, "wakeups": count}))
        return

    import trio

    async def sleeping() -> float:
        started = time.process_time()
        for _ in range(count):
            await trio.sleep(1 / rate)
        return time.process_time() - started

    async def reading() -> float:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await sock.bind(("127.0.0.1", port))
        raw = socket.socket(fileno=sock.detach())
        raw.setblocking(False)
        print(json.dumps({"ready": True}), flush=True)
        started = time.process_time()
        for _ in range(count):
            await trio.lowlevel.wait_readable(raw)
            raw.recv(16)
        return time.process_time() - started

    cpu = trio.run(sleeping if mode == "trio-sleep" else reading)
    print(json.dumps({"cpu": cpu, "wakeups": count}))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _run(mode: str, rate: float, count: int, prefix: list[str]) -> dict[str, Any]:
    port = _free_port()
    command = [*prefix, sys.executable, __file__, "--child", mode, str(rate), str(count), str(port)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    stop = threading.Event()
    # The readable mode: once the child listens, one byte per wake-up at the rate.
    if mode == "trio-readable" and json.loads(child.stdout.readline()).get("ready"):

        def send() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
                due = time.monotonic()
                while not stop.is_set() and child.poll() is None:
                    out.sendto(b"x", ("127.0.0.1", port))
                    due += 1 / rate
                    time.sleep(max(0.0, due - time.monotonic()))

        threading.Thread(target=send, daemon=True).start()
    out, err = child.communicate()
    stop.set()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    result["stderr"] = err
    return result


def _instructions(mode: str, rate: float, count: int) -> float | None:
    if shutil.which("valgrind") is None:
        return None
    prefix = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    totals = []
    for n in (count, 10 * count):
        err = _run(mode, rate, n, prefix)["stderr"]
        collected = [line for line in err.splitlines() if "Collected" in line]
        if not collected:
            return None
        totals.append(int(collected[-1].split(":")[-1].strip()))
    return (totals[1] - totals[0]) / (9 * count)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=10.0, help="wake-ups a second")
    parser.add_argument("--seconds", type=float, default=10.0, help="per mode")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--instructions", action="store_true", help="also count, under callgrind")
    parser.add_argument(
        "--count", type=int, default=20, help="wake-ups of the smaller callgrind run"
    )
    args = parser.parse_args()
    if args.rate <= 0 or args.seconds <= 0 or args.count <= 0:
        parser.error("--rate, --seconds and --count must be positive")
    print(
        f"{'mode':>14}  {'us CPU a wake-up':>16}  {'s/min at ' + format(args.rate, 'g') + '/s':>12}"
        f"  {'instructions a wake-up':>22}"
    )
    for mode in args.modes:
        count = max(1, round(args.rate * args.seconds))
        result = _run(mode, args.rate, count, [])
        if "cpu" not in result:
            print(f"{mode:>14}  failed: {result['stderr'].strip()[-200:]}")
            continue
        per_wakeup = result["cpu"] / result["wakeups"]
        instructions = _instructions(mode, args.rate, args.count) if args.instructions else None
        counted = f"{instructions:,.0f}" if instructions is not None else "-"
        per_minute = per_wakeup * args.rate * 60
        print(f"{mode:>14}  {per_wakeup * 1e6:16.0f}  {per_minute:12.4f}  {counted:>22}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
