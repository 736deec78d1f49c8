#!/usr/bin/env python3
"""Memory of the real-engine simulation: bytes per node-state entry (one engine's view of
one node; N nodes hold N^2), pre-formed, then after a few rounds; peak RSS and CPU-s of
each round. ``--trace`` counts with tracemalloc (slower, about twice the time) and
prints the lines that hold the most.

    python scripts/bench/sim_memory.py --nodes 300 --rounds 3
    python scripts/bench/sim_memory.py --nodes 300 --rounds 2 --trace --top 25
    python scripts/bench/sim_memory.py --nodes 600 --mode V0
    python scripts/bench/sim_memory.py --nodes 300 --preform handler
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

from scale import peak_rss_mb

from gossip_tui.core.codec import PROTOCOL_V0, PROTOCOL_V1
from gossip_tui.core.simulation import NAMINGS, PREFORM_METHODS, Simulation


def _report(tag: str, entries: int, trace: bool, top: int) -> None:
    gc.collect()
    line = f"{tag}: peak RSS {peak_rss_mb():,.0f} MB"
    if trace:
        held, _peak = tracemalloc.get_traced_memory()
        line += f", traced {held / entries:,.0f} B per entry"
    print(line, flush=True)
    if trace and top:
        for stat in tracemalloc.take_snapshot().statistics("lineno")[:top]:
            per_entry, objects = stat.size / entries, stat.count / entries
            print(f"  {per_entry:8.1f} B {objects:5.2f} objects  {stat.traceback}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", choices=("V0", "V1"), default="V1")
    parser.add_argument("--naming", choices=list(NAMINGS), default="chitchat-test")
    parser.add_argument("--partial", action="store_true", help="partial digests on")
    parser.add_argument(
        "--preform", choices=PREFORM_METHODS, default=PREFORM_METHODS[0], help="how to pre-form"
    )
    parser.add_argument("--trace", action="store_true", help="count with tracemalloc")
    parser.add_argument("--top", type=int, default=0, help="with --trace: lines to show")
    args = parser.parse_args()
    if args.trace:
        tracemalloc.start()
    entries = args.nodes**2
    cpu = time.process_time()
    sim = Simulation(
        args.nodes,
        protocol_version=PROTOCOL_V1 if args.mode == "V1" else PROTOCOL_V0,
        naming=NAMINGS[args.naming],
        partial_digests=args.partial,
    )
    sim.preform(args.preform)
    print(
        f"pre-formed {args.nodes} nodes ({args.preform}) in {time.process_time() - cpu:.1f} CPU-s",
        flush=True,
    )
    _report("formed", entries, args.trace, args.top)
    for count in range(args.rounds):
        cpu = time.process_time()
        sim.round()
        print(f"round {count + 1}: {time.process_time() - cpu:.2f} CPU-s", flush=True)
    _report(f"after {args.rounds} rounds", entries, args.trace, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
