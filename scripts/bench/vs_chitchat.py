#!/usr/bin/env python3
"""Side by side with chitchat: N chitchat-test processes, then N gossip-tui headless
processes, with the same settings, and one table of what each cluster costs and how fast
it reacts.

chitchat-test is chitchat's own test server (in the chitchat repository, built with cargo;
not part of this project), given by path. The two clusters run one after the other, never
together, with the same layout: every address on 127.0.0.1, node 0 the seed of every other
node, the same gossip interval (1 s by default), and gossip-tui given chitchat-test's fixed
settings (dead-node grace period 10 s, marked-for-deletion grace period 60 s) and, unless
``--acceptable-pause`` says otherwise, chitchat's liveness rule (no silence tolerated on top
of the phi threshold; gossip-tui's own default tolerates 3 s more). Both kinds
answer chitchat-test's ``GET /`` (cluster_state, live_nodes, dead_nodes), and every view
below is read through it, so both are observed the same way. Per cluster, in order:

1. join: seconds from the first spawn until every node lists all N live (and from the
   moment every node answers HTTP, which leaves out the start-up of the processes). Node 0
   is started first, the others once it answers; each node is then asked by a thread of
   its own until it answers (every 0.1 s while it refuses the connection; a node that is
   listening keeps the request until it answers), so no node's slow first answer delays
   the harness's look at another, and each figure is the node's own. Then every node's
   view is read (all at once from the pool) every 0.5 s until it counts N live. Beside
   the join: seconds until each node first answered (median / max), the CPU each node had
   used by then (its start-up, the first request included), and the CPU of all nodes
   together when the last one answered and at the join, from ``/proc/<pid>/stat``;
2. after ``--settle`` seconds, an idle ``--window``: CPU per node (user + system from
   ``/proc/<pid>/stat`` at the window's edges, as seconds per minute), RSS per node
   (``VmRSS``), and the bytes and datagrams each node sent per round (round = one gossip
   interval; window / interval rounds). gossip-tui counts them itself (``GET /metrics``).
   chitchat-test counts nothing, so each chitchat node runs under ``strace`` (its parent;
   no root), which logs every ``sendto`` that carries an address, that is every UDP
   datagram, with the bytes the kernel took: an exact count, not an estimate. The tracee
   stops only at those calls (seccomp filter), about ten a second per node, so its CPU
   figure grows by a little kernel time; without strace the chitchat traffic is left out;
3. ``--runs`` times, a key set on a random node (``/set_kv/``): seconds until every other
   node's view shows its value;
4. ``--runs`` times (at most N - 2), ``kill -9`` of a random node other than the seed:
   seconds until it is gone from every survivor's live list.

Views are polled every 0.2 s at most, so each figure is late by up to one sweep.

    python scripts/bench/vs_chitchat.py --chitchat-test PATH/TO/chitchat-test
    python scripts/bench/vs_chitchat.py --chitchat-test PATH --nodes 100 --window 120
    python scripts/bench/vs_chitchat.py --chitchat-test PATH --quick    # a smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import math
import os
import random
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import _cluster as bench
from _cluster import Cluster, NodeProcess
from convergence import poll_period
from cost import _window as measure_window

CHITCHAT = "chitchat"
GOSSIP_TUI = bench.GOSSIP_TUI
# chitchat-test's fixed settings, given to the gossip-tui nodes too.
GOSSIP_TUI_SETTINGS = ("--dead-node-grace-period", "10", "--marked-for-deletion-grace-period", "60")
STRACE = shutil.which("strace")
SETPRIV = shutil.which("setpriv")
TRACEE_START_TIMEOUT = 5.0


# --------------------------------------------------------------------------- strace counts


# One strace line: "PID sendto(FD, "", LEN, FLAGS, {sa_family=AF_INET, ...}, 16) = SENT". A
# TCP send has no address ("NULL, 0"). When two threads are in sendto at once, strace
# splits a call into "... <unfinished ...>" and "PID <... sendto resumed>...) = SENT".
_CALL = re.compile(r"^(\d+)\s+sendto\((.*)$")
_RESUMED = re.compile(r"^(\d+)\s+<\.\.\. sendto resumed>.*\)\s+=\s+(-?\d+)")
_RETURN = re.compile(r"\)\s+=\s+(-?\d+)")


def count_datagrams(lines: Iterable[str]) -> tuple[int, int]:
    """(bytes, datagrams) of the UDP sends in an ``strace -e trace=sendto`` log: the calls
    with a destination address that the kernel took (a failed call returns -1)."""
    sent_bytes = datagrams = 0
    unfinished: dict[str, bool] = {}  # thread -> whether its pending sendto has an address
    for line in lines:
        if match := _RESUMED.match(line):
            pid, result = match.groups()
            if unfinished.pop(pid, False) and int(result) >= 0:
                sent_bytes += int(result)
                datagrams += 1
            continue
        match = _CALL.match(line)
        if match is None:
            continue
        pid, rest = match.groups()
        has_address = "sa_family=" in rest
        if rest.endswith("<unfinished ...>"):
            unfinished[pid] = has_address
            continue
        returned = _RETURN.search(rest)
        if has_address and returned is not None and int(returned.group(1)) >= 0:
            sent_bytes += int(returned.group(1))
            datagrams += 1
    return sent_bytes, datagrams


# --------------------------------------------------------------------------- chitchat nodes


class ChitchatNode(NodeProcess):
    """A chitchat-test node. Under strace the Popen is strace's; the node itself, whose
    CPU and memory are read and which is killed, is strace's child."""

    def __init__(self, node: NodeProcess) -> None:
        super().__init__(node.index, node.name, node.gossip_port, node.http_port)
        self.tracee_pid: int | None = None
        self.trace_path: Path | None = None

    @property
    def pid(self) -> int:
        return self.tracee_pid if self.tracee_pid is not None else super().pid


