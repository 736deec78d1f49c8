"""Time one round of updates on the dashboard's nodes table with a 500-node cluster.

Mounts the table headless (App.run_test), applies a first 500-node snapshot, then times
``NodesTable.apply`` on snapshots where every node's heartbeat moved on (and, in a second
scenario, every phi too), for a few sort orders. The budget is one 60 Hz frame: 16 ms.

Both wall-clock and CPU time (``time.process_time``) are printed; the verdict uses the CPU
median, which other processes competing for the machine do not inflate.

    .venv/bin/python scripts/bench_ui_table.py [--nodes 500] [--rounds 40]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

from textual.app import App, ComposeResult

from gossip_tui.core.models import (
    ClusterSnapshot,
    Liveness,
    NodeId,
    NodeSnapshot,
    SocketAddress,
    VersionedValue,
)
from gossip_tui.ui.widgets.nodes_table import NodesTable

BUDGET_MS = 16.0
TAKEN_AT = 10_000.0


def cluster(nodes: int, round_: int, *, phi_moves: bool) -> ClusterSnapshot:
    ids = [
        NodeId(f"server:127.0.0.{1 + i // 250}:{10000 + i}-node{i:04d}", 1_700_000_000 + i % 7,
               SocketAddress.parse(f"127.0.0.{1 + i // 250}:{10000 + i}"))
        for i in range(nodes)
    ]  # fmt: skip
    keys = {"bind": VersionedValue("127.0.0.1:10000", 1), "role": VersionedValue("worker", 2)}
    snapshots = []
    for i, ident in enumerate(ids):
        phi = ((i + round_) % 90) / 10 if phi_moves else (i % 90) / 10
        snapshots.append(
            NodeSnapshot(
                node=ident,
                heartbeat=1_000 + i + round_,
                max_version=2,
                last_gc_version=0,
                key_values=keys,
                liveness=Liveness.SELF if i == 0 else Liveness.LIVE,
                phi=None if i == 0 else phi,
                last_update=TAKEN_AT + round_ - 0.2,
            )
        )
    return ClusterSnapshot("bench", ids[0], tuple(snapshots), taken_at=TAKEN_AT + round_)


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield NodesTable(id="nodes")


async def measure(
    nodes: int, rounds: int, *, phi_moves: bool, setup: Callable[[NodesTable], None]
) -> tuple[list[float], list[float]]:
    snapshots = [cluster(nodes, r, phi_moves=phi_moves) for r in range(rounds + 1)]
    app = TableApp()
    wall: list[float] = []
    cpu: list[float] = []
    async with app.run_test(size=(160, 50)) as pilot:
        table = app.query_one(NodesTable)
        setup(table)
        table.apply(snapshots[0])
        await pilot.pause()
        assert table.row_count == nodes
        for snapshot in snapshots[1:]:
            started, started_cpu = time.perf_counter(), time.process_time()
            table.apply(snapshot)
            wall.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
            await pilot.pause()  # let the frame render before the next round
    return wall, cpu


def report(name: str, wall: list[float], cpu: list[float]) -> bool:
    wall, cpu = sorted(wall), sorted(cpu)
    p95 = wall[int(len(wall) * 0.95) - 1]
    ok = statistics.median(cpu) < BUDGET_MS
    print(
        f"{name:<42} cpu median {statistics.median(cpu):5.2f} ms | wall median "
        f"{statistics.median(wall):5.2f} ms, p95 {p95:5.2f} ms  {'OK' if ok else 'OVER BUDGET'}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()

    def by(column: str, reverse: bool = False) -> Callable[[NodesTable], None]:
        return lambda table: table.sort_by(column, reverse=reverse)

    scenarios = [
        ("heartbeats, sorted by node", False, by("node")),
        ("heartbeats, sorted by heartbeat (desc)", False, by("heartbeat", True)),
        ("heartbeats + phi, sorted by node", True, by("node")),
        ("heartbeats + phi, sorted by phi (re-sorts)", True, by("phi")),
    ]
    print(f"nodes table, {args.nodes} nodes, {args.rounds} rounds; budget {BUDGET_MS} ms")
    ok = True
    for name, phi_moves, setup in scenarios:
        wall, cpu = asyncio.run(measure(args.nodes, args.rounds, phi_moves=phi_moves, setup=setup))
        ok &= report(name, wall, cpu)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
