#!/usr/bin/env python3
"""Failure detection: seconds from ``kill -9`` of one node until every other node marks it
dead, and false deaths in an idle cluster.

Detection (``--mode detect``): for each implementation, interval and size, a cluster of
separate processes on 127.0.0.1 forms, idles for ``--warmup`` seconds (gossip-tui's phi
detector learns the heartbeat rhythm; swim-protocol needs no warm-up), then ``--runs`` times
a random node other than the seed is killed with SIGKILL and every survivor is polled
(``GET /nodes/{victim}``) until it reports the victim dead: gossip-tui's ``dead``, swim's
``OFFLINE`` (after ``SUSPECT`` and the suspect timeout). Each run kills another node of the
same cluster. The distribution is over every (run, observer) pair; "all dead" is, per run,
when the last observer got there.

False deaths (``--mode false-deaths``): an idle cluster of ``--idle-nodes`` runs for
``--idle-minutes``; every node's ``GET /nodes`` is read every ``--idle-poll`` seconds and
every live -> dead change of a node that nobody killed is a false death (a suspicion that
swim clears before its suspect timeout is counted apart). The swim members also count their
own status changes exactly, reported beside the polled figure.

Pauses (``--mode pause``, gossip-tui only): a cluster idles for ``--warmup`` seconds
(minutes, to reach the steady state where the detector has learnt the heartbeat rhythm),
then ``--runs`` times a random non-seed node is stopped with SIGSTOP for ``--pause``
seconds and continued; every other node is polled during the stop and for 10 intervals
after it. Reported: how many observers ever listed it dead, and the largest phi seen.
``--acceptable-pause`` is passed to the nodes (0: chitchat's rule alone).

    python scripts/bench/failure_detection.py                  # detect and false deaths
    python scripts/bench/failure_detection.py --mode detect --nodes 10 100 --runs 3
    python scripts/bench/failure_detection.py --mode false-deaths --impl gossip-tui
    python scripts/bench/failure_detection.py --mode pause --nodes 10 --interval-ms 500 \
        --warmup 600 --runs 5
    python scripts/bench/failure_detection.py --quick
"""

from __future__ import annotations

import http.client
import math
import os
import random
import signal
import statistics
import time
from functools import partial
from typing import Any

import _cluster as bench
from _cluster import Cluster, NodeProcess

DEAD = {"dead", "left", "scheduled_for_deletion"}


def poll_period(interval: float) -> float:
    return min(0.25, max(0.05, interval / 4))


def victim_seen(c: Cluster, observer: NodeProcess, victim: NodeProcess) -> tuple[str, Any]:
    """How ``observer`` sees ``victim``: its liveness (or "absent", or "error" when the
    observer did not answer) and its phi there (None when not measured)."""
    try:
        seen = c.node_view(observer, victim)
    except (OSError, http.client.HTTPException, RuntimeError, ValueError):
        return "error", None
    if seen is None:
        return "absent", None
    return seen["node"]["liveness"], seen["node"].get("phi")


def detect_once(c: Cluster, victim: NodeProcess, timeout: float) -> dict[str, Any]:
    observers = c.live
    observers.remove(victim)
    period = poll_period(c.interval)

    def view(observer: NodeProcess) -> tuple[str, float]:
        return victim_seen(c, observer, victim)[0], time.monotonic()

    dead_at: dict[int, float] = {}
    suspect_at: dict[int, float] = {}
    killed = c.kill(victim)
    deadline = killed + timeout
    while len(dead_at) < len(observers) and time.monotonic() < deadline:
        sweep_start = time.monotonic()
        pending = [o for o in observers if o.index not in dead_at]
        for observer, (state, when) in zip(pending, c.map(view, pending), strict=True):
            if state in DEAD:
                dead_at[observer.index] = when - killed
            elif state == "suspect" and observer.index not in suspect_at:
                suspect_at[observer.index] = when - killed
        if len(dead_at) < len(observers):
            bench.sleep_until(sweep_start + period)
    times = sorted(dead_at.values())
    complete = len(times) == len(observers)
    return {
        "victim": victim.index,
        "observers": len(observers),
        "detected_by": len(times),
        "complete": complete,
        "all_dead_seconds": times[-1] if complete else math.nan,
        "first_dead_seconds": times[0] if times else math.nan,
        "observer_seconds": times,
        "first_suspect_seconds": min(suspect_at.values()) if suspect_at else None,
        "poll_period": period,
    }


