#!/usr/bin/env python3
"""Cost of a node: CPU seconds per node per minute, RSS per node, and bytes sent per node per
round, idle and with one key update per second, for gossip-tui and swim-protocol.

Two measurements, each honest about what it sees:

1. processes (CPU, RSS, traffic): N separate node processes on 127.0.0.1 (as
   ``convergence.py``); after the cluster forms and settles, user+system CPU of every node
   is read from ``/proc/<pid>/stat`` before and after a ``--window``-second window, idle,
   then with one ``/set_kv/`` per second on the next node (round robin); VmRSS from
   ``/proc/<pid>/status`` at the end of each window. What each node sent is read at the
   window's edges: gossip-tui's ``Node.stats`` from ``GET /metrics``, the swim member's
   count of packed packets from ``GET /stats``. Nothing else talks to the nodes meanwhile.
2. in-process (cross-check of the traffic): ``_inproc.py`` runs the N nodes in ONE process
   over real UDP sockets and counts what they send (gossip-tui: ``Node.stats``; swim: every
   packed packet), with no HTTP server in the way.

A round is one gossip interval: bytes per node per round = bytes sent / N / (window /
interval). For gossip-tui the rounds the nodes actually ran are counted as well.

    python scripts/bench/cost.py                               # N = 10, 100 at 1 s
    python scripts/bench/cost.py --nodes 100 --window 120 --interval-ms 1000 100
    python scripts/bench/cost.py --quick
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from functools import partial
from typing import Any

import _cluster as bench
from _cluster import Cluster


def _window(c: Cluster, seconds: float, updates_per_second: float) -> dict[str, Any]:
    traffic_before = c.map(c.traffic, c.nodes)
    before = c.cpu()
    started = time.monotonic()
    end = started + seconds
    count = 0
    while (now := time.monotonic()) < end:
        if updates_per_second <= 0:
            bench.sleep_until(end)
            break
        c.set_kv(c.nodes[count % c.size], "bench-update", f"value-{count}")
        count += 1
        bench.sleep_until(min(end, now + 1 / updates_per_second))
    elapsed = time.monotonic() - started
    after = c.cpu()
    traffic_after = c.map(c.traffic, c.nodes)
    per_minute = [(after[i] - before[i]) / (elapsed / 60) for i in after]
    rss = list(c.rss().values())
    sent = sum(a[0] - b[0] for a, b in zip(traffic_after, traffic_before, strict=True))
    datagrams = sum(a[1] - b[1] for a, b in zip(traffic_after, traffic_before, strict=True))
    intervals = elapsed / c.interval
    traffic: dict[str, Any] = {
        "bytes_per_node_per_interval": sent / c.size / intervals,
        "datagrams_per_node_per_interval": datagrams / c.size / intervals,
    }
    if traffic_after[0][2] is not None:
        rounds = sum(a[2] - b[2] for a, b in zip(traffic_after, traffic_before, strict=True))
        traffic["rounds_per_node"] = rounds / c.size
        traffic["bytes_per_node_per_round"] = sent / rounds if rounds else None
    return {
        "traffic": traffic,
        "seconds": elapsed,
        "updates": count,
        "cpu_seconds_per_node_per_minute": bench.summarize(per_minute),
        "cpu_percent_of_a_core_per_node": statistics.fmean(per_minute) / 60 * 100,
        "rss_mib": bench.summarize(rss),
        "loadavg": bench.loadavg(),
    }


def measure_processes(
    impl: str, size: int, interval_ms: int, window: float, settle: float, rate: float
) -> dict[str, Any]:
    with bench.cluster(impl, size, interval_ms) as c:
        time.sleep(settle)
        idle = _window(c, window, 0)
        bench.log(
            f"{impl} N={size} {interval_ms} ms idle: "
            f"{idle['cpu_seconds_per_node_per_minute']['mean']:.3f} CPU s/node/min, "
            f"{idle['rss_mib']['mean']:.1f} MiB"
        )
        updating = _window(c, window, rate)
        bench.log(
            f"{impl} N={size} {interval_ms} ms updates: "
            f"{updating['cpu_seconds_per_node_per_minute']['mean']:.3f} CPU s/node/min"
        )
    return {
        "impl": impl,
        "nodes": size,
        "interval_ms": interval_ms,
        "settle_seconds": settle,
        "idle": idle,
        "updates": updating,
    }


def measure_inproc(
    impl: str, size: int, interval_ms: int, window: float, settle: float, rate: float
) -> dict[str, Any]:
    command = [
        sys.executable,
        str(bench.HERE / "_inproc.py"),
        "--impl", impl,
        "--nodes", str(size),
        "--interval-ms", str(interval_ms),
        "--window", str(window),
        "--settle", str(settle),
        "--updates-per-second", str(rate),
    ]  # fmt: skip
    timeout = 180 + 2 * window + settle + 2 * size
    bench.log(f"in-process {impl} N={size} {interval_ms} ms: {window:.0f} s windows")
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=bench.REPO,
        env=bench.child_env(),
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"_inproc.py {impl} N={size} exited {done.returncode}: {last}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = bench.common_parser(
        __doc__.split("\n\n")[0],
        nodes=(10, 100),
        intervals=(1000,),
        runs=1,
        name="cost",
        quick_nodes=(3,),
        quick_intervals=(200,),
        quick_runs=1,
    )
    parser.add_argument("--window", type=float, help="seconds per window (default 60; quick 2)")
    parser.add_argument(
        "--settle", type=float, help="seconds between forming and measuring (default 15)"
    )
    parser.add_argument("--updates-per-second", type=float, default=1.0)
    parser.add_argument(
        "--skip", choices=("processes", "inproc"), help="leave out one of the two measurements"
    )
    args = bench.parse_args(parser)
    window = args.window or (2.0 if args.quick else 60.0)
    settle = args.settle if args.settle is not None else (0.5 if args.quick else 15.0)
    impls, skipped = bench.selected_impls(args.impl)
    processes: list[dict[str, Any]] = []
    inproc: list[dict[str, Any]] = []
    payload: dict[str, Any] = {
        "benchmark": "cost",
        "machine": bench.machine_info(),
        "skipped": skipped,
        "window_seconds": window,
        "processes": processes,
        "inproc": inproc,
    }
    rate = args.updates_per_second
    failures: list[dict[str, Any]] = []
    payload["failures"] = failures
    try:
        for _run in range(args.runs):
            for interval_ms in args.interval_ms:
                for size in args.nodes:
                    for impl in impls:
                        what = {"impl": impl, "nodes": size, "interval_ms": interval_ms}
                        for measure, run, results in (
                            ("processes", measure_processes, processes),
                            ("inproc", measure_inproc, inproc),
                        ):
                            if args.skip == measure:
                                continue
                            result = bench.attempt(
                                what | {"measure": measure},
                                partial(run, impl, size, interval_ms, window, settle, rate),
                                failures,
                            )
                            if result is not None:
                                results.append(result)
    finally:
        payload["loadavg_end"] = bench.loadavg()
        if processes:
            rows: list[tuple[Any, ...]] = []
            for r in processes:
                for mode in ("idle", "updates"):
                    w = r[mode]
                    rows.append(
                        (
                            r["impl"],
                            r["interval_ms"],
                            r["nodes"],
                            mode,
                            w["cpu_seconds_per_node_per_minute"]["mean"],
                            w["cpu_seconds_per_node_per_minute"]["max"],
                            w["cpu_percent_of_a_core_per_node"],
                            w["rss_mib"]["mean"],
                            w["rss_mib"]["max"],
                            w["traffic"]["bytes_per_node_per_interval"],
                            w["traffic"]["datagrams_per_node_per_interval"],
                            " ".join(f"{x:.1f}" for x in w["loadavg"]),
                        )
                    )
            bench.print_table(
                f"cost per node process ({window:.0f} s windows; CPU = user+system)",
                [
                    "impl", "ms", "N", "mode", "cpu s/min", "max", "% core",
                    "rss MiB", "max", "B/node/rnd", "dgrams/rnd", "loadavg",
                ],
                rows,
            )  # fmt: skip
        if inproc:
            rows = []
            for r in inproc:
                for mode in ("idle", "updates"):
                    w = r[mode]
                    rows.append(
                        (
                            r["impl"],
                            r["interval_ms"],
                            r["nodes"],
                            mode,
                            w["bytes_per_node_per_interval"],
                            w.get("bytes_per_node_per_round"),
                            w["datagrams_per_node_per_interval"],
                            w["bytes_per_node_per_second"],
                            w["inproc_cpu_seconds_per_node_per_minute"],
                        )
                    )
            bench.print_table(
                "bytes sent per node (N nodes in one process over UDP; "
                "round = one gossip interval)",
                [
                    "impl", "ms", "N", "mode", "B/node/round", "B/counted rnd",
                    "dgrams/node/rnd", "B/node/s", "in-proc cpu s/min",
                ],
                rows,
            )  # fmt: skip
        bench.print_failures(failures)
        bench.write_json(args.json, payload)
    return 1 if failures else 0


if __name__ == "__main__":
    bench.run_main(main)
