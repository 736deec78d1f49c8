"""Time one tick of the dashboard's nodes table with a 500-node cluster.

Mounts the table headless (App.run_test), shows a first 500-node liveness reading through
the view model, then times each later tick, where every node's heartbeat moved on (and, in
two scenarios, every phi too), for a few sort orders. Two figures per tick:

* table: ``NodesTable.apply`` of the view model's changes, the widget's own cost;
* tick: ``ClusterViewModel.apply_readings`` and then the table, all the dashboard does with
  a reading on Textual's thread.

The budget is one 60 Hz frame: 16 ms. A last line times what the node does on its side per
tick, ``GossipEngine.liveness_readings`` (what the dashboard reads now), against
``GossipEngine.snapshot`` (what it read before: every node's key-values copied).

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

from gossip_tui.core.engine import GossipEngine, LivenessReading, LivenessReadings
from gossip_tui.core.messages import Delta, Digest, KeyValueMutation, NodeDelta, NodeDigest, SynAck
from gossip_tui.core.models import (
    Liveness,
    NodeId,
    NodeSnapshot,
    SocketAddress,
    VersionedValue,
)
from gossip_tui.ui._view_model import ClusterViewModel
from gossip_tui.ui.widgets.nodes_table import NodesTable

BUDGET_MS = 16.0
TAKEN_AT = 10_000.0
KEYS = {"bind": VersionedValue("127.0.0.1:10000", 1), "role": VersionedValue("worker", 2)}


def node_ids(nodes: int) -> list[NodeId]:
    return [
        NodeId(f"server:127.0.0.{1 + i // 250}:{10000 + i}-node{i:04d}", 1_700_000_000 + i % 7,
               SocketAddress.parse(f"127.0.0.{1 + i // 250}:{10000 + i}"))
        for i in range(nodes)
    ]  # fmt: skip


def readings(ids: list[NodeId], round_: int, *, phi_moves: bool) -> LivenessReadings:
    nodes = []
    for i, ident in enumerate(ids):
        phi = ((i + round_) % 90) / 10 if phi_moves else (i % 90) / 10
        nodes.append(
            LivenessReading(
                node=ident,
                liveness=Liveness.SELF if i == 0 else Liveness.LIVE,
                heartbeat=1_000 + i + round_,
                max_version=2,
                phi=None if i == 0 else phi,
                last_update=TAKEN_AT + round_ - 0.2,
            )
        )
    return LivenessReadings(TAKEN_AT + round_, tuple(nodes))


def read_node(node: NodeId) -> NodeSnapshot | None:
    """The node's side of a one-node read: every node has the same two keys."""
    return NodeSnapshot(node, 1_000, 2, 0, dict(KEYS), Liveness.LIVE, 0.5, TAKEN_AT)


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield NodesTable(id="nodes")


async def measure(
    nodes: int, rounds: int, *, phi_moves: bool, setup: Callable[[NodesTable], None]
) -> tuple[list[float], list[float], list[float]]:
    ids = node_ids(nodes)
    ticks = [readings(ids, r, phi_moves=phi_moves) for r in range(rounds + 1)]
    model = ClusterViewModel(ids[0], read_node)
    app = TableApp()
    table_cpu: list[float] = []
    tick_wall: list[float] = []
    tick_cpu: list[float] = []
    async with app.run_test(size=(160, 50)) as pilot:
        table = app.query_one(NodesTable)
        setup(table)
        table.apply(model.apply_readings(ticks[0]), model.taken_at)
        await pilot.pause()
        assert table.row_count == nodes
        for tick in ticks[1:]:
            started, started_cpu = time.perf_counter(), time.process_time()
            changes = model.apply_readings(tick)
            table_started = time.process_time()
            table.apply(changes, model.taken_at)
            ended = time.process_time()
            tick_wall.append((time.perf_counter() - started) * 1000)
            tick_cpu.append((ended - started_cpu) * 1000)
            table_cpu.append((ended - table_started) * 1000)
            await pilot.pause()  # let the frame render before the next round
    return table_cpu, tick_wall, tick_cpu


def report(name: str, table_cpu: list[float], wall: list[float], cpu: list[float]) -> bool:
    wall = sorted(wall)
    p95 = wall[int(len(wall) * 0.95) - 1]
    ok = statistics.median(cpu) < BUDGET_MS
    print(
        f"{name:<42} table cpu median {statistics.median(table_cpu):5.2f} ms | tick cpu "
        f"median {statistics.median(cpu):5.2f} ms, wall median {statistics.median(wall):5.2f} "
        f"ms, p95 {p95:5.2f} ms  {'OK' if ok else 'OVER BUDGET'}"
    )
    return ok


def engine_with(nodes: int) -> GossipEngine:
    """An engine that knows ``nodes`` nodes (itself included), each with two keys."""
    ids = node_ids(nodes)
    engine = GossipEngine(ids[0], "bench", now=0.0, initial_key_values={"role": "worker"})
    deltas = tuple(
        NodeDelta(
            ident,
            0,
            0,
            (KeyValueMutation("bind", str(ident.gossip_addr), 1),
             KeyValueMutation("role", "worker", 2)),
            2,
        )
        for ident in ids[1:]
    )  # fmt: skip
    digest = Digest({ident: NodeDigest(10, 0, 2) for ident in ids[1:]})
    engine.handle_message(SynAck(digest, Delta(deltas)), 1.0)
    assert len(engine.state) == nodes
    return engine


def cpu_ms(call: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.process_time()
        call()
        times.append((time.process_time() - started) * 1000)
    return statistics.median(times)


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
        measured = asyncio.run(measure(args.nodes, args.rounds, phi_moves=phi_moves, setup=setup))
        ok &= report(name, *measured)
    engine = engine_with(args.nodes)
    now = 2.0
    readings_ms = cpu_ms(lambda: engine.liveness_readings(now), args.rounds)
    snapshot_ms = cpu_ms(lambda: engine.snapshot(now), args.rounds)
    print(
        f"node side per tick, cpu median: liveness_readings {readings_ms:5.2f} ms | "
        f"snapshot (before) {snapshot_ms:5.2f} ms"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
