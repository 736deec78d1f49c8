#!/usr/bin/env python3
"""Real gossip-tui nodes over UDP on 127.0.0.1, beside the simulation's figures for the
same N: in one process (``_inproc.py``: N nodes in one Trio run) and as N processes
(``_cluster.py``: one ``gossip-tui --headless`` each, read over HTTP).

For each size and mode (V0, V1, V1 with partial digests): rounds for a key set on one
node to reach every node (seconds / interval, median over ``--keys`` keys), bytes and
datagrams sent per node per round while idle, datagrams that could not be sent (EMSGSIZE
among them), the load average around the run (other work on the machine slows gossip
and shows as extra rounds). The node ids are ``node-i``; the simulation's ``short``
naming is the same style, so compare with ``scale.py --naming short``.

    python scripts/bench/scale_udp.py --processes 100 --inproc 100 200 400
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _cluster as bench
from convergence import one_run

HERE = Path(__file__).resolve().parent
# Mode name -> the node's command-line options.
MODES: dict[str, list[str]] = {
    "V0": ["--protocol-version", "0"],
    "V1": ["--protocol-version", "1"],
    "V1+partial": ["--protocol-version", "1", "--partial-digests"],
}


def _median(values: list[float | None]) -> float | None:
    done = [v for v in values if v is not None]
    return statistics.median(done) if len(done) == len(values) and done else None


def as_processes(
    size: int, mode: str, interval_ms: int, keys: int, window: float
) -> dict[str, Any]:
    rng = random.Random(size)
    load_before = bench.loadavg()
    started = time.monotonic()
    with bench.Cluster(
        bench.GOSSIP_TUI, size, interval_ms, rng=rng, extra_args=MODES[mode], pool_size=16
    ) as c:
        # A hundred interpreters starting on a busy machine take minutes to answer.
        c.start(timeout=120 + 8 * size)
        formed = time.monotonic() - started
        time.sleep(3 * c.interval)

        def traffic(node: bench.NodeProcess) -> tuple[int, int, int | None] | None:
            # A node too busy to answer within the harness's timeout is left out of the
            # sums (and counted), rather than ending the run.
            try:
                return c.traffic(node)
            except (OSError, RuntimeError, ValueError):
                return None

        before = c.map(traffic, c.nodes)
        began = time.monotonic()
        time.sleep(window)
        after = c.map(traffic, c.nodes)
        elapsed = time.monotonic() - began
        read = [(a, b) for a, b in zip(after, before, strict=True) if a and b]
        sent = sum(a[0] - b[0] for a, b in read)
        datagrams = sum(a[1] - b[1] for a, b in read)
        rounds = sum((a[2] or 0) - (b[2] or 0) for a, b in read)
        spreads = []
        for run in range(keys):
            try:
                spreads.append(one_run(c, run, rng, max(30.0, 60 * c.interval)))
            except (OSError, RuntimeError, ValueError) as exc:
                bench.log(f"key {run}: {exc!r}")
                spreads.append({"converged": False, "rounds": None})
        rss = sum(c.rss().values())
    return {
        "nodes": size,
        "mode": mode,
        "how": "processes",
        "rounds": [r["rounds"] if r["converged"] else None for r in spreads],
        "median_rounds": _median([r["rounds"] if r["converged"] else None for r in spreads]),
        "bytes_per_node_per_round": sent / max(rounds, 1),
        "datagrams_per_node_per_round": datagrams / max(rounds, 1),
        "rounds_per_node_per_interval": rounds / max(len(read), 1) / (elapsed / c.interval),
        "nodes_read": len(read),
        "formed_seconds": formed,
        "rss_mib_total": rss,
        "loadavg": [load_before, bench.loadavg()],
    }


def in_one_process(
    size: int, mode: str, interval_ms: int, keys: int, window: float
) -> dict[str, Any]:
    version = MODES[mode][1]
    command = [
        sys.executable,
        str(HERE / "_inproc.py"),
        "--impl",
        bench.GOSSIP_TUI,
        "--nodes",
        str(size),
        "--interval-ms",
        str(interval_ms),
        "--protocol-version",
        version,
        "--window",
        str(window),
        "--updates-per-second",
        "0",
        "--spread-runs",
        str(keys),
        "--timeout",
        str(120 + size),
    ]
    if "--partial-digests" in MODES[mode]:
        command.append("--partial-digests")
    load_before = bench.loadavg()
    started = time.monotonic()
    done = subprocess.run(
        command, capture_output=True, text=True, env=bench.child_env(), check=False
    )
    if done.returncode != 0:
        return {"nodes": size, "mode": mode, "how": "one process", "error": done.stderr[-500:]}
    result = json.loads(done.stdout)
    idle = result["idle"]
    return {
        "nodes": size,
        "mode": mode,
        "how": "one process",
        "rounds": result["spread_rounds"],
        "median_rounds": _median(result["spread_rounds"]),
        "bytes_per_node_per_round": idle.get("bytes_per_node_per_round"),
        "datagrams_per_node_per_round": (
            idle["datagrams_per_node_per_interval"]
            / idle["rounds_per_node"]
            * (idle["seconds"] / (interval_ms / 1000))
            if idle.get("rounds_per_node")
            else None
        ),
        "rounds_per_node_per_interval": (idle.get("rounds_per_node") or 0)
        / (idle["seconds"] / (interval_ms / 1000)),
        "cpu_s_per_node_per_minute": idle["inproc_cpu_seconds_per_node_per_minute"],
        "send_errors": result.get("send_errors"),
        "seconds": time.monotonic() - started,
        "loadavg": [load_before, bench.loadavg()],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, nargs="*", default=[100])
    parser.add_argument("--inproc", type=int, nargs="*", default=[100, 200])
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=["V0", "V1"])
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=3)
    parser.add_argument("--window", type=float, default=20.0, help="idle seconds measured")
    parser.add_argument("--json", type=Path, default=Path("bench-results/scale_udp.json"))
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for size in args.inproc:
        for mode in args.modes:
            row = in_one_process(size, mode, args.interval_ms, args.keys, args.window)
            rows.append(row)
            bench.log(f"one process, {size} nodes, {mode}: {row}")
    for size in args.processes:
        for mode in args.modes:
            row = as_processes(size, mode, args.interval_ms, args.keys, args.window)
            rows.append(row)
            bench.log(f"{size} processes, {mode}: {row}")
    bench.print_table(
        "Real nodes over UDP on 127.0.0.1 (node-i ids)",
        [
            "N",
            "mode",
            "how",
            "median rounds",
            "all",
            "B/node/round",
            "dgrams/node/round",
            "rounds/interval",
            "load before",
            "load after",
        ],
        [
            [
                r["nodes"],
                r["mode"],
                r["how"],
                r.get("median_rounds"),
                r.get("rounds"),
                r.get("bytes_per_node_per_round"),
                r.get("datagrams_per_node_per_round"),
                r.get("rounds_per_node_per_interval"),
                (r.get("loadavg") or [[None]])[0][0],
                (r.get("loadavg") or [[None], [None]])[1][0],
            ]
            for r in rows
        ],
    )
    bench.write_rows(args, rows)
    return 0


if __name__ == "__main__":
    bench.run_main(main)