def measure_detection(
    impl: str,
    size: int,
    interval_ms: int,
    runs: int,
    warmup: float,
    rng: random.Random,
) -> dict[str, Any]:
    interval = interval_ms / 1000
    timeout = max(60.0, 100 * interval)
    runs = min(runs, size - 2)  # never kill the seed; keep two nodes at least
    with bench.cluster(impl, size, interval_ms, rng=rng) as c:
        bench.log(f"{impl} N={size} {interval_ms} ms: warming up {warmup:.0f} s")
        time.sleep(warmup)
        load_before = bench.loadavg()
        results = []
        for run in range(runs):
            candidates = [n for n in c.live if n.index != 0]
            victim = rng.choice(candidates)
            result = detect_once(c, victim, timeout)
            results.append(result)
            bench.log(
                f"{impl} N={size} {interval_ms} ms run {run}: node {victim.index} dead on "
                f"{result['detected_by']}/{result['observers']} after "
                f"{result['all_dead_seconds']:.2f} s (first {result['first_dead_seconds']:.2f} s)"
            )
            time.sleep(3 * interval + rng.random() * interval)
        load_after = bench.loadavg()
    pooled = [t for r in results for t in r["observer_seconds"]]
    all_dead = [r["all_dead_seconds"] for r in results if r["complete"]]
    return {
        "impl": impl,
        "nodes": size,
        "interval_ms": interval_ms,
        "runs": runs,
        "complete_runs": len(all_dead),
        "warmup_seconds": warmup,
        "observer_seconds": bench.summarize(pooled),
        "all_dead_seconds": bench.summarize(all_dead),
        "all_dead_rounds_median": (statistics.median(all_dead) / interval if all_dead else None),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "runs_detail": results,
    }