class ChitchatCluster(Cluster):
    """N chitchat-test nodes in the layout of a gossip-tui cluster: one port per node for
    UDP and HTTP, names node-0..node-N-1, node 0 the seed."""

    # chitchat-test has no /health; its GET / answers as soon as the node is up.
    answering_path = "/"

    def __init__(
        self, binary: str, size: int, interval_ms: int, *, count_traffic: bool, **kwargs: Any
    ) -> None:
        super().__init__(GOSSIP_TUI, size, interval_ms, **kwargs)
        self.impl = CHITCHAT
        self.workdir = self.workdir.rename(
            self.workdir.with_name(self.workdir.name.replace(GOSSIP_TUI, CHITCHAT, 1))
        )
        self.binary = binary
        self.count_traffic = count_traffic
        self.nodes = [ChitchatNode(node) for node in self.nodes]

    def command(self, node: NodeProcess) -> list[str]:
        address = f"{bench.HOST}:{node.gossip_port}"
        command = [
            self.binary,
            *("--listen_addr", address, "--node_id", node.name),
            *("--interval_ms", str(self.interval_ms)),
        ]
        if node.index > 0:
            command += ["--seed", f"{bench.HOST}:{self.nodes[0].gossip_port}"]
        if not self.count_traffic:
            return command
        assert STRACE is not None and SETPRIV is not None
        assert isinstance(node, ChitchatNode)
        node.trace_path = self.workdir / f"node-{node.index}.strace"
        return [
            *(STRACE, "--seccomp-bpf", "-f", "-qq", "-s", "0"),
            *("-e", "trace=sendto", "-e", "signal=none", "-o", str(node.trace_path)),
            # The node dies with strace: a killed harness leaves no node behind.
            *(SETPRIV, "--pdeathsig", "KILL", "--"),
            *command,
        ]

    def _spawn(self, node: NodeProcess) -> None:
        super()._spawn(node)
        if self.count_traffic:
            assert isinstance(node, ChitchatNode) and node.process is not None
            node.tracee_pid = _child_of(node.process.pid, TRACEE_START_TIMEOUT)

    def live_count(self, observer: NodeProcess) -> int | None:
        view = read_view(observer)
        return None if view is None else len(view["live_nodes"])

    def traffic(self, node: NodeProcess) -> tuple[int, int, int | None]:
        """(bytes, datagrams, None) the node sent so far, from its strace log; (0, 0, None)
        when not counted."""
        assert isinstance(node, ChitchatNode)
        if node.trace_path is None:
            return 0, 0, None
        with node.trace_path.open(errors="replace") as log:
            sent_bytes, datagrams = count_datagrams(log)
        return sent_bytes, datagrams, None

    def stop(self) -> None:
        # strace neither forwards SIGTERM to the node nor ends while it runs: stop the
        # nodes themselves, and strace exits with them.
        for node in self.nodes:
            if isinstance(node, ChitchatNode) and node.tracee_pid is not None and node.alive():
                with contextlib.suppress(OSError):
                    os.kill(node.tracee_pid, signal.SIGTERM)
        super().stop()


