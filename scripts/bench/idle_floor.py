#!/usr/bin/env python3
"""The floor under an idle node's CPU: a bare Trio process that sends and receives the
datagrams an idle gossip-tui node does, and nothing else.

An idle node at N nodes, each round (one interval): sends ``--fanout`` Syns on a timer,
gets a SynAck for each and answers it with an Ack; gets about as many Syns from its peers,
answers each with a SynAck and gets an Ack back. That is 3 x fanout datagrams in and as
many out per interval, one timer wake-up, and no other work. Here a peer thread (in this
process, not measured) plays every other node; the floor runs in a child process
through the project's own UDP socket (``gossip_tui.node._transport.UdpSocket``, which the
node uses) or Trio's (``--trio-socket``), and reads its own CPU time (user + system) over
``--window`` seconds after ``--settle``. With ``--http`` it also serves hypercorn's Trio
worker (a one-route ASGI app) on a TCP port and the peer asks it once, so that hypercorn
is running as on a node the harness has talked to. One JSON line on stdout.

The default sizes are an idle 100-node cluster's: a Syn and a SynAck each carry the full
digest (~4.8 KB at 100 nodes: 3.3 KB a datagram on average, Acks included), an Ack an empty delta.

    python scripts/bench/idle_floor.py                    # 9 in / 9 out a second
    python scripts/bench/idle_floor.py --http --window 60
    python scripts/bench/idle_floor.py --digest-bytes 300  # a 10-node cluster's sizes
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import select
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]

# The first byte says what a datagram plays: a Syn is answered with a SynAck, a SynAck
# with an Ack, an Ack with nothing.
SYN, SYN_ACK, ACK = b"S", b"A", b"K"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--fanout", type=int, default=3, help="Syns sent (and got) a round")
    parser.add_argument("--digest-bytes", type=int, default=4800, help="a Syn's, a SynAck's size")
    parser.add_argument("--ack-bytes", type=int, default=5)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--http", action="store_true", help="also run hypercorn's Trio worker")
    parser.add_argument(
        "--trio-socket", action="store_true", help="trio.socket instead of the node's UdpSocket"
    )
    parser.add_argument("--floor-port", type=int, help=argparse.SUPPRESS)  # set for the child
    parser.add_argument("--peer-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--http-port", type=int, help=argparse.SUPPRESS)
    return parser


def _payload(kind: bytes, size: int) -> bytes:
    return kind + bytes(max(size - 1, 0))


# --------------------------------------------------------------------------- the floor


async def _hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _floor(args: argparse.Namespace) -> int:
    import trio

    from gossip_tui.core.models import SocketAddress
    from gossip_tui.node._transport import UdpSocket

    interval = args.interval_ms / 1000
    peer = SocketAddress.parse(f"{HOST}:{args.peer_port}")
    syn = _payload(SYN, args.digest_bytes)
    syn_ack = _payload(SYN_ACK, args.digest_bytes)
    ack = _payload(ACK, args.ack_bytes)
    counts = {"in": 0, "out": 0}

    class Wakeups:
        """Scheduler rounds and task steps by task while ``counting`` (a Trio instrument)."""

        def __init__(self) -> None:
            self.counting = False
            self.rounds = 0
            self.steps: Counter[str] = Counter()

        def before_io_wait(self, _timeout: float) -> None:
            self.rounds += self.counting

        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            if self.counting:
                self.steps[task.name.rsplit(".", 1)[-1]] += 1

    wakeups = Wakeups()

    async def serve_http(sock: socket.socket) -> None:
        from gossip_tui.api._server import _import_worker

        config_class, sockets_class, worker_serve, wrap_app = _import_worker()
        config = config_class()
        config.accesslog = None
        sockets = sockets_class(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[])
        await worker_serve(wrap_app(_hello_app, 0, "asgi"), config, sockets=sockets)

    async def main() -> None:
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw.bind((HOST, args.floor_port))
        if args.trio_socket:
            tsock = trio.socket.from_stdlib_socket(raw)
            target = (HOST, args.peer_port)

            async def send(data: bytes) -> None:
                await tsock.sendto(data, target)
                counts["out"] += 1

            async def recv() -> bytes:
                data, _source = await tsock.recvfrom(65536)
                counts["in"] += 1
                return bytes(data)
        else:
            udp = UdpSocket(raw, SocketAddress.parse(f"{HOST}:{args.floor_port}"))

            async def send(data: bytes) -> None:
                await udp.send(data, peer)
                counts["out"] += 1

            async def recv() -> bytes:
                data, _source = await udp.recv()
                counts["in"] += 1
                return data

        async def rounds() -> None:
            next_round = trio.current_time()
            while True:
                for _ in range(args.fanout):
                    await send(syn)
                next_round += interval
                await trio.sleep_until(next_round)

        async def answer() -> None:
            while True:
                data = await recv()
                if data[:1] == SYN:
                    await send(syn_ack)
                elif data[:1] == SYN_ACK:
                    await send(ack)

        async def measure() -> None:
            await trio.sleep(args.settle)
            before, in_before, out_before = _cpu(), counts["in"], counts["out"]
            started = time.monotonic()
            wakeups.counting = True
            await trio.sleep(args.window)
            wakeups.counting = False
            seconds = time.monotonic() - started
            user, system = (a - b for a, b in zip(_cpu(), before, strict=True))
            report = {
                "impl": "trio.socket" if args.trio_socket else "UdpSocket",
                "http": args.http,
                "interval_ms": args.interval_ms,
                "digest_bytes": args.digest_bytes,
                "seconds": round(seconds, 2),
                "datagrams_in_per_s": round((counts["in"] - in_before) / seconds, 2),
                "datagrams_out_per_s": round((counts["out"] - out_before) / seconds, 2),
                "scheduler_rounds_per_s": round(wakeups.rounds / seconds, 2),
                "steps_per_s_by_task": {
                    name: round(count / seconds, 2) for name, count in wakeups.steps.most_common()
                },
                "cpu_s_per_min": round((user + system) / seconds * 60, 4),
                "user_s_per_min": round(user / seconds * 60, 4),
                "system_s_per_min": round(system / seconds * 60, 4),
                "loadavg": [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]],
            }
            print(json.dumps(report), flush=True)
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            if args.http:
                listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listening.bind((HOST, args.http_port))
                listening.listen(100)
                listening.setblocking(False)
                nursery.start_soon(serve_http, listening)
            nursery.start_soon(answer)
            nursery.start_soon(rounds)
            nursery.start_soon(measure)

    trio.run(main, instruments=[wakeups])
    return 0


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


# --------------------------------------------------------------------------- the peers


def _peers(sock: socket.socket, floor: tuple[str, int], args: argparse.Namespace) -> None:
    """Every other node: answers the floor's Syns and SynAcks, and sends it ``fanout``
    Syns a round, spread over the round as peers' rounds are. Runs until the socket
    closes."""
    interval = args.interval_ms / 1000
    syn = _payload(SYN, args.digest_bytes)
    syn_ack = _payload(SYN_ACK, args.digest_bytes)
    ack = _payload(ACK, args.ack_bytes)
    # Peers' rounds are not in step with the floor's: their Syns arrive through the round.
    spacing = interval / max(args.fanout, 1)
    next_syn = time.monotonic() + spacing / 2
    while True:
        timeout = max(next_syn - time.monotonic(), 0)
        try:
            readable, _, _ = select.select([sock], [], [], timeout)
            if readable:
                data = sock.recv(65536)
                if data[:1] == SYN:
                    sock.sendto(syn_ack, floor)
                elif data[:1] == SYN_ACK:
                    sock.sendto(ack, floor)
            if time.monotonic() >= next_syn:
                sock.sendto(syn, floor)
                next_syn += spacing
        except (OSError, ValueError):
            return


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def main() -> int:
    args = _parser().parse_args()
    if args.floor_port:
        return _floor(args)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind((HOST, 0))
    floor_port = _free_port(socket.SOCK_DGRAM)
    http_port = _free_port(socket.SOCK_STREAM)
    command = [
        sys.executable,
        __file__,
        *sys.argv[1:],
        "--floor-port", str(floor_port),
        "--peer-port", str(peer.getsockname()[1]),
        "--http-port", str(http_port),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(command, cwd=REPO, env=env) as floor:
        thread = threading.Thread(target=_peers, args=(peer, (HOST, floor_port), args), daemon=True)
        thread.start()
        if args.http:
            # As the bench harness does on every node: hypercorn starts on a first request.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    connection = http.client.HTTPConnection(HOST, http_port, timeout=2)
                    connection.request("GET", "/")
                    connection.getresponse().read()
                    connection.close()
                    break
                except OSError:
                    time.sleep(0.05)
        code = floor.wait(timeout=args.settle + args.window + 60)
    peer.close()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
