#!/usr/bin/env python3
"""Start-up cost of one headless node: CPU seconds until it answers, RSS once settled, and
the modules that cost the most to import.

Each run starts ``gossip-tui --headless`` (``python -m gossip_tui``) on a free 127.0.0.1
port, with the HTTP API and with ``--no-http``, and measures:

- CPU until ready: user + system CPU of the node process (``/proc/<pid>/stat``) at the
  moment it first answers a chitchat Syn datagram with a SynAck (and, with HTTP, once
  ``GET /health`` answers too). Python's own start counts: this is what a node costs to
  come up, not only what the package costs.
- CPU until serving: the same, read once it answers a Syn and (with HTTP) accepts a TCP
  connection, before any request: what every node of a fleet pays, whether or not
  anyone asks its API something (the first request builds what it answers with).
- RSS after settle: VmRSS (``/proc/<pid>/status``) ``--settle`` seconds after it is ready,
  and its split (``/proc/<pid>/smaps_rollup``): anonymous (the heap: Python's objects,
  the modules' code among them) and file-backed (the interpreter and the shared libraries,
  whose pages other processes share).
- The floor: the same figures for a bare interpreter that imports Trio and binds one UDP
  socket in ``trio.run`` (what no node can go below), read the same way.
- Instructions (``--instructions``, where valgrind is installed): one more run of each mode
  under callgrind, the instructions the node executed when it answers a Syn (with HTTP: and
  listens on TCP, before any connection, which would start hypercorn) and once it has
  answered its first ``GET /health``, and the floor's once it is ready: figures that do
  not depend on the machine's load, unlike CPU seconds.
- Into a cluster (``--into-cluster N``): N nodes started one after another with node 0
  as their seed, each once the one before answers ``GET /health``
  (``_cluster.Cluster.start_one_by_one``): the CPU each had spent when it first answered,
  node 0's (alone) beside the others' (starting while they gossip with the cluster); then
  the RSS of every node of the settled cluster, split as above.
- Imports: one more run under ``python -X importtime``, the top contributors by cumulative
  microseconds among the modules imported straight from ``gossip_tui`` (and the top
  packages overall), so a regression names its culprit.

The code under test is the repository this script sits in, unless ``PYTHONPATH`` is set:
then it is used as is (``PYTHONPATH=/tmp/perf-before python scripts/bench/startup.py`` to
measure another tree with the same interpreter).

    python scripts/bench/startup.py                 # 10 runs of each mode
    python scripts/bench/startup.py --runs 3 --json out.json
    python scripts/bench/startup.py --against /tmp/before   # A B A B, the same load
    python scripts/bench/startup.py --runs 3 --instructions  # and callgrind's counts
    python scripts/bench/startup.py --runs 3 --into-cluster 30  # and 30 nodes one by one
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import IO, Any

import _cluster as bench

from gossip_tui.core import codec
from gossip_tui.core.messages import Digest, Syn, SynAck

CLUSTER_ID = "testing"
_READY_TIMEOUT = 30.0
_POLL = 0.005


def _tree() -> Path:
    """The tree whose code is measured."""
    explicit = os.environ.get("PYTHONPATH")
    return Path(explicit.split(os.pathsep)[0]) if explicit else bench.REPO


def _env(tree: Path) -> dict[str, str]:
    env = bench.child_env()
    env["PYTHONPATH"] = str(tree)
    return env


def _command(port: int, http: bool, python_flags: Sequence[str] = ()) -> list[str]:
    command = [sys.executable, *python_flags, "-m", "gossip_tui", "--headless"]
    command += ["--listen-addr", f"{bench.HOST}:{port}", "--node-id", f"startup-{port}"]
    return command if http else [*command, "--no-http"]


def _answers_syn(probe: socket.socket, port: int, syn: bytes) -> bool:
    probe.sendto(syn, (bench.HOST, port))
    try:
        data, _ = probe.recvfrom(65_535)
    except (TimeoutError, ConnectionRefusedError):
        return False
    try:
        return isinstance(codec.decode(data), SynAck)
    except codec.DecodeError:
        return False


def _accepts_tcp(port: int) -> bool:
    try:
        with socket.create_connection((bench.HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _listens(port: int) -> bool:
    """Whether a TCP socket listens on ``port`` of 127.0.0.1, read from the kernel's table
    without connecting (a connection would start the node's HTTP server)."""
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return any(row[1] == f"0100007F:{port:04X}" and row[3] == "0A" for row in rows)


def _answers_http(port: int) -> bool:
    conn = http.client.HTTPConnection(bench.HOST, port, timeout=0.5)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _wait_for(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    deadline: float,
    what: str,
    *,
    pause: float = _POLL,
    stderr: IO[bytes] | None = None,
) -> None:
    """Ask ``ready`` until it holds; a RuntimeError ("node never ``what``", with the tail
    of ``stderr`` when given) once the node has exited or ``deadline`` has passed."""
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            tail = ""
            if stderr is not None:
                stderr.seek(0)
                tail = f": {stderr.read()[-2000:]!r}"
            raise RuntimeError(f"node never {what}{tail}")
        if pause:
            time.sleep(pause)


@contextlib.contextmanager
def _ready_node(
    tree: Path, http: bool, stderr: IO[bytes], python_flags: Sequence[str] = ()
) -> Iterator[tuple[subprocess.Popen[bytes], float, float]]:
    """Start one node and wait until it answers a Syn (and, with HTTP, ``GET /health``);
    the process, when it was started, and its CPU seconds once it answered a Syn and
    accepted a TCP connection (with HTTP), before any request. The node is stopped
    (SIGTERM) on leaving."""
    port = bench.allocate_ports(1)[0]
    syn = codec.encode(Syn(CLUSTER_ID, Digest({})))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((bench.HOST, 0))
        probe.settimeout(_POLL)
        started = time.monotonic()
        process = subprocess.Popen(
            _command(port, http, python_flags),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=tree,
            env=_env(tree),
        )
        try:
            deadline = started + _READY_TIMEOUT
            # The probe's timeout paces these asks: no pause between them.
            answers = partial(_answers_syn, probe, port, syn)
            _wait_for(process, answers, deadline, "answered", pause=0, stderr=stderr)
            if http:
                accepts = partial(_accepts_tcp, port)
                _wait_for(process, accepts, deadline, "accepted a TCP connection")
            serving_cpu = bench.cpu_seconds(process.pid)
            if http:
                _wait_for(process, partial(_answers_http, port), deadline, "answered HTTP")
            yield process, started, serving_cpu
        finally:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            if process.poll() is None:
                process.kill()
                process.wait()


def one_run(tree: Path, http: bool, settle: float) -> dict[str, float]:
    """Start one node of ``tree``, wait until it answers, read its CPU; settle, read its
    RSS; stop it."""
    with (
        tempfile.TemporaryFile() as stderr,
        _ready_node(tree, http, stderr) as (process, started, serving_cpu),
    ):
        cpu = bench.cpu_seconds(process.pid)
        wall = time.monotonic() - started
        time.sleep(settle)
        rss = bench.rss_mib(process.pid)
        memory = bench.memory_split_mib(process.pid)
    return {
        "cpu_seconds": cpu,
        "serving_cpu_seconds": serving_cpu,
        "wall_seconds": wall,
        "rss_mib": rss,
        "anonymous_mib": memory["anonymous"],
        "file_mib": memory["file"],
    }


# The floor: an interpreter with Trio running and one UDP socket bound, then idle until
# stdin closes (so that it is measured alive, as a node is).
_FLOOR = """
import sys, trio

async def main():
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    print("ready", flush=True)
    await trio.to_thread.run_sync(sys.stdin.read)

trio.run(main)
"""


def _start_floor(tree: Path, wrapper: Sequence[str] = ()) -> subprocess.Popen[str]:
    """The floor's process (under ``wrapper``, callgrind say), its stdin kept open: closing
    it ends the process."""
    return subprocess.Popen(
        [*wrapper, sys.executable, "-c", _FLOOR],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if wrapper else None,
        cwd=tree,
        env=_env(tree),
        text=True,
    )


def _await_floor(process: subprocess.Popen[str], failure: str) -> IO[str]:
    """Wait until the floor is ready; its stdin, which ends it once closed."""
    assert process.stdout is not None and process.stdin is not None
    if process.stdout.readline().strip() != "ready":
        raise RuntimeError(failure)
    return process.stdin


def floor_run(tree: Path, settle: float) -> dict[str, float]:
    """CPU when the floor is ready, and its RSS ``settle`` seconds later."""
    started = time.monotonic()
    process = _start_floor(tree)
    try:
        stdin = _await_floor(process, "the floor process never got ready")
        cpu = bench.cpu_seconds(process.pid)
        wall = time.monotonic() - started
        time.sleep(settle)
        rss = bench.rss_mib(process.pid)
        memory = bench.memory_split_mib(process.pid)
        stdin.close()
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return {
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "rss_mib": rss,
        "anonymous_mib": memory["anonymous"],
        "file_mib": memory["file"],
    }


def into_cluster(tree: Path, size: int, interval_ms: int, settle: float) -> dict[str, Any]:
    """``size`` nodes of ``tree`` started one by one (each into the cluster of those before
    it): the CPU seconds of each when it first answered HTTP, and the RSS of each once all
    see all live and ``settle`` seconds have passed."""
    with bench.Cluster(bench.GOSSIP_TUI, size, interval_ms, tree=tree) as running:
        running.start_one_by_one()
        cpu_at_answer = [node.cpu_at_answer for node in running.nodes]
        running.wait_membership(time.monotonic() + 60 + size)
        time.sleep(settle)
        memory = [bench.memory_split_mib(node.pid) for node in running.nodes]
    later = cpu_at_answer[1:] or cpu_at_answer
    return {
        "size": size,
        "interval_ms": interval_ms,
        "cpu_at_answer": cpu_at_answer,
        "alone_cpu_seconds": cpu_at_answer[0],
        "joining_cpu_seconds": _summary(later),
        "last_third_cpu_seconds": _summary(later[-max(1, len(later) // 3) :]),
        "memory_mib": {k: _summary([m[k] for m in memory]) for k in memory[0]},
    }


_INSTRUCTIONS_TIMEOUT = 600.0  # a node under callgrind runs some 50 times slower
_CALLGRIND_TOTAL = re.compile(r"^(?:summary|totals): (\d+)", re.M)


def _callgrind_instructions(out_prefix: Path) -> int:
    """Instructions in the dumps callgrind has written so far (each counts from the one
    before)."""
    total = 0
    for dump in out_prefix.parent.glob(out_prefix.name + "*"):
        match = _CALLGRIND_TOTAL.search(dump.read_text(errors="replace"))
        total += int(match[1]) if match else 0
    return total


def instruction_counts(tree: Path, with_http: bool) -> dict[str, int]:
    """One node of ``tree`` under callgrind: its instructions when it answers a Syn (and,
    with HTTP, listens), and after its first ``GET /health`` (with HTTP)."""
    port = bench.allocate_ports(1)[0]
    syn = codec.encode(Syn(CLUSTER_ID, Digest({})))
    with (
        tempfile.TemporaryDirectory() as scratch,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe,
    ):
        out_prefix = Path(scratch) / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_prefix}.%p"]
        process = subprocess.Popen(
            [*command, *_command(port, with_http)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tree,
            env=_env(tree),
        )

        def dump() -> int:
            subprocess.run(
                ["callgrind_control", "--dump", str(process.pid)],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            return _callgrind_instructions(out_prefix)

        probe.bind((bench.HOST, 0))
        probe.settimeout(0.05)
        deadline = time.monotonic() + _INSTRUCTIONS_TIMEOUT
        try:
            answers = partial(_answers_syn, probe, port, syn)
            _wait_for(process, answers, deadline, "answered a Syn under callgrind")
            if with_http:
                listens = partial(_listens, port)
                _wait_for(process, listens, deadline, "listened on TCP under callgrind")
            counts = {"serving_instructions": dump()}
            if with_http:
                conn = http.client.HTTPConnection(bench.HOST, port, timeout=_INSTRUCTIONS_TIMEOUT)
                try:
                    conn.request("GET", "/health")
                    if conn.getresponse().status != 200:
                        raise RuntimeError("the node under callgrind refused GET /health")
                finally:
                    conn.close()
                counts["health_instructions"] = dump()
        finally:
            process.terminate()
            process.wait()
    return counts


def floor_instructions(tree: Path) -> int:
    """The floor under callgrind: its instructions once it is ready (Trio running, its
    socket bound), read as a node's are."""
    with tempfile.TemporaryDirectory() as scratch:
        out_prefix = Path(scratch) / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_prefix}.%p"]
        process = _start_floor(tree, command)
        try:
            stdin = _await_floor(process, "the floor never got ready under callgrind")
            subprocess.run(
                ["callgrind_control", "--dump", str(process.pid)],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            count = _callgrind_instructions(out_prefix)
            stdin.close()
            process.wait(timeout=_INSTRUCTIONS_TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return count


_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def import_profile(tree: Path, http: bool, top: int) -> dict[str, Any]:
    """One run under ``-X importtime``: the costliest top-level imports and packages."""
    with tempfile.TemporaryFile() as stderr:
        with _ready_node(tree, http, stderr, ["-X", "importtime"]):
            pass
        stderr.seek(0)
        text = stderr.read().decode(errors="replace")
    # Only what was imported before shutdown began: the close path imports are not start-up.
    text = text.split("received: shutting down", 1)[0]
    cumulative: dict[str, int] = {}
    self_by_package: dict[str, int] = defaultdict(int)
    for match in _IMPORTTIME.finditer(text):
        own, total, indent, name = int(match[1]), int(match[2]), len(match[3]), match[4]
        self_by_package[name.split(".")[0]] += own
        if indent == 1:
            cumulative[name] = cumulative.get(name, 0) + total
    modules = sorted(self_by_package.items(), key=lambda kv: -kv[1])
    return {
        "top_level": sorted(cumulative.items(), key=lambda kv: -kv[1])[:top],
        "packages_by_self_time": modules[:top],
        "total_import_us": sum(self_by_package.values()),
        "modules": sum(1 for _ in _IMPORTTIME.finditer(text)),
    }


def _summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
    }


def _row(label: str, figures: dict[str, dict[str, float]], modules: object) -> tuple[object, ...]:
    cpu = figures["cpu_seconds"]
    # The floor serves nothing: it is serving once it is ready.
    serving = figures.get("serving_cpu_seconds", cpu)
    return (
        label,
        cpu["median"],
        cpu["min"],
        cpu["max"],
        serving["median"],
        serving["min"],
        figures["wall_seconds"]["median"],
        figures["rss_mib"]["median"],
        figures["anonymous_mib"]["median"],
        figures["file_mib"]["median"],
        modules,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per mode (default 10)")
    parser.add_argument(
        "--settle", type=float, default=2.0, help="seconds after ready before RSS (default 2)"
    )
    parser.add_argument("--top", type=int, default=12, help="import contributors shown")
    parser.add_argument(
        "--against",
        type=Path,
        help="another tree (e.g. an unmodified checkout) measured run for run in turn with "
        "this one (A B A B), so that both see the same load",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count each mode's instructions under callgrind (needs valgrind)",
    )
    parser.add_argument(
        "--into-cluster",
        type=int,
        metavar="N",
        help="also start N nodes one after another, each into the cluster of those before",
    )
    parser.add_argument(
        "--interval-ms", type=int, default=1000, help="gossip interval of --into-cluster"
    )
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    trees = [_tree(), *([args.against.resolve()] if args.against else [])]
    labels = {_tree(): "", **({trees[1]: " (against)"} if args.against else {})}
    bench.log(f"measuring {', '.join(map(str, trees))} with {sys.executable}")
    bench.log(f"load {bench.loadavg()}")
    results: dict[str, Any] = {"tree": str(trees[0]), "loadavg_before": bench.loadavg()}
    if args.against:
        results["against"] = {"tree": str(trees[1])}
    rows = []
    for with_http in (True, False):
        mode = "http" if with_http else "no-http"
        runs: dict[Path, list[dict[str, float]]] = {tree: [] for tree in trees}
        for _ in range(args.runs):
            for tree in trees:
                runs[tree].append(one_run(tree, with_http, args.settle))
        for tree in trees:
            figures = {k: _summary([r[k] for r in runs[tree]]) for k in runs[tree][0]}
            imports = import_profile(tree, with_http, args.top)
            entry = {"runs": runs[tree], "summary": figures, "imports": imports}
            (results if tree == trees[0] else results["against"])[mode] = entry
            rows.append(_row(mode + labels[tree], figures, imports["modules"]))
    floor = [floor_run(trees[0], args.settle) for _ in range(args.runs)]
    floor_figures = {k: _summary([r[k] for r in floor]) for k in floor[0]}
    results["floor"] = {"runs": floor, "summary": floor_figures}
    rows.append(_row("floor: python + trio", floor_figures, ""))
    if args.instructions:
        if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
            parser.error("--instructions needs valgrind (callgrind and callgrind_control)")
        for with_http in (True, False):
            mode = "http" if with_http else "no-http"
            for tree in trees:
                counts = instruction_counts(tree, with_http)
                (results if tree == trees[0] else results["against"])[mode].update(counts)
        results["floor"]["instructions"] = floor_instructions(trees[0])
    if args.into_cluster:
        for tree in trees:
            joined = into_cluster(tree, args.into_cluster, args.interval_ms, args.settle)
            (results if tree == trees[0] else results["against"])["into_cluster"] = joined
    results["loadavg_after"] = bench.loadavg()
    bench.print_table(
        f"start-up of one headless node, {args.runs} runs per mode (median, min, max)",
        [
            "mode",
            "cpu s",
            "min",
            "max",
            "serving s",
            "min",
            "wall s",
            "rss MiB",
            "anon",
            "file",
            "modules",
        ],
        rows,
    )
    for tree in trees:
        for mode in ("http", "no-http"):
            imports = (results if tree == trees[0] else results["against"])[mode]["imports"]
            print(
                f"\n{mode}{labels[tree]}: imports {imports['total_import_us'] / 1e6:.3f} s "
                "(self times summed)"
            )
            print(
                "  top-level, cumulative ms: "
                + ", ".join(f"{name} {us / 1000:.0f}" for name, us in imports["top_level"])
            )
            print(
                "  packages, self ms: "
                + ", ".join(
                    f"{name} {us / 1000:.0f}" for name, us in imports["packages_by_self_time"]
                )
            )
    if args.instructions:
        _report_instructions(trees, labels, results)
    if args.into_cluster:
        _report_into_cluster(trees, labels, results)
    print(f"\nload average before {results['loadavg_before']}, after {results['loadavg_after']}")
    if args.json:
        bench.write_json(args.json, results)
    return 0


def _report_instructions(
    trees: Sequence[Path], labels: dict[Path, str], results: dict[str, Any]
) -> None:
    print("\ninstructions under callgrind (one run each; they do not depend on the load):")
    for tree in trees:
        for mode in ("http", "no-http"):
            entry = (results if tree == trees[0] else results["against"])[mode]
            line = f"  {mode}{labels[tree]}: serving {entry['serving_instructions'] / 1e6:.1f} M"
            if "health_instructions" in entry:
                line += f", after the first /health {entry['health_instructions'] / 1e6:.1f} M"
            print(line)
    print(f"  floor: ready {results['floor']['instructions'] / 1e6:.1f} M")


def _report_into_cluster(
    trees: Sequence[Path], labels: dict[Path, str], results: dict[str, Any]
) -> None:
    for tree in trees:
        joined = (results if tree == trees[0] else results["against"])["into_cluster"]
        joining, last = joined["joining_cpu_seconds"], joined["last_third_cpu_seconds"]
        memory = joined["memory_mib"]
        print(
            f"\ninto a cluster{labels[tree]}: {joined['size']} nodes one by one at "
            f"{joined['interval_ms']} ms; CPU s until answering HTTP: alone "
            f"{joined['alone_cpu_seconds']:.2f}, joining median {joining['median']:.2f} "
            f"(max {joining['max']:.2f}), the last third median {last['median']:.2f}"
        )
        print(
            f"  settled RSS MiB: mean {memory['rss']['mean']:.1f}, max {memory['rss']['max']:.1f}"
            f" (anonymous mean {memory['anonymous']['mean']:.1f}, "
            f"file mean {memory['file']['mean']:.1f})"
        )


if __name__ == "__main__":
    raise SystemExit(main())