def _child_of(pid: int, timeout: float) -> int:
    """strace's tracee, once it has left strace behind: strace (pid ``pid``) may first fork
    a short-lived child of its own to probe the seccomp filter, which is never exec'd."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            for child in children.read_text().split():
                if Path(f"/proc/{child}/comm").read_text().strip() != "strace":
                    return int(child)
        time.sleep(0.01)
    raise RuntimeError(f"strace (pid {pid}) started no node within {timeout} s")


# --------------------------------------------------------------------------- views


def read_view(node: NodeProcess) -> dict[str, Any] | None:
    """The node's ``GET /`` (chitchat-test's route, served by both), or None when it did
    not answer."""
    try:
        status, body = node.request("/")
    except (OSError, http.client.HTTPException, ValueError):
        return None
    return dict(body) if status == 200 and isinstance(body, dict) else None


def live_names(view: dict[str, Any]) -> set[str]:
    return {str(node["node_id"]) for node in view["live_nodes"]}


def value_of(view: dict[str, Any], name: str, key: str) -> str | None:
    for state in view["cluster_state"]["node_states"]:
        if state["chitchat_id"]["node_id"] == name:
            entry = state["key_values"].get(key)
            return None if entry is None else str(entry["value"])
    return None


def until_every(
    c: Cluster,
    observers: Sequence[NodeProcess],
    holds: Callable[[dict[str, Any]], bool],
    started: float,
    timeout: float,
) -> dict[int, float]:
    """Poll every observer's view until ``holds`` is true of it; seconds from ``started``
    to each observer's first view where it held (those that never did are missing)."""
    period = poll_period(c.interval)
    seen: dict[int, float] = {}

    def look(observer: NodeProcess) -> float | None:
        view = read_view(observer)
        return time.monotonic() if view is not None and holds(view) else None

    deadline = started + timeout
    while len(seen) < len(observers) and time.monotonic() < deadline:
        sweep_start = time.monotonic()
        pending = [o for o in observers if o.index not in seen]
        for observer, when in zip(pending, c.map(look, pending), strict=True):
            if when is not None:
                seen[observer.index] = when - started
        if len(seen) < len(observers):
            bench.sleep_until(sweep_start + period)
    return seen


def spread(c: Cluster, rng: random.Random, run: int, timeout: float) -> dict[str, Any]:
    """A key set on a random node: seconds until every other node shows its value."""
    writer = rng.choice(c.live)
    key, value = f"vs-chitchat-{run}", f"{run}-{rng.getrandbits(32):08x}"
    observers = [n for n in c.live if n is not writer]
    started = time.monotonic()
    c.set_kv(writer, key, value)
    seen = until_every(
        c, observers, lambda view: value_of(view, writer.name, key) == value, started, timeout
    )
    complete = len(seen) == len(observers)
    return {
        "writer": writer.index,
        "reached": len(seen),
        "observers": len(observers),
        "complete": complete,
        "seconds": max(seen.values()) if complete and seen else math.nan,
    }


def kill_and_watch(c: Cluster, rng: random.Random, timeout: float) -> dict[str, Any]:
    """kill -9 of a random node other than the seed: seconds until no survivor lists it
    live."""
    victim = rng.choice([n for n in c.live if n.index != 0])
    observers = [n for n in c.live if n is not victim]
    killed = c.kill(victim)
    seen = until_every(
        c, observers, lambda view: victim.name not in live_names(view), killed, timeout
    )
    complete = len(seen) == len(observers)
    return {
        "victim": victim.index,
        "gone_on": len(seen),
        "observers": len(observers),
        "complete": complete,
        "seconds": max(seen.values()) if complete and seen else math.nan,
        "first_seconds": min(seen.values()) if seen else math.nan,
    }


# --------------------------------------------------------------------------- one cluster


