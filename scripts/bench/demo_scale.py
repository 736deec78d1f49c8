#!/usr/bin/env python3
"""The demo's cluster without the dashboard: ``gossip-tui demo --nodes N`` as it runs, headless.

Node 0 runs here and its N - 1 peers as the demo starts them: in ``--workers`` processes
(:class:`gossip_tui.ui.demo_workers.WorkerDemoCluster`, default one per core), or with
``--workers 0`` in this one Trio run (:class:`gossip_tui.ui.DemoCluster`), with the real
``open_node`` and real UDP on 127.0.0.1; node 0's event stream is drained as the dashboard's
bridge would. The workers report every peer's view twice a round; CPU seconds and RSS
include theirs (/proc), and the Syn counts are then node 0's own. Prints, as it goes:

* the seconds until every node lists all N nodes live (``converged``);
* at the end, the CPU seconds the process spent in Python's garbage collector;
* at convergence and at the end: the process's RSS (the end is ``--after-convergence``
  seconds on with ``--stop-when-converged``: whether memory stays bounded once formed),
  gossip rounds per node (min/median/max; the core's Simulation forms 200 nodes in 6),
  the median round's wall time, datagrams sent and received, those the kernel dropped at
  the nodes' sockets (full receive buffers), and the Syns that got no SynAck;
* every ``--sample`` seconds: CPU seconds per second of the process, its RSS, how many
  nodes already see everyone, the fewest live nodes any node lists, and how many nodes
  the nodes know of but judge dead (summed over nodes: a node learnt of but whose
  heartbeat has not yet been seen to rise), for ``--duration`` seconds in all.

Ends with one JSON object on stdout (``--json``) for before/after comparisons.

    python scripts/bench/demo_scale.py --nodes 200 --duration 180
    python scripts/bench/demo_scale.py --nodes 200 --duration 400 --stop-when-converged \
        --after-convergence 180 --json    # RSS at convergence and 3 minutes on
    python scripts/bench/demo_scale.py --nodes 200 --duration 90 --stop-when-converged \
        --after-convergence 3 --json --receive-buffer 4194304   # larger buffers: slower
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from gossip_tui.core.models import SocketAddress
from gossip_tui.node import Node, NodeConfig, UdpTransport, open_node
from gossip_tui.node._transport import UdpSocket
from gossip_tui.ui.demo import DemoCluster, demo_overrides, live_count
from gossip_tui.ui.demo_workers import WorkerDemoCluster, default_workers

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    """The process's resident set now (not the peak), from /proc."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * _PAGE / 2**20


_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return []


def cpu_seconds(pids: Sequence[int] = ()) -> float:
    """CPU seconds of this process and of the running workers ``pids`` (/proc: user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = 0.0
    for pid in pids:
        fields = _proc_stat(pid)
        if fields:  # utime and stime are the 14th and 15th fields of stat
            children += (int(fields[11]) + int(fields[12])) / _TICKS
    return usage.ru_utime + usage.ru_stime + children


def workers_rss_mib(pids: list[int]) -> float:
    """The workers' resident sets now (they run the peers in the worker path)."""
    pages = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):
            pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * _PAGE / 2**20


def udp_rcvbuf_errors() -> int:
    """The kernel's count of UDP datagrams dropped for a full receive buffer (machine-wide)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    names, values = [row for row in lines if row[0] == "Udp:"][:2]
    return int(values[names.index("RcvbufErrors")])


def socket_drops(ports: set[int]) -> int:
    """Datagrams the kernel dropped at these local UDP ports (/proc/net/udp's last column):
    this process's own, unlike :func:`udp_rcvbuf_errors`."""
    drops = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) in ports:
            drops += int(fields[-1])
    return drops


class MessageCounts:
    """Messages the nodes received, by kind, and the replies they sent: every node's receive
    path goes through ``receive_datagram`` in the node's loops module, counted here."""

    def __init__(self) -> None:
        self.received: Counter[str] = Counter()
        self.replied: Counter[str] = Counter()
        from gossip_tui.node import _loops

        inner = _loops.receive_datagram

        def counting(*args: Any, **kwargs: Any) -> Any:
            received = inner(*args, **kwargs)
            if received.message is not None:
                self.received[type(received.message).__name__] += 1
            if received.step is not None and received.step.reply is not None:
                self.replied[type(received.step.reply).__name__] += 1
            return received

        _loops.receive_datagram = counting  # type: ignore[assignment]