def pause_once(c: Cluster, victim: NodeProcess, pause: float) -> dict[str, Any]:
    observers = [n for n in c.live if n is not victim]
    period = poll_period(c.interval)
    declared_dead: dict[int, float] = {}
    largest_phi = 0.0
    polls = 0

    victim.close_connection()
    os.kill(victim.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    resume_at = stopped + pause
    resumed = False
    try:
        while time.monotonic() < resume_at + 10 * c.interval:
            if not resumed and time.monotonic() >= resume_at:
                os.kill(victim.pid, signal.SIGCONT)
                resumed = True
            sweep_start = time.monotonic()
            seen = c.map(lambda observer: victim_seen(c, observer, victim), observers)
            for observer, (state, phi) in zip(observers, seen, strict=True):
                polls += 1
                if state in DEAD | {"absent"}:
                    declared_dead.setdefault(observer.index, sweep_start - stopped)
                if phi is not None:
                    largest_phi = max(largest_phi, float(phi))
            # The next sweep, or the moment to continue the node if that comes first.
            next_sweep = sweep_start + period
            bench.sleep_until(next_sweep if resumed else min(next_sweep, resume_at))
    finally:
        if not resumed:
            os.kill(victim.pid, signal.SIGCONT)
    return {
        "victim": victim.index,
        "observers": len(observers),
        "declared_dead_by": len(declared_dead),
        "first_declared_dead_seconds": min(declared_dead.values(), default=None),
        "largest_phi": largest_phi,
        "polls": polls,
    }


def measure_pauses(
    size: int,
    interval_ms: int,
    runs: int,
    warmup: float,
    pause: float,
    acceptable_pause: float | None,
    rng: random.Random,
) -> dict[str, Any]:
    extra = [] if acceptable_pause is None else ["--acceptable-pause", str(acceptable_pause)]
    with bench.cluster(bench.GOSSIP_TUI, size, interval_ms, rng=rng, extra_args=extra) as c:
        bench.log(f"pause N={size} {interval_ms} ms: warming up {warmup:.0f} s")
        time.sleep(warmup)
        results = []
        for run in range(runs):
            victim = rng.choice([n for n in c.live if n.index != 0])
            result = pause_once(c, victim, pause)
            results.append(result)
            bench.log(
                f"pause N={size} {interval_ms} ms run {run}: node {victim.index} stopped "
                f"{pause:.1f} s, declared dead by {result['declared_dead_by']}/"
                f"{result['observers']}, largest phi {result['largest_phi']:.2f}"
            )
            # Back to a full view before the next stop; a death needs rounds to undo.
            bench.sleep_until(time.monotonic() + 20 * c.interval)
    return {
        "nodes": size,
        "interval_ms": interval_ms,
        "warmup_seconds": warmup,
        "pause_seconds": pause,
        "acceptable_pause": acceptable_pause,
        "runs": runs,
        "runs_with_a_death": sum(1 for r in results if r["declared_dead_by"]),
        "largest_phi": max((r["largest_phi"] for r in results), default=math.nan),
        "runs_detail": results,
    }


def measure_false_deaths(
    impl: str, size: int, interval_ms: int, minutes: float, poll: float, rng: random.Random
) -> dict[str, Any]:
    with bench.cluster(impl, size, interval_ms, rng=rng) as c:
        names = {n.name for n in c.nodes}
        last: dict[tuple[int, str], str] = {}
        deaths: list[dict[str, Any]] = []
        suspicions = 0
        polls = errors = 0

        def read(observer: NodeProcess) -> dict[str, str] | None:
            try:
                return c.liveness_of_all(observer)
            except (OSError, http.client.HTTPException, RuntimeError, ValueError):
                return None

        load_before = bench.loadavg()
        cpu_before = c.cpu()
        started = time.monotonic()
        end = started + minutes * 60
        next_report = started + 60
        while time.monotonic() < end:
            sweep_start = time.monotonic()
            for observer, view in zip(c.nodes, c.map(read, c.nodes), strict=True):
                polls += 1
                if view is None:
                    errors += 1
                    continue
                for name in names - {observer.name}:
                    state = view.get(name, "absent")
                    before = last.get((observer.index, name))
                    if before == "live" and state in (DEAD | {"absent"}):
                        deaths.append(
                            {
                                "at_seconds": sweep_start - started,
                                "observer": observer.index,
                                "target": name,
                                "state": state,
                            }
                        )
                        bench.log(f"{impl}: false death of {name} seen by node {observer.index}")
                    if before == "live" and state == "suspect":
                        suspicions += 1
                    last[(observer.index, name)] = state
            if time.monotonic() > next_report:
                bench.log(
                    f"{impl} idle: {(time.monotonic() - started) / 60:.1f} min, "
                    f"{len(deaths)} false deaths"
                )
                next_report += 60
            bench.sleep_until(sweep_start + poll)
        elapsed = time.monotonic() - started
        exact: dict[str, int] | None = None
        if impl == bench.SWIM:
            exact = {"suspect": 0, "dead": 0, "live": 0}
            for node in c.nodes:
                _status, body = node.request("/stats")
                for state, count in body["transitions"].items():
                    exact[state] += int(count)
        cpu_after = c.cpu()
        cpu = {i: cpu_after[i] - cpu_before[i] for i in cpu_after}
        load_after = bench.loadavg()
    return {
        "impl": impl,
        "nodes": size,
        "interval_ms": interval_ms,
        "minutes": elapsed / 60,
        "poll_seconds": poll,
        "polls": polls,
        "poll_errors": errors,
        "false_deaths": len(deaths),
        "pairs_affected": len({(d["observer"], d["target"]) for d in deaths}),
        "polled_suspicions": suspicions,
        "swim_counted_transitions": exact,
        "events": deaths,
        "cpu_seconds_per_node_per_minute": statistics.fmean(cpu.values()) / (elapsed / 60),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }


def main() -> int:
    parser = bench.common_parser(
        __doc__.split("\n\n")[0],
        nodes=(10, 100),
        intervals=(1000, 100),
        runs=3,
        name="failure_detection",
        quick_nodes=(3,),
        quick_intervals=(100,),
        quick_runs=1,
    )
    parser.add_argument(
        "--mode", choices=("detect", "false-deaths", "both", "pause"), default="both"
    )
    parser.add_argument(
        "--pause", type=float, default=3.0, help="seconds a node is stopped (pause mode)"
    )
    parser.add_argument(
        "--acceptable-pause",
        type=float,
        help="passed to the nodes in pause mode (default: the nodes' own default)",
    )
    parser.add_argument(
        "--warmup", type=float, help="idle seconds before the first kill (default 30; quick 3)"
    )
    parser.add_argument(
        "--idle-minutes", type=float, help="length of the false-death run (default 10)"
    )
    parser.add_argument("--idle-nodes", type=int, help="nodes of the false-death run (default 10)")
    parser.add_argument(
        "--idle-interval-ms", type=int, help="interval of the false-death run (default 1000)"
    )
    parser.add_argument(
        "--idle-poll", type=float, default=0.5, help="seconds between two reads of a node"
    )
    args = bench.parse_args(parser)
    warmup = args.warmup if args.warmup is not None else (3.0 if args.quick else 30.0)
    idle_minutes = args.idle_minutes or (0.05 if args.quick else 10.0)
    idle_interval_ms = args.idle_interval_ms or (100 if args.quick else 1000)
    idle_nodes = args.idle_nodes or (3 if args.quick else 10)
    rng = random.Random(args.seed)
    impls, skipped = bench.selected_impls(args.impl)
    detection: list[dict[str, Any]] = []
    false_deaths: list[dict[str, Any]] = []
    pauses: list[dict[str, Any]] = []
    payload: dict[str, Any] = {
        "benchmark": "failure_detection",
        "machine": bench.machine_info(),
        "skipped": skipped,
        "detection": detection,
        "false_deaths": false_deaths,
        "pauses": pauses,
    }
    failures: list[dict[str, Any]] = []
    payload["failures"] = failures
    try:
        if args.mode in ("detect", "both"):
            for interval_ms in args.interval_ms:
                for size in args.nodes:
                    for impl in impls:
                        result = bench.attempt(
                            {"impl": impl, "nodes": size, "interval_ms": interval_ms},
                            partial(
                                measure_detection,
                                impl,
                                size,
                                interval_ms,
                                args.runs,
                                warmup,
                                rng,
                            ),
                            failures,
                        )
                        if result is not None:
                            detection.append(result)
        if args.mode == "pause":
            for interval_ms in args.interval_ms:
                for size in args.nodes:
                    result = bench.attempt(
                        {"impl": bench.GOSSIP_TUI, "nodes": size, "mode": "pause"},
                        partial(
                            measure_pauses,
                            size,
                            interval_ms,
                            args.runs,
                            warmup,
                            args.pause,
                            args.acceptable_pause,
                            rng,
                        ),
                        failures,
                    )
                    if result is not None:
                        pauses.append(result)
        if args.mode in ("false-deaths", "both"):
            for impl in impls:
                result = bench.attempt(
                    {"impl": impl, "nodes": idle_nodes, "mode": "false-deaths"},
                    partial(
                        measure_false_deaths,
                        impl,
                        idle_nodes,
                        idle_interval_ms,
                        idle_minutes,
                        args.idle_poll,
                        rng,
                    ),
                    failures,
                )
                if result is not None:
                    false_deaths.append(result)
    finally:
        payload["loadavg_end"] = bench.loadavg()
        if detection:
            bench.print_table(
                "failure detection: seconds from kill -9 until marked dead "
                "(observers pooled over runs; all = last observer of a run)",
                [
                    "impl", "ms", "N", "runs", "obs med", "obs p90", "obs max",
                    "all med", "all max", "all rnd", "load",
                ],
                [
                    (
                        r["impl"],
                        r["interval_ms"],
                        r["nodes"],
                        f"{r['complete_runs']}/{r['runs']}",
                        r["observer_seconds"].get("median"),
                        r["observer_seconds"].get("p90"),
                        r["observer_seconds"].get("max"),
                        r["all_dead_seconds"].get("median"),
                        r["all_dead_seconds"].get("max"),
                        r["all_dead_rounds_median"],
                        " ".join(f"{x:.1f}" for x in r["loadavg_before"]),
                    )
                    for r in detection
                ],
            )  # fmt: skip
        if false_deaths:
            bench.print_table(
                "false deaths in an idle cluster (nobody killed)",
                [
                    "impl", "ms", "N", "minutes", "false deaths", "pairs", "suspicions",
                    "swim exact (suspect/dead)", "cpu s/node/min",
                ],
                [
                    (
                        r["impl"],
                        r["interval_ms"],
                        r["nodes"],
                        r["minutes"],
                        r["false_deaths"],
                        r["pairs_affected"],
                        r["polled_suspicions"],
                        (
                            "{suspect}/{dead}".format(**r["swim_counted_transitions"])
                            if r["swim_counted_transitions"]
                            else "-"
                        ),
                        r["cpu_seconds_per_node_per_minute"],
                    )
                    for r in false_deaths
                ],
            )  # fmt: skip
        if pauses:
            bench.print_table(
                "SIGSTOP at steady state: observers that listed the stopped node dead",
                [
                    "ms", "N", "warm-up s", "stop s", "acceptable pause", "runs",
                    "runs with a death", "largest phi",
                ],
                [
                    (
                        r["interval_ms"],
                        r["nodes"],
                        r["warmup_seconds"],
                        r["pause_seconds"],
                        "default" if r["acceptable_pause"] is None else r["acceptable_pause"],
                        r["runs"],
                        r["runs_with_a_death"],
                        r["largest_phi"],
                    )
                    for r in pauses
                ],
            )  # fmt: skip
        bench.print_failures(failures)
        bench.write_json(args.json, payload)
    return 1 if failures else 0


if __name__ == "__main__":
    bench.run_main(main)
