#!/usr/bin/env python3
"""Bytes sent per node per round: N nodes of one implementation in ONE process, over real
UDP sockets on 127.0.0.1, with the sending counted inside the process.

A node process cannot be asked how many bytes it sent (gossip-tui's ``Node.stats`` is not
served over HTTP), so ``cost.py`` runs this helper for the traffic figures:

* gossip-tui: ``open_node`` N times in one Trio run; ``Node.stats.bytes_out``,
  ``datagrams_out`` and ``rounds`` before and after each window;
* swim: N swim-protocol members (``Members``, ``Worker``, ``UdpTransport``) in one asyncio
  loop, with ``UdpPack.pack`` counted (every datagram, and the rare TCP fallback).

Two windows follow each other: idle, then one key update per second (on the next node,
round robin). Prints one JSON object on stdout.

    python scripts/bench/_inproc.py --impl gossip-tui --nodes 10 --interval-ms 1000 --window 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

import _cluster as bench


def _figures(
    size: int,
    interval: float,
    elapsed: float,
    sent: int,
    datagrams: int,
    rounds: float | None,
    cpu: float,
    updates: int,
) -> dict[str, Any]:
    intervals = elapsed / interval
    figures: dict[str, Any] = {
        "seconds": elapsed,
        "updates": updates,
        "bytes_per_node_per_interval": sent / size / intervals,
        "datagrams_per_node_per_interval": datagrams / size / intervals,
        "bytes_per_node_per_second": sent / size / elapsed,
        "inproc_cpu_seconds_per_node_per_minute": cpu / size / (elapsed / 60),
    }
    if rounds is not None:
        figures["rounds_per_node"] = rounds
        figures["bytes_per_node_per_round"] = sent / size / rounds if rounds else None
    return figures


# --------------------------------------------------------------------------- gossip-tui


async def _gossip_tui(args: argparse.Namespace) -> dict[str, Any]:
    import trio

    from gossip_tui.core.models import SocketAddress
    from gossip_tui.node import Node, NodeConfig, open_node

    interval = args.interval_ms / 1000
    any_port = SocketAddress.parse(f"{bench.HOST}:0")
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(
            open_node(
                NodeConfig(
                    listen_addr=any_port,
                    node_id="node-0",
                    gossip_interval=interval,
                    protocol_version=args.protocol_version,
                    partial_digests=args.partial_digests,
                )
            )
        )
        seed = str(first.gossip_addr)
        nodes: list[Node] = [first]
        for i in range(1, args.nodes):
            config = NodeConfig(
                listen_addr=any_port,
                node_id=f"node-{i}",
                seeds=(seed,),
                gossip_interval=interval,
                protocol_version=args.protocol_version,
                partial_digests=args.partial_digests,
            )
            nodes.append(await stack.enter_async_context(open_node(config)))
        with trio.fail_after(args.timeout):
            while any(len(n.live_nodes()) != args.nodes for n in nodes):
                await trio.sleep(interval / 2)
        await trio.sleep(args.settle)

        async def window(updates_per_second: float) -> dict[str, Any]:
            before = [(n.stats.bytes_out, n.stats.datagrams_out, n.stats.rounds) for n in nodes]
            cpu = time.process_time()
            started = trio.current_time()
            end = started + args.window
            count = 0
            while (now := trio.current_time()) < end:
                if updates_per_second <= 0:
                    await trio.sleep_until(end)
                    break
                nodes[count % len(nodes)].set("bench-update", f"value-{count}")
                count += 1
                await trio.sleep_until(min(end, now + 1 / updates_per_second))
            elapsed = trio.current_time() - started
            cpu = time.process_time() - cpu
            sent = sum(n.stats.bytes_out - b[0] for n, b in zip(nodes, before, strict=True))
            datagrams = sum(
                n.stats.datagrams_out - b[1] for n, b in zip(nodes, before, strict=True)
            )
            rounds = sum(n.stats.rounds - b[2] for n, b in zip(nodes, before, strict=True))
            return _figures(
                len(nodes), interval, elapsed, sent, datagrams, rounds / len(nodes), cpu, count
            )

        async def spread(run: int) -> float | None:
            """Rounds (seconds / interval) until a key set on one node is on every node."""
            writer = nodes[(run * 7919) % len(nodes)]
            value = f"spread-{run}"
            writer.set("bench-spread", value)
            started = trio.current_time()
            with trio.move_on_after(args.timeout):
                while any(n.get("bench-spread", writer.self_id) != value for n in nodes):
                    await trio.sleep(interval / 20)
                return (trio.current_time() - started) / interval
            return None

        idle = await window(0)
        updating = await window(args.updates_per_second)
        spreads = [await spread(run) for run in range(args.spread_runs)]
        # EMSGSIZE among them: a datagram over the limit is not sent.
        send_errors = sum(n.stats.send_errors for n in nodes)
        return {
            "idle": idle,
            "updates": updating,
            "spread_rounds": spreads,
            "send_errors": send_errors,
        }


# --------------------------------------------------------------------------- swim


async def _swim(args: argparse.Namespace) -> dict[str, Any]:
    from _swim_member import SendCounter, swim_config
    from swimprotocol.members import Members
    from swimprotocol.status import Status
    from swimprotocol.udp import UdpTransport
    from swimprotocol.worker import Worker

    interval = args.interval_ms / 1000
    names = [f"{bench.HOST}:{port}" for port in bench.allocate_ports(args.nodes)]
    counters: list[SendCounter] = []
    all_members: list[Members] = []
    async with contextlib.AsyncExitStack() as stack:
        for i, name in enumerate(names):
            peer = names[1] if i == 0 else names[0]
            config = swim_config(name, [peer], interval, {"bind": name.encode()})
            members = Members(config)
            worker = Worker(config, members)
            transport = UdpTransport(config, worker)
            counter = SendCounter()
            counter.wrap(transport)
            await stack.enter_async_context(transport)
            await stack.enter_async_context(worker)
            counters.append(counter)
            all_members.append(members)

        def formed() -> bool:
            return all(
                sum(1 for m in members.non_local if m.status == Status.ONLINE) == args.nodes - 1
                for members in all_members
            )

        async with asyncio.timeout(args.timeout):
            while not formed():
                await asyncio.sleep(interval / 2)
        await asyncio.sleep(args.settle)
        loop = asyncio.get_running_loop()

        async def window(updates_per_second: float) -> dict[str, Any]:
            before = [(c.bytes, c.packets) for c in counters]
            cpu = time.process_time()
            started = loop.time()
            end = started + args.window
            count = 0
            while (now := loop.time()) < end:
                if updates_per_second <= 0:
                    await asyncio.sleep(end - now)
                    break
                members = all_members[count % len(all_members)]
                local = members.local
                members.update(
                    local,
                    new_metadata=dict(local.metadata) | {"bench-update": f"value-{count}".encode()},
                )
                count += 1
                await asyncio.sleep(min(end, now + 1 / updates_per_second) - now)
            elapsed = loop.time() - started
            cpu = time.process_time() - cpu
            sent = sum(c.bytes - b[0] for c, b in zip(counters, before, strict=True))
            packets = sum(c.packets - b[1] for c, b in zip(counters, before, strict=True))
            return _figures(len(counters), interval, elapsed, sent, packets, None, cpu, count)

        idle = await window(0)
        updating = await window(args.updates_per_second)
        return {"idle": idle, "updates": updating}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", choices=bench.IMPLS, required=True)
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after forming")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per window")
    parser.add_argument("--updates-per-second", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=120.0, help="to form the cluster")
    parser.add_argument("--protocol-version", type=int, default=0, help="gossip-tui only")
    parser.add_argument("--partial-digests", action="store_true", help="gossip-tui only")
    parser.add_argument(
        "--spread-runs", type=int, default=0, help="gossip-tui: keys to time to every node"
    )
    args = parser.parse_args()
    if args.impl == bench.GOSSIP_TUI:
        import trio

        result = trio.run(_gossip_tui, args)
    else:
        result = asyncio.run(_swim(args))
    result |= {
        "impl": args.impl,
        "nodes": args.nodes,
        "interval_ms": args.interval_ms,
        "protocol_version": args.protocol_version,
    }
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