def spread(values: list[int]) -> dict[str, int]:
    values = sorted(values)
    if not values:
        return {}
    return {"min": values[0], "median": values[len(values) // 2], "max": values[-1]}


class SizedUdpTransport(UdpTransport):
    """UDP with a receive buffer of ``size`` bytes instead of the kernel's default (capped
    by net.core.rmem_max): to see what the demo's drops do to its convergence."""

    def __init__(self, size: int) -> None:
        self.size = size

    async def bind(self, addr: SocketAddress) -> UdpSocket:
        bound = await super().bind(addr)
        bound._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.size)
        return bound


class CollectorClock:
    """CPU seconds spent in Python's cyclic garbage collector, and its full collections."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full_collections = 0
        self._started = 0.0
        gc.callbacks.append(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
            return
        self.seconds += time.process_time() - self._started
        self.full_collections += info["generation"] == 2


async def run(args: argparse.Namespace) -> dict[str, Any]:
    nodes: list[Node] = []
    collector = CollectorClock()
    messages = MessageCounts()
    ports: set[int] = set()
    rcvbuf_errors_before = udp_rcvbuf_errors()
    at_convergence: dict[str, Any] = {}

    transport = None if args.receive_buffer is None else SizedUdpTransport(args.receive_buffer)

    @contextlib.asynccontextmanager
    async def recording_open_node(config: NodeConfig) -> AsyncIterator[Node]:
        async with open_node(config, transport=transport) as node:
            nodes.append(node)
            ports.add(node.gossip_addr.port)
            try:
                yield node
            finally:
                nodes.remove(node)

    config = attrs.evolve(NodeConfig(gossip_interval=args.interval_ms / 1000), **demo_overrides(()))
    assert config.listen_addr == SocketAddress.parse("127.0.0.1:0")
    # As the CLI's demo: the peers in worker processes, or (--workers 0) beside node 0.
    demo: DemoCluster | WorkerDemoCluster
    if args.workers == 0:
        demo = DemoCluster(args.nodes - 1, tune_process=True)
    else:
        # Each worker reports its peers' views twice a round, as this loop checks them.
        demo = WorkerDemoCluster(
            args.nodes - 1, workers=args.workers, views_every=args.interval_ms / 2000
        )

    def pids() -> list[int]:
        return demo.worker_pids if isinstance(demo, WorkerDemoCluster) else []

    def views() -> list[list[int]]:
        """[live, dead, rounds, out, in] of the peers in workers (the others are in ``nodes``)."""
        return list(demo.views.values()) if isinstance(demo, WorkerDemoCluster) else []

    def all_ports() -> set[int]:
        if isinstance(demo, WorkerDemoCluster):
            return ports | {ident.gossip_addr.port for ident in demo.running}
        return ports

    started = time.monotonic()
    cpu_start = cpu_seconds()
    samples: list[dict[str, float]] = []
    converged: float | None = None
    events = 0
    cpu_at_convergence = 0.0

    def everyone_sees_all() -> int:
        return sum(1 for node in nodes if live_count(node) == args.nodes) + sum(
            1 for view in views() if view[0] == args.nodes
        )

    async with recording_open_node(config) as first, trio.open_nursery() as nursery:
        feed = first.subscribe()

        async def drain() -> None:  # the dashboard's bridge reads node 0's events
            nonlocal events
            async for _event in feed:
                events += 1

        nursery.start_soon(drain)
        # --peer-interval-ms: the peers at their own rhythm, node 0 at --interval-ms.
        peer_config = config
        if args.peer_interval_ms is not None:
            peer_config = attrs.evolve(config, gossip_interval=args.peer_interval_ms / 1000)
        nursery.start_soon(demo.run, first, recording_open_node, peer_config, lambda _m: True)
        up = time.monotonic() - started
        deadline = started + args.duration
        next_sample = started + args.sample
        last_cpu, last_time = cpu_seconds(), time.monotonic()
        while (now := time.monotonic()) < deadline:
            if converged is None and everyone_sees_all() == args.nodes:
                converged = now - started
                at_convergence.update(
                    traffic(nodes, views(), messages, all_ports(), rcvbuf_errors_before)
                )
                at_convergence["cpu_s"] = round(cpu_seconds(pids()) - cpu_start, 1)
                cpu_at_convergence = cpu_seconds(pids())
                at_convergence["rss_mib"] = round(rss_mib() + workers_rss_mib(pids()), 1)
                at_convergence["rss_mib_workers"] = round(workers_rss_mib(pids()), 1)
                at_convergence["round_s_median"] = round(
                    converged / max(1, at_convergence["rounds_per_node"]["median"]), 3
                )
                print(
                    f"converged: every node lists all {args.nodes} live after {converged:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
                if args.stop_when_converged:
                    deadline = min(deadline, now + args.after_convergence)
            if now >= next_sample:
                cpu = cpu_seconds(pids())
                sample = {
                    "t": round(now - started, 1),
                    "cpu_per_s": round((cpu - last_cpu) / (now - last_time), 3),
                    "rss_mib": round(rss_mib() + workers_rss_mib(pids()), 1),
                    "nodes_up": len(nodes) + len(views()),
                    "nodes_seeing_all": everyone_sees_all(),
                    # Nodes short of all N: unknown yet, or known and judged dead.
                    "fewest_live": min(
                        [live_count(node) for node in nodes] + [v[0] for v in views()],
                        default=0,
                    ),
                    "dead_seen": sum(len(node.dead_nodes()) for node in nodes)
                    + sum(v[1] for v in views()),
                    "events": events,
                }
                last_cpu, last_time = cpu, now
                samples.append(sample)
                print(json.dumps(sample), file=sys.stderr, flush=True)
                next_sample += args.sample
            # Checked twice a round: often enough for the figure, cheap beside 200 nodes.
            await trio.sleep(args.interval_ms / 2000)
        at_end = traffic(nodes, views(), messages, all_ports(), rcvbuf_errors_before)
        ended = time.monotonic()
        # Before the workers go: their CPU and memory so far.
        cpu_now = cpu_seconds(pids())
        cpu_total = cpu_now - cpu_start
        rss_end = rss_mib() + workers_rss_mib(pids())
        nursery.cancel_scope.cancel()
    return {
        "nodes": args.nodes,
        "interval_ms": args.interval_ms,
        "node0_up_s": round(up, 2),
        "converged_s": None if converged is None else round(converged, 1),
        "workers": args.workers,
        "cpu_s_total": round(cpu_total, 1),
        "gc_cpu_s": round(collector.seconds, 2),
        "full_collections": collector.full_collections,
        "rss_mib_end": round(rss_end, 1),
        # How long the run went on once converged: what rss_mib_end is "after".
        "after_convergence_s": None if converged is None else round(ended - started - converged, 1),
        # CPU-seconds per second from convergence to the end (workers included): what a
        # formed demo costs the machine while it runs.
        "steady_cpu_per_s": None
        if converged is None or ended - started - converged <= 0
        else round((cpu_now - cpu_at_convergence) / (ended - started - converged), 3),
        "peer_interval_ms": args.peer_interval_ms,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "at_convergence": at_convergence,
        "at_end": at_end,
        "samples": samples,
    }


def traffic(
    nodes: list[Node],
    views: list[list[int]],
    messages: MessageCounts,
    ports: set[int],
    rcvbuf_errors_before: int,
) -> dict[str, Any]:
    """Rounds, datagrams, drops and unanswered Syns so far, over all nodes (``views``: the
    peers in worker processes, whose messages are not counted: the Syn figures are then
    node 0's own)."""
    sent = sum(node.stats.datagrams_out for node in nodes)
    syns_sent = sent - messages.replied["SynAck"] - messages.replied["Ack"]
    return {
        "rounds_per_node": spread([node.stats.rounds for node in nodes] + [v[2] for v in views]),
        "datagrams_out": sent + sum(v[3] for v in views),
        "datagrams_in": sum(node.stats.datagrams_in for node in nodes) + sum(v[4] for v in views),
        "socket_drops": socket_drops(ports),
        "udp_rcvbuf_errors": udp_rcvbuf_errors() - rcvbuf_errors_before,
        "received": dict(messages.received),
        "syns_sent": syns_sent,
        # A Syn answers with a SynAck unless it was lost or refused.
        "syns_unanswered": syns_sent - messages.received["SynAck"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--interval-ms", type=int, default=500, help="the demo's default")
    parser.add_argument("--duration", type=float, default=180.0, help="seconds in all")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument(
        "--stop-when-converged",
        action="store_true",
        help="end --after-convergence seconds after every node sees everyone",
    )
    parser.add_argument("--after-convergence", type=float, default=30.0)
    parser.add_argument(
        "--receive-buffer",
        type=int,
        default=None,
        help="bytes of receive buffer per node socket (default: the kernel's)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="processes for the peers, as the demo's --workers (0: beside node 0, in one run)",
    )
    parser.add_argument(
        "--peer-interval-ms",
        type=int,
        default=None,
        help="the peers' gossip interval (default: --interval-ms, as the demo's)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = trio.run(run, args)
    if args.json:
        json.dump(result, sys.stdout)
        print()
    else:
        print(
            f"{args.nodes} nodes: converged after {result['converged_s']} s; "
            f"{result['cpu_s_total']} CPU-seconds in {args.duration:g} s "
            f"({result['gc_cpu_s']} collecting garbage); RSS "
            f"{result['at_convergence'].get('rss_mib')} MiB at convergence, "
            f"{result['rss_mib_end']} MiB {result['after_convergence_s']} s later; "
            f"{result['steady_cpu_per_s']} CPU-s per second once converged"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
