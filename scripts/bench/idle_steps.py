#!/usr/bin/env python3
"""Trio scheduler rounds and task steps per second of one idle gossip-tui node, by task.

Idle CPU per node is mostly a cost per wake-up, and wake-ups can be counted where CPU can
only be timed (noisily, on a shared machine). N-1 headless nodes run as processes (as in
``cost.py``); the probe node runs in a child process through the real command line
(``--headless``) with a Trio instrument that counts, over a ``--window`` after
``--settle`` seconds: scheduler rounds (I/O waits; those with a timeout are the ones that
sleep), steps per task, the CPU time spent inside each task's steps (thread time), and the
process's CPU time and the cyclic collector's runs and CPU time. One JSON line on stdout.

With ``--profile``, cProfile runs only inside the steps of the probe's receive loop (the
idle receive path: recv, decode, engine, reply, events) and the report adds the function
calls per received datagram, in all and for the functions called most (``--top``): a
count, so it can be compared across trees on a loaded machine. Another tree (an older
commit's checkout, say) is measured by running this file with that tree first on
``sys.path`` (``--tree DIR``): its nodes and its probe then run that tree's code.

    python scripts/bench/idle_steps.py                  # 10 nodes, 1 s interval, HTTP on
    python scripts/bench/idle_steps.py --no-http --window 60
    python scripts/bench/idle_steps.py --profile --tree /tmp/before
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _cluster as bench


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10, help="cluster size, the probe included")
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds before counting")
    parser.add_argument("--window", type=float, default=30.0, help="seconds counted")
    parser.add_argument("--no-http", action="store_true", help="the probe serves no HTTP API")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="count function calls per received datagram in the probe's receive loop",
    )
    parser.add_argument("--top", type=int, default=25, help="functions listed with --profile")
    parser.add_argument(
        "--profile-out", help="with --profile: also dump the pstats table here (for pstats)"
    )
    parser.add_argument(
        "--tree", help="run the nodes and the probe from this source tree (default: this one)"
    )
    parser.add_argument("--probe-seed", help=argparse.SUPPRESS)  # set for the child
    return parser


class _Counts:
    """A Trio instrument (duck-typed: trio is imported by the probe only)."""

    def __init__(
        self,
        start: float,
        window: float,
        report: dict[str, Any],
        top: int | None = None,
        profile_out: str | None = None,
    ) -> None:
        self.start, self.end = start, start + window
        self.report = report
        # The node the receive loop belongs to (the loop's ``self``): its datagram counter
        # divides. With --profile: a profiler on for the receive loop's steps only.
        self._node: Any = None
        self._datagrams_before = 0
        self._profiler = cProfile.Profile() if top is not None else None
        self._top = top or 0
        self._profile_out = profile_out
        self.counting = False
        self.done = False
        self.steps: Counter[str] = Counter()
        self.step_cpu: Counter[str] = Counter()
        self.rounds = 0
        self.sleeping_rounds = 0
        self._step_started = 0.0
        # The cyclic collector's runs by generation and the CPU they took: garbage the
        # idle path makes shows up here, not in any one function.
        self.collections: Counter[int] = Counter()
        self.gc_cpu = 0.0
        self._gc_started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if not self.counting:
            return
        if phase == "start":
            self._gc_started = time.thread_time()
        else:
            self.collections[info["generation"]] += 1
            self.gc_cpu += time.thread_time() - self._gc_started

    @staticmethod
    def _label(task: Any) -> str:
        return str(task.name).rsplit(".", 1)[-1]

    def before_task_step(self, task: Any) -> None:
        if self.counting:
            label = self._label(task)
            self.steps[label] += 1
            if label == "_receive_loop" and self._node is None:
                self._node = task.coro.cr_frame.f_locals["self"]
                self._datagrams_before = self._node.stats.datagrams_in
            self._step_started = time.thread_time()
            # Last, so that the profile holds the step and none of this instrument.
            if self._profiler is not None and label == "_receive_loop":
                self._profiler.enable()

    def after_task_step(self, task: Any) -> None:
        if self.counting:
            if self._profiler is not None:
                self._profiler.disable()
            self.step_cpu[self._label(task)] += time.thread_time() - self._step_started

    def before_io_wait(self, timeout: float) -> None:
        now = time.monotonic()
        if not self.counting and not self.done and now >= self.start:
            self.counting = True
            self._began, self._cpu = now, time.process_time()
        elif self.counting and now >= self.end:
            self.counting, self.done = False, True
            self._finish(now - self._began, time.process_time() - self._cpu)
            os.kill(os.getpid(), signal.SIGTERM)  # the headless node stops on SIGTERM
        if self.counting:
            self.rounds += 1
            self.sleeping_rounds += timeout > 0

    def _finish(self, seconds: float, cpu: float) -> None:
        def per_second(count: float) -> float:
            return round(count / seconds, 2)

        def per_minute(value: float) -> float:
            return round(value / seconds * 60, 4)

        self.report.update(
            seconds=round(seconds, 2),
            scheduler_rounds_per_s=per_second(self.rounds),
            sleeping_rounds_per_s=per_second(self.sleeping_rounds),
            task_steps_per_s=per_second(sum(self.steps.values())),
            steps_per_s_by_task={k: per_second(v) for k, v in self.steps.most_common()},
            cpu_s_per_min=per_minute(cpu),
            cpu_in_steps_s_per_min_by_task={
                k: per_minute(v) for k, v in self.step_cpu.most_common()
            },
            gc_collections_per_s_by_generation={
                str(k): per_second(v) for k, v in sorted(self.collections.items())
            },
            gc_cpu_s_per_min=per_minute(self.gc_cpu),
            loadavg=bench.loadavg(),
        )
        if self._node is not None:
            datagrams = self._node.stats.datagrams_in - self._datagrams_before
            self.report.update(
                datagrams_in_per_s=per_second(datagrams),
                # CPU (thread time) in the receive loop's steps per datagram received.
                receive_cpu_us_per_datagram=round(
                    self.step_cpu["_receive_loop"] / max(datagrams, 1) * 1e6, 1
                ),
            )
        if self._profiler is not None:
            self.report.update(self._profile_report())
        print(json.dumps(self.report), flush=True)

    def _profile_report(self) -> dict[str, Any]:
        assert self._profiler is not None
        if self._profile_out:
            self._profiler.dump_stats(self._profile_out)
        node = self._node
        datagrams = 0 if node is None else node.stats.datagrams_in - self._datagrams_before
        # pstats' table: (file, line, function) -> (primitive calls, all calls, ...).
        table = pstats.Stats(self._profiler).stats  # type: ignore[attr-defined]
        calls = Counter(
            {
                f"{Path(file).name}:{function}" if file != "~" else function: row[1]
                for (file, _line, function), row in table.items()
            }
        )
        python_calls = sum(row[1] for (file, _l, _f), row in table.items() if file != "~")
        # Python calls by the module they run in: which layer the calls are spent in.
        by_file: Counter[str] = Counter()
        for (file, _line, _function), row in table.items():
            if file != "~":
                by_file[file.split("site-packages/")[-1].split(str(bench.REPO))[-1]] += row[1]

        def per_datagram(count: int) -> float:
            return round(count / max(datagrams, 1), 2)

        return {
            "profiler": "cProfile",
            "datagrams_profiled": datagrams,
            "calls_per_datagram": per_datagram(sum(calls.values())),
            "python_calls_per_datagram": per_datagram(python_calls),
            "python_calls_per_datagram_by_file": {
                name: per_datagram(count) for name, count in by_file.most_common(self._top)
            },
            "top_calls_per_datagram": {
                name: per_datagram(count) for name, count in calls.most_common(self._top)
            },
        }


def _free_port() -> int:
    # A port free for UDP (gossip) and TCP (the API on the same port).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((bench.HOST, 0))
        port = int(udp.getsockname()[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind((bench.HOST, port))
    return port


def _probe(args: argparse.Namespace) -> int:
    if args.tree:
        sys.path.insert(0, args.tree)  # ahead of this repository, which _cluster put first
    import trio

    from gossip_tui import cli
    from gossip_tui.cli import main

    report: dict[str, Any] = {"nodes": args.nodes, "http": not args.no_http}
    if args.tree:
        report["tree"] = args.tree
    top = args.top if args.profile else None
    counts = _Counts(time.monotonic() + args.settle, args.window, report, top, args.profile_out)
    run = trio.run

    def instrumented_run(*fn_args: Any, **kwargs: Any) -> Any:
        return run(*fn_args, instruments=[counts], **kwargs)

    trio.run = instrumented_run  # type: ignore[assignment]  # the CLI's own trio.run
    argv = [
        "--headless",
        "--listen-addr", f"{bench.HOST}:{_free_port()}",
        "--node-id", "probe",
        "--interval-ms", str(args.interval_ms),
        "--seed", args.probe_seed,
    ]  # fmt: skip
    # Quiet, where the command line has the option (older trees, measured with --tree,
    # log at info; an idle node logs nothing at that level either).
    if "--log-level" in Path(cli.__file__).read_text():
        argv += ["--log-level", "warning"]
    if args.no_http:
        argv.append("--no-http")
    return main(argv)


def main() -> int:
    args = _parser().parse_args()
    if args.probe_seed:
        return _probe(args)
    if args.tree:
        bench.REPO = Path(args.tree).resolve()  # where the nodes start, first on their path
    with bench.cluster(bench.GOSSIP_TUI, args.nodes - 1, args.interval_ms) as c:
        seed = f"{bench.HOST}:{c.nodes[0].gossip_port}"
        command = [sys.executable, __file__, *sys.argv[1:], "--probe-seed", seed]
        probe = subprocess.run(
            command, cwd=bench.REPO, env=bench.child_env(), timeout=120 + args.settle + args.window
        )
    return probe.returncode


if __name__ == "__main__":
    raise SystemExit(main())
