#!/usr/bin/env python3
"""The core's work per forming node-round and per in-sync exchange, as counts of calls:
figures that do not depend on the machine's load (wall-clock times on a shared machine
do), to compare two trees with.

Two phases of the core Simulation (the demo's set-up: version 0, full digests, 0.5 s
rounds, one seed), each run under cProfile, which counts every call:

* forming: ``--nodes`` nodes (default 100) from cold until every node lists all of them
  live; calls divided by node-rounds (nodes x rounds). A node-round is one node's
  start_round, its Syns, the SynAcks and Acks they draw (encoded and decoded), and its
  sweep;
* in sync: the formed cluster run on until every node holds the same state, then
  ``--sync-rounds`` more rounds, in which every digest's heartbeats rose (every node beats
  once a round) and nothing else changed: calls divided by the Syns sent (an exchange is a
  Syn, its SynAck and the Ack).

Python calls (functions written in Python) and C calls (builtins and methods of C types)
are given apart; ``--top`` lists the Python functions called most per unit. The counts are
a function of the seed and the tree; datagrams and bytes are printed to show two trees
spoke the same wire.

    python scripts/bench/core_rounds.py
    python scripts/bench/core_rounds.py --nodes 200 --top 15
    python scripts/bench/core_rounds.py --nodes 200 --decode-replies   # the demo's work
    cd /tmp/s9-before && PYTHONPATH=. python /path/to/core_rounds.py   # the other tree
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time
from collections.abc import Callable
from typing import Any

from gossip_tui.core.simulation import Simulation


def _counted(run: Callable[[], object]) -> tuple[pstats.Stats, float]:
    profile = cProfile.Profile()
    cpu = time.process_time()
    profile.runcall(run)
    cpu = time.process_time() - cpu
    return pstats.Stats(profile), cpu


def call_counts(stats: pstats.Stats, per: float, top: int) -> dict[str, Any]:
    python = builtin = 0
    by_function: list[tuple[int, str]] = []
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, line, name), (_primitive, total, *_rest) in table.items():
        if filename == "~":
            builtin += total
        else:
            python += total
            by_function.append((total, f"{filename.rsplit('/', 1)[-1]}:{line}({name})"))
    by_function.sort(reverse=True)
    result: dict[str, Any] = {
        "python_calls": round(python / per, 1),
        "c_calls": round(builtin / per, 1),
    }
    if top:
        result["top_python"] = [[name, round(count / per, 2)] for count, name in by_function[:top]]
    return result


def _everyone_sees_all(sim: Simulation, nodes: int) -> bool:
    return all(len(engine.live_nodes()) == nodes for engine in sim.engines.values())


def measure(
    nodes: int,
    seed: int,
    sync_rounds: int,
    top: int,
    *,
    decode_replies: bool = False,
    unshared: bool = False,
) -> list[dict[str, Any]]:
    sim = Simulation(
        nodes, seed=seed, gossip_interval=0.5, partial_digests=False, decode_replies=decode_replies
    )
    if unshared:
        for engine in sim.engines.values():
            engine.state.shared = None
    formed: list[int | None] = [None]

    def form() -> None:
        formed[0] = sim.rounds_until(lambda: _everyone_sees_all(sim, nodes), 60)

    stats, cpu = _counted(form)
    rounds = formed[0]
    if not rounds:
        raise SystemExit(f"{nodes} nodes did not form in 60 rounds")
    forming = {
        "phase": f"forming, {nodes} nodes (seed {seed})",
        "rounds": rounds,
        "unit": "node-round",
        **call_counts(stats, nodes * rounds, top),
        "cpu_ms_under_profile": round(cpu * 1_000 / (nodes * rounds), 2),
        "datagrams": sim.traffic.datagrams,
        "bytes": sim.traffic.bytes,
    }
    settled = sim.rounds_until(sim.converged, 60)
    if settled is None:
        raise SystemExit(f"{nodes} nodes did not converge")
    syns_before = sim.traffic.by_kind["Syn"]
    datagrams_before, bytes_before = sim.traffic.datagrams, sim.traffic.bytes
    stats, cpu = _counted(lambda: sim.run(sync_rounds))
    syns = sim.traffic.by_kind["Syn"] - syns_before
    in_sync = {
        "phase": f"in sync, {nodes} nodes ({sync_rounds} rounds)",
        "exchanges": syns,
        "unit": "exchange",
        **call_counts(stats, syns, top),
        "cpu_ms_under_profile": round(cpu * 1_000 / syns, 3),
        "datagrams": sim.traffic.datagrams - datagrams_before,
        "bytes": sim.traffic.bytes - bytes_before,
    }
    return [forming, in_sync]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sync-rounds", type=int, default=3)
    parser.add_argument("--top", type=int, default=0, help="list this many Python functions")
    parser.add_argument(
        "--decode-replies",
        action="store_true",
        help="decode every SynAck and Ack, as a node does (the demo's work; by default the "
        "Simulation hands replies over as they are)",
    )
    parser.add_argument(
        "--unshared",
        action="store_true",
        help="every state makes its own objects, as a node alone does (and the demo's did "
        "before session 10), where the Simulation's share one SharedObjects",
    )
    args = parser.parse_args()
    for result in measure(
        args.nodes,
        args.seed,
        args.sync_rounds,
        args.top,
        decode_replies=args.decode_replies,
        unshared=args.unshared,
    ):
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
