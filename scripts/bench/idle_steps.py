#!/usr/bin/env python3
"""Trio scheduler rounds and task steps per second of one idle gossip-tui node, by task.

Idle CPU per node is mostly a cost per wake-up, and wake-ups can be counted where CPU can
only be timed (noisily, on a shared machine). N-1 headless nodes run as processes (as in
``cost.py``); the probe node runs in a child process through the real command line
(``--headless``) with a Trio instrument that counts, over a ``--window`` after
``--settle`` seconds: scheduler rounds (I/O waits; those with a timeout are the ones that
sleep), steps per task, the CPU time spent inside each task's steps (thread time), and the
process's CPU time. One JSON line on stdout.

    python scripts/bench/idle_steps.py                  # 10 nodes, 1 s interval, HTTP on
    python scripts/bench/idle_steps.py --no-http --window 60
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import _cluster as bench


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10, help="cluster size, the probe included")
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds before counting")
    parser.add_argument("--window", type=float, default=30.0, help="seconds counted")
    parser.add_argument("--no-http", action="store_true", help="the probe serves no HTTP API")
    parser.add_argument("--probe-seed", help=argparse.SUPPRESS)  # set for the child
    return parser


class _Counts:
    """A Trio instrument (duck-typed: trio is imported by the probe only)."""

    def __init__(self, start: float, window: float, report: dict[str, Any]) -> None:
        self.start, self.end = start, start + window
        self.report = report
        self.counting = False
        self.done = False
        self.steps: Counter[str] = Counter()
        self.step_cpu: Counter[str] = Counter()
        self.rounds = 0
        self.sleeping_rounds = 0
        self._step_started = 0.0

    @staticmethod
    def _label(task: Any) -> str:
        return str(task.name).rsplit(".", 1)[-1]

    def before_task_step(self, task: Any) -> None:
        if self.counting:
            self.steps[self._label(task)] += 1
            self._step_started = time.thread_time()

    def after_task_step(self, task: Any) -> None:
        if self.counting:
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
            loadavg=bench.loadavg(),
        )
        print(json.dumps(self.report), flush=True)


def _free_port() -> int:
    # A port free for UDP (gossip) and TCP (the API on the same port).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((bench.HOST, 0))
        port = int(udp.getsockname()[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind((bench.HOST, port))
    return port


def _probe(args: argparse.Namespace) -> int:
    import trio

    from gossip_tui.cli import main

    report: dict[str, Any] = {"nodes": args.nodes, "http": not args.no_http}
    counts = _Counts(time.monotonic() + args.settle, args.window, report)
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
        "--log-level", "warning",
    ]  # fmt: skip
    if args.no_http:
        argv.append("--no-http")
    return main(argv)


def main() -> int:
    args = _parser().parse_args()
    if args.probe_seed:
        return _probe(args)
    with bench.cluster(bench.GOSSIP_TUI, args.nodes - 1, args.interval_ms) as c:
        seed = f"{bench.HOST}:{c.nodes[0].gossip_port}"
        command = [sys.executable, __file__, *sys.argv[1:], "--probe-seed", seed]
        probe = subprocess.run(
            command, cwd=bench.REPO, env=bench.child_env(), timeout=120 + args.settle + args.window
        )
    return probe.returncode


if __name__ == "__main__":
    raise SystemExit(main())
