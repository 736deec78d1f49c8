#!/usr/bin/env python3
"""Convergence: how long, in seconds and gossip rounds, a key set on one node takes to be
visible on every other node of an N-node cluster of separate processes on 127.0.0.1.

For each implementation, interval and size, one cluster is started (node 0 the seed of
all) and left to form; then, ``--runs`` times, a key is set on a random node through its
HTTP API (``/set_kv/``) and every other node is polled (``GET /nodes/{writer}``, keep-alive
connections, one shared thread pool) until all of them show the value. A node's arrival
time is when its first positive answer came back, so it is late by at most one polling
sweep (the "sweep" column: the median time between two looks at the same node).

Rounds are elapsed seconds / gossip interval. The reference is log3(N) + ln(ln(N)) rounds
(fan-out 3 push-pull gossip: log3(N) + O(log log N)); the target is log3(N) + 3 at median.

    python scripts/bench/convergence.py                       # 10/50/100 nodes, 1 s and 100 ms
    python scripts/bench/convergence.py --nodes 100 --interval-ms 1000 --runs 7
    python scripts/bench/convergence.py --quick               # 3 nodes, a smoke test
"""

from __future__ import annotations

import math
import random
import statistics
import time
from functools import partial
from typing import Any

import _cluster as bench
from _cluster import Cluster, NodeProcess


def reference_rounds(size: int) -> float:
    """log3(N) + ln(ln(N)): the expected rounds of fan-out-3 push-pull gossip."""
    if size < 2:
        return 0.0
    return math.log(size, 3) + max(0.0, math.log(math.log(size)))


def target_rounds(size: int) -> float:
    return math.log(size, 3) + 3 if size > 1 else 0.0


def poll_period(interval: float) -> float:
    """How often a node not yet showing the key is asked again."""
    return min(0.2, max(0.02, interval / 5))


def one_run(c: Cluster, run: int, rng: random.Random, timeout: float) -> dict[str, Any]:
    writer = c.nodes[rng.randrange(c.size)]
    observers = [n for n in c.nodes if n is not writer]
    key = f"bench-{run}"
    value = f"{run}-{rng.getrandbits(32):08x}"
    period = poll_period(c.interval)

    def shows_value(observer: NodeProcess) -> float | None:
        view = c.node_view(observer, writer)
        if view is None:
            return None
        entry = view.get("key_values", {}).get(key)
        if entry is not None and entry.get("value") == value:
            return time.monotonic()
        return None

    seen: dict[int, float] = {}
    sweeps: list[float] = []
    started = time.monotonic()
    c.set_kv(writer, key, value)
    set_latency = time.monotonic() - started
    deadline = started + timeout
    while len(seen) < len(observers) and time.monotonic() < deadline:
        sweep_start = time.monotonic()
        pending = [o for o in observers if o.index not in seen]
        for observer, when in zip(pending, c.map(shows_value, pending), strict=True):
            if when is not None:
                seen[observer.index] = when
        sweeps.append(time.monotonic() - sweep_start)
        if len(seen) < len(observers):
            bench.sleep_until(sweep_start + period)
    arrivals = sorted(t - started for t in seen.values())
    converged = len(seen) == len(observers)
    last = arrivals[-1] if converged and arrivals else math.nan
    return {
        "run": run,
        "writer": writer.index,
        "converged": converged,
        "nodes_reached": len(seen) + 1,
        "seconds": last,
        "rounds": last / c.interval,
        "median_node_seconds": statistics.median(arrivals) if arrivals else math.nan,
        "set_kv_seconds": set_latency,
        "sweep_seconds_median": statistics.median(sweeps) if sweeps else math.nan,
        "sweep_period": period,
        "arrivals": arrivals,
    }


def measure(
    impl: str, size: int, interval_ms: int, runs: int, rng: random.Random, quick: bool
) -> dict[str, Any]:
    interval = interval_ms / 1000
    timeout = max(30.0, 60 * interval)
    with bench.cluster(impl, size, interval_ms, rng=rng, pool_size=8) as c:
        formed = time.monotonic() - c.started_at
        time.sleep(max(1.0, 3 * interval) if not quick else 0.5)
        load_before = bench.loadavg()
        results = []
        for run in range(runs):
            result = one_run(c, run, rng, timeout)
            results.append(result)
            bench.log(
                f"{impl} N={size} {interval_ms} ms run {run}: "
                f"{result['seconds']:.2f} s = {result['rounds']:.1f} rounds "
                f"({result['nodes_reached']}/{size} nodes)"
            )
            # Let the cluster go quiet again, at a random phase of the gossip timers.
            time.sleep(2 * interval + rng.random() * interval)
        load_after = bench.loadavg()
    done = [r for r in results if r["converged"]]
    seconds = [r["seconds"] for r in done]
    rounds = [r["rounds"] for r in done]
    median_rounds = statistics.median(rounds) if rounds else math.nan
    return {
        "impl": impl,
        "nodes": size,
        "interval_ms": interval_ms,
        "runs": runs,
        "converged_runs": len(done),
        "formation_seconds": formed,
        "seconds": bench.summarize(seconds),
        "rounds": bench.summarize(rounds),
        "reference_rounds": reference_rounds(size),
        "target_rounds": target_rounds(size),
        "target_met": bool(rounds) and median_rounds <= target_rounds(size),
        "sweep_seconds_median": statistics.median(r["sweep_seconds_median"] for r in results),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "runs_detail": results,
    }


def main() -> int:
    parser = bench.common_parser(
        __doc__.split("\n\n")[0], nodes=(10, 50, 100), intervals=(1000, 100), runs=5,
        name="convergence",
    )  # fmt: skip
    args = bench.parse_args(parser)
    rng = random.Random(args.seed)
    impls, skipped = bench.selected_impls(args.impl)
    payload: dict[str, Any] = {"benchmark": "convergence", "machine": bench.machine_info()}
    payload["skipped"] = skipped
    results: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    payload["results"] = results
    payload["failures"] = failures
    try:
        for interval_ms in args.interval_ms:
            for size in args.nodes:
                for impl in impls:
                    result = bench.attempt(
                        {"impl": impl, "nodes": size, "interval_ms": interval_ms},
                        partial(measure, impl, size, interval_ms, args.runs, rng, args.quick),
                        failures,
                    )
                    if result is not None:
                        results.append(result)
    finally:
        payload["loadavg_end"] = bench.loadavg()
        rows = [
            (
                r["impl"],
                r["interval_ms"],
                r["nodes"],
                f"{r['converged_runs']}/{r['runs']}",
                r["seconds"].get("median"),
                r["seconds"].get("max"),
                r["rounds"].get("median"),
                r["rounds"].get("max"),
                r["reference_rounds"],
                r["target_rounds"],
                "yes" if r["target_met"] else "no",
                r["sweep_seconds_median"],
                " ".join(f"{x:.1f}" for x in r["loadavg_before"]),
            )
            for r in results
        ]
        bench.print_table(
            "convergence: a key set on one node, visible on all (median / max over runs)",
            [
                "impl", "ms", "N", "runs", "med s", "max s", "med rnd", "max rnd",
                "log3N+lnlnN", "target", "met", "sweep s", "load",
            ],
            rows,
        )  # fmt: skip
        bench.print_failures(failures)
        bench.write_json(args.json, payload)
    return 1 if failures else 0


if __name__ == "__main__":
    bench.run_main(main)