def measure(c: Cluster, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    """Everything the table shows, for one cluster (started here, stopped by the caller)."""
    began = time.monotonic()
    join = c.start()
    after_up = began + join - c.started_at
    time.sleep(args.settle)
    idle = measure_window(c, args.window, 0)
    counted = not isinstance(c, ChitchatCluster) or c.count_traffic
    if not counted:
        idle["traffic"] = None
    bench.log(
        f"{c.impl} N={c.size}: joined in {join:.1f} s, idle "
        f"{idle['cpu_seconds_per_node_per_minute']['mean']:.3f} CPU s/node/min, "
        f"{idle['rss_mib']['mean']:.1f} MiB"
    )
    key_timeout = max(30.0, 60 * c.interval)
    spreads = []
    for run in range(args.runs):
        spreads.append(spread(c, rng, run, key_timeout))
        bench.log(f"{c.impl}: key {run} on every node after {spreads[-1]['seconds']:.2f} s")
        time.sleep(2 * c.interval + rng.random() * c.interval)
    kill_timeout = max(60.0, 100 * c.interval)
    kills = []
    for _run in range(min(args.runs, c.size - 2)):
        kills.append(kill_and_watch(c, rng, kill_timeout))
        bench.log(
            f"{c.impl}: node {kills[-1]['victim']} gone from every live list after "
            f"{kills[-1]['seconds']:.2f} s"
        )
        time.sleep(3 * c.interval + rng.random() * c.interval)
    return {
        "impl": c.impl,
        "nodes": c.size,
        "interval_ms": c.interval_ms,
        "join_seconds": join,
        "join_after_up_seconds": after_up,
        "spawn_seconds": c.spawned_at - c.began,
        "answering_seconds": bench.summarize([n.answered_at - c.began for n in c.nodes]),
        "startup_cpu_seconds": bench.summarize([n.cpu_at_answer for n in c.nodes]),
        "cpu_seconds_all_nodes_answering": c.cpu_when_answering,
        "cpu_seconds_all_nodes_joined": c.cpu_when_joined,
        "idle": idle,
        "traffic_counted_by": (
            "GET /metrics" if c.impl == GOSSIP_TUI else ("strace sendto" if counted else None)
        ),
        "spread_seconds": bench.summarize([r["seconds"] for r in spreads if r["complete"]]),
        "spread_runs": spreads,
        "gone_seconds": bench.summarize([r["seconds"] for r in kills if r["complete"]]),
        "kill_runs": kills,
        "loadavg_after": bench.loadavg(),
    }


def _incomplete(result: dict[str, Any]) -> list[str]:
    problems = []
    for what, runs in (("key", result["spread_runs"]), ("kill", result["kill_runs"])):
        problems += [
            f"{result['impl']} {what} run {i}" for i, r in enumerate(runs) if not r["complete"]
        ]
    return problems


# --------------------------------------------------------------------------- the table


def _median_max(summary: dict[str, Any]) -> tuple[object, object]:
    return summary.get("median"), summary.get("max")


def table_rows(results: Sequence[dict[str, Any]]) -> list[tuple[object, ...]]:
    """One row per measure, one column per implementation (median / max where it runs
    several times)."""

    def cell(result: dict[str, Any], pick: Callable[[dict[str, Any]], object]) -> str:
        value = pick(result)
        if isinstance(value, tuple):
            return " / ".join(bench.fmt(v) for v in value)
        return bench.fmt(value, 3 if isinstance(value, float) and abs(value) < 1 else 2)

    def traffic(result: dict[str, Any], field: str) -> object:
        counted = result["idle"]["traffic"]
        return None if counted is None else counted[field]

    measures: list[tuple[str, Callable[[dict[str, Any]], object]]] = [
        ("join: all N live everywhere, s from first spawn", lambda r: r["join_seconds"]),
        ("join, s from every node answering HTTP", lambda r: r["join_after_up_seconds"]),
        (
            "node answers HTTP, s from first spawn (median / max)",
            lambda r: _median_max(r["answering_seconds"]),
        ),
        (
            "CPU per node until it answers, s (median / max)",
            lambda r: _median_max(r["startup_cpu_seconds"]),
        ),
        (
            "CPU of all nodes, s: last one answering / joined",
            lambda r: (r["cpu_seconds_all_nodes_answering"], r["cpu_seconds_all_nodes_joined"]),
        ),
        (
            "idle CPU per node, s/min (mean / max)",
            lambda r: (
                r["idle"]["cpu_seconds_per_node_per_minute"]["mean"],
                r["idle"]["cpu_seconds_per_node_per_minute"]["max"],
            ),
        ),
        (
            "RSS per node, MiB (mean / max)",
            lambda r: (r["idle"]["rss_mib"]["mean"], r["idle"]["rss_mib"]["max"]),
        ),
        (
            "key set on one node reaches all, s (median / max)",
            lambda r: _median_max(r["spread_seconds"]),
        ),
        (
            "kill -9: gone from every live list, s (median / max)",
            lambda r: _median_max(r["gone_seconds"]),
        ),
        ("bytes sent per node per round", lambda r: traffic(r, "bytes_per_node_per_interval")),
        (
            "datagrams sent per node per round",
            lambda r: traffic(r, "datagrams_per_node_per_interval"),
        ),
    ]
    return [(name, *(cell(r, pick) for r in results)) for name, pick in measures]


def print_results(results: Sequence[dict[str, Any]], args: argparse.Namespace) -> None:
    if not results:
        return
    bench.print_table(
        f"chitchat-test vs gossip-tui: N={args.nodes}, {args.interval_ms} ms, idle window "
        f"{args.window:.0f} s, {args.runs} key / kill runs",
        ["measure", *(r["impl"] for r in results)],
        table_rows(results),
    )
    for result in results:
        if result["idle"]["traffic"] is None:
            why = "--no-strace" if args.no_strace else "strace or setpriv missing"
            print(f"{result['impl']}: traffic not counted ({why})")
    print(f"gossip-tui nodes ran with --acceptable-pause {args.acceptable_pause:g}")


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chitchat-test", required=True, help="path to a chitchat-test binary")
    parser.add_argument("--nodes", type=int, help="nodes per cluster (default 10; quick 3)")
    parser.add_argument("--interval-ms", type=int, help="gossip interval (default 1000; quick 300)")
    parser.add_argument("--window", type=float, help="idle window, s (default 60; quick 2)")
    parser.add_argument(
        "--settle", type=float, help="s between joining and the window (default 10; quick 0.5)"
    )
    parser.add_argument("--runs", type=int, help="key and kill runs (default 3; quick 1)")
    parser.add_argument(
        "--acceptable-pause",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="given to the gossip-tui nodes (default 0: chitchat's rule; gossip-tui's own is 3)",
    )
    parser.add_argument(
        "--no-strace", action="store_true", help="do not count chitchat's datagrams with strace"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=bench.RESULTS_DIR / "vs_chitchat.json",
        metavar="OUT",
        help="where to write the results (default bench-results/vs_chitchat.json)",
    )
    parser.add_argument("--quick", action="store_true", help="3 nodes, short waits: a smoke test")
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    quick = args.quick
    args.nodes = args.nodes or (3 if quick else 10)
    args.interval_ms = args.interval_ms or (300 if quick else 1000)
    args.window = args.window or (2.0 if quick else 60.0)
    args.settle = args.settle if args.settle is not None else (0.5 if quick else 10.0)
    args.runs = args.runs if args.runs is not None else (1 if quick else 3)
    if args.nodes < 3:
        parser.error("--nodes: at least 3 (a kill leaves two nodes to watch)")
    if not Path(args.chitchat_test).is_file():
        parser.error(f"no chitchat-test binary at {args.chitchat_test}")
    return args


def main() -> int:
    args = parse_args()
    rng = random.Random(args.seed)
    count_traffic = not args.no_strace and STRACE is not None and SETPRIV is not None
    if not count_traffic and not args.no_strace:
        bench.log("no strace or setpriv here: chitchat's traffic is not counted")
    results: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    payload: dict[str, Any] = {
        "benchmark": "vs_chitchat",
        "machine": bench.machine_info(),
        "chitchat_test": str(Path(args.chitchat_test).resolve()),
        "settings": {
            "nodes": args.nodes,
            "interval_ms": args.interval_ms,
            "window_seconds": args.window,
            "settle_seconds": args.settle,
            "runs": args.runs,
            "gossip_tui_acceptable_pause": args.acceptable_pause,
        },
        "results": results,
        "failures": failures,
    }
    makers: list[tuple[str, Callable[[], Cluster]]] = [
        (
            CHITCHAT,
            lambda: ChitchatCluster(
                args.chitchat_test, args.nodes, args.interval_ms,
                count_traffic=count_traffic, rng=rng,
            ),
        ),
        (
            GOSSIP_TUI,
            lambda: Cluster(
                GOSSIP_TUI, args.nodes, args.interval_ms, rng=rng,
                extra_args=[
                    *GOSSIP_TUI_SETTINGS, "--acceptable-pause", str(args.acceptable_pause)
                ],
            ),
        ),
    ]  # fmt: skip
    try:
        for impl, make in makers:
            # The tail of the previous cluster must not weigh on this one.
            bench.settle_load(0.0 if args.quick else None)
            try:
                with make() as c:
                    result = measure(c, args, rng)
            except (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as exc:
                bench.log(f"FAILED {impl}: {exc!r}")
                failures.append({"impl": impl, "error": repr(exc)})
                continue
            results.append(result)
            failures += [{"impl": impl, "error": f"{p} incomplete"} for p in _incomplete(result)]
    finally:
        payload["loadavg_end"] = bench.loadavg()
        print_results(results, args)
        bench.print_failures(failures)
        bench.write_json(args.json, payload)
    return 1 if failures else 0


if __name__ == "__main__":
    bench.run_main(main)
