"""What the benchmark scripts share: clusters of real node processes on 127.0.0.1.

A :class:`Cluster` starts N nodes of one implementation as separate processes, every
address on 127.0.0.1, node 0 being every other node's seed:

* ``gossip-tui``: ``python -m gossip_tui --headless`` (gossip over UDP and the HTTP API over
  TCP on the same port), exactly as an operator runs it;
* ``swim``: a member of the swim-protocol package (PyPI, import name ``swimprotocol``) run
  by ``_swim_member.py`` beside this file, which answers the few HTTP routes used here in
  the same JSON shapes as gossip-tui (``/health``, ``/nodes``, ``/nodes/{name}``,
  ``/set_kv/``).

The harness reads every node's view through those HTTP APIs, over one keep-alive
connection per node, from a single thread pool. CPU time and RSS come from
``/proc/<pid>/stat`` and ``/proc/<pid>/status``.

What :meth:`Cluster.start` measures (the join): the seconds from spawning node 0 until
every node counts all N live. Node 0 is started first and the others once it answers;
then each node is asked by a thread of its own until it first answers HTTP, so the
harness adds to no node's figure the time another takes to give its first answer (a
gossip-tui node starts its HTTP server on its first connection, which takes a while on a
machine busy with starting interpreters). A node that is not listening yet refuses at
once and is asked again 0.1 s later; one that listens keeps the request until it answers,
which costs the harness no CPU. Once every node answers, every node's view is read every
0.5 s until it counts N live: the join is late by up to that.

Every cluster is a context manager that kills its processes on exit; :func:`run_main` turns
SIGTERM into the same clean exit as Ctrl-C, and an ``atexit`` hook kills whatever is left.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import http.client
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
HOST = "127.0.0.1"
RESULTS_DIR = REPO / "bench-results"
GOSSIP_TUI = "gossip-tui"
SWIM = "swim"
IMPLS = (GOSSIP_TUI, SWIM)
# Ports are taken below the kernel's ephemeral range (32768-60999 by default), so that an
# outgoing connection cannot grab a node's port between our check and its bind.
_PORT_LOW, _PORT_HIGH = 20_000, 32_000
_CLK_TCK = os.sysconf("SC_CLK_TCK")
# How long a script waits for the machine to calm down before each configuration (0 with
# --quick: a smoke test measures nothing).
_SETTLE_LIMIT = 60.0

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# --------------------------------------------------------------------------- environment


def child_env(tree: Path = REPO) -> dict[str, str]:
    """The environment of every node: ``tree`` (this repository) importable first, no stray
    settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GOSSIP_TUI_", "SWIM_")) and "proxy" not in k.lower()
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    # Nodes run from cached bytecode, as an installed package does: with this set (some
    # shells set it) every node start compiles the package again, ~0.07 s of CPU each.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # The one setting a run may pass on: the protocol version its nodes initiate with.
    if "BENCH_PROTOCOL_VERSION" in os.environ:
        env["GOSSIP_TUI_PROTOCOL_VERSION"] = os.environ["BENCH_PROTOCOL_VERSION"]
    return env


def swim_missing() -> str | None:
    """Why swim-protocol cannot be benchmarked here, or None when it can."""
    try:
        import swimprotocol.udp  # noqa: F401
    except ImportError as exc:
        return f"swim-protocol is not installed ({exc}); pip install -e '.[bench]'"
    return None


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "loadavg": list(os.getloadavg()),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "argv": sys.argv,
    }
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    if swim_missing() is None:
        from importlib.metadata import version

        info["swim_protocol"] = version("swim-protocol")
    return info


def loadavg() -> list[float]:
    """The 1, 5 and 15-minute load averages. They lag: right after a heavy run the 1-minute
    figure stays high for a minute or two while the machine is already idle."""
    return [round(x, 2) for x in os.getloadavg()]


def runnable() -> int:
    """Processes runnable right now (the numerator of /proc/loadavg's fourth field)."""
    try:
        return int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return -1


def settle_load(limit: float | None = None) -> None:
    """Wait (at most ``limit`` seconds) until no more processes are runnable than there are
    CPUs, three looks in a row: the tail of a previous heavy cluster must not weigh on the
    next measurement. Other users of the machine may keep it busy: then it gives up."""
    cpus = os.cpu_count() or 1
    calm = 0
    deadline = time.monotonic() + (_SETTLE_LIMIT if limit is None else limit)
    while calm < 3 and time.monotonic() < deadline:
        calm = calm + 1 if runnable() <= cpus + 1 else 0
        time.sleep(0.5)


# --------------------------------------------------------------------------- ports


def _bindable(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            if kind == socket.SOCK_STREAM:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, port))
            except OSError:
                return False
    return True


def allocate_ports(count: int, rng: random.Random | None = None) -> list[int]:
    """``count`` ports free on 127.0.0.1 for both UDP and TCP, from a random start."""
    rng = rng or random.Random()
    span = _PORT_HIGH - _PORT_LOW
    start = rng.randrange(span)
    ports: list[int] = []
    for offset in range(span):
        port = _PORT_LOW + (start + offset) % span
        if _bindable(port):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError(f"could not find {count} free ports on {HOST}")


# --------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # After "pid (comm)": state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def memory_split_mib(pid: int) -> dict[str, float]:
    """RSS of a process split as ``/proc/<pid>/smaps_rollup`` splits it, in MiB: ``rss``,
    ``anonymous`` (the heap, Python's objects and arenas among it) and ``file`` (mapped
    files: the interpreter, shared libraries, a share of them with every other process)."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            fields[name] = int(value.split()[0]) / 1024
    rss, anonymous = fields.get("Rss", math.nan), fields.get("Anonymous", math.nan)
    return {"rss": rss, "anonymous": anonymous, "file": rss - anonymous}


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(values: Sequence[float]) -> dict[str, float | int]:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "min": min(values),
        "median": statistics.median(values),
        "p90": percentile(values, 0.9),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def fmt(value: object, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}f}"
    return str(value)


def print_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    text_rows = [[fmt(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in text_rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    sys.stdout.flush()


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"\nresults written to {path}")


def write_rows(args: argparse.Namespace, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``rows`` to ``args.json`` with the machine and the arguments they came from."""
    write_json(
        args.json,
        {"machine": machine_info(), "args": vars(args) | {"json": str(args.json)}, "rows": rows},
    )


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- arguments


def common_parser(
    description: str,
    *,
    nodes: Sequence[int],
    intervals: Sequence[int],
    runs: int,
    name: str,
    quick_nodes: Sequence[int] = (3,),
    quick_intervals: Sequence[int] = (100,),
    quick_runs: int = 1,
) -> argparse.ArgumentParser:
    """The options every script takes; :func:`parse_args` fills in the defaults, which
    depend on ``--quick``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--nodes",
        type=int,
        nargs="+",
        help=f"cluster sizes to run (default {_join(nodes)}; --quick: {_join(quick_nodes)})",
    )
    parser.add_argument(
        "--interval-ms",
        type=int,
        nargs="+",
        help=f"gossip intervals in ms (default {_join(intervals)}; "
        f"--quick: {_join(quick_intervals)})",
    )
    parser.add_argument(
        "--runs",
        type=int,
        help=f"measured runs per configuration (default {runs}; --quick: {quick_runs})",
    )
    parser.add_argument(
        "--impl",
        nargs="+",
        choices=IMPLS,
        default=list(IMPLS),
        help="implementations to run; swim is the swim-protocol package (default: both)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS_DIR / f"{name}.json",
        metavar="OUT",
        help=f"where to write the results (default bench-results/{name}.json)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and short windows: a smoke test"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.set_defaults(
        _full=(list(nodes), list(intervals), runs),
        _quick=(list(quick_nodes), list(quick_intervals), quick_runs),
    )
    return parser


def _join(values: Sequence[int]) -> str:
    return " ".join(str(v) for v in values)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> Any:
    global _SETTLE_LIMIT
    args = parser.parse_args(argv)
    if args.quick:
        _SETTLE_LIMIT = 0.0
    nodes, intervals, runs = args._quick if args.quick else args._full
    args.nodes = args.nodes or nodes
    args.interval_ms = args.interval_ms or intervals
    args.runs = args.runs if args.runs is not None else runs
    if min(args.nodes) < 2:
        parser.error("--nodes: a cluster needs at least 2 nodes")
    return args


def selected_impls(requested: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The implementations that can run, and why the others cannot."""
    skipped: dict[str, str] = {}
    impls = []
    for impl in requested:
        reason = swim_missing() if impl == SWIM else None
        if reason is None:
            impls.append(impl)
        else:
            skipped[impl] = reason
            log(f"skipping {impl}: {reason}")
    return impls, skipped


def attempt(
    what: dict[str, Any], fn: Callable[[], dict[str, Any]], failures: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """Run one configuration; a failure (a cluster that never forms, a timeout) is recorded
    in ``failures`` and the script goes on with the next configuration."""
    settle_load()
    try:
        return fn()
    except (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as exc:
        log(f"FAILED {what}: {exc!r}")
        failures.append(what | {"error": repr(exc)})
        return None


def print_failures(failures: Sequence[dict[str, Any]]) -> None:
    for failure in failures:
        print(f"FAILED: {failure}")


def run_main(main: Callable[[], int]) -> None:
    """Run a script's main so that SIGTERM and Ctrl-C both stop it and its nodes."""

    def on_term(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    try:
        code = main()
    except KeyboardInterrupt:
        log("interrupted: stopping every node")
        _kill_all()
        code = 130
    raise SystemExit(code)


# --------------------------------------------------------------------------- processes

_LIVE_PROCESSES: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()


def _kill_all() -> None:
    with _LIVE_LOCK:
        processes = list(_LIVE_PROCESSES)
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(OSError):
                process.kill()
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


atexit.register(_kill_all)


def spawn(command: Sequence[str], log_path: Path, tree: Path = REPO) -> subprocess.Popen[bytes]:
    """Start ``command`` in ``tree`` with :func:`child_env`, its stderr in ``log_path``."""
    with log_path.open("wb") as stderr:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            # The working directory too: ``python -m`` imports from it first.
            cwd=tree,
            env=child_env(tree),
        )
    with _LIVE_LOCK:
        _LIVE_PROCESSES.add(process)
    return process


class NodeProcess:
    """One node of a cluster: its process, its name in the API, its ports."""

    def __init__(self, index: int, name: str, gossip_port: int, http_port: int) -> None:
        self.index = index
        self.name = name
        self.gossip_port = gossip_port
        self.http_port = http_port
        self.process: subprocess.Popen[bytes] | None = None
        self.killed_at: float | None = None
        # When it first answered HTTP while its cluster started (monotonic), and the CPU
        # seconds it had used by then: its start-up, the first request included.
        self.answered_at = math.nan
        self.cpu_at_answer = math.nan
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def request(self, path: str, timeout: float = 5.0, *, text: bool = False) -> tuple[int, Any]:
        """GET ``path`` over this node's keep-alive connection: (status, JSON body), or the
        body as text with ``text``."""
        with self._lock:
            # A kept-alive connection the node has closed meanwhile is opened again once;
            # a new one that fails (a node not listening yet) is not tried twice.
            attempts = 2 if self._conn is not None else 1
            for attempt in range(attempts):
                if self._conn is None:
                    self._conn = http.client.HTTPConnection(HOST, self.http_port, timeout=timeout)
                elif self._conn.sock is not None:
                    # A kept-alive connection was opened with an earlier request's timeout.
                    self._conn.sock.settimeout(timeout)
                try:
                    self._conn.request("GET", path)
                    response = self._conn.getresponse()
                    body = response.read()
                    if response.getheader("connection", "").lower() == "close":
                        self._conn.close()
                        self._conn = None
                    if text:
                        return response.status, body.decode()
                    return response.status, json.loads(body) if body else None
                except (OSError, http.client.HTTPException, ValueError):
                    if self._conn is not None:
                        self._conn.close()
                    self._conn = None
                    if attempt == attempts - 1:
                        raise
            raise AssertionError("unreachable")

    def close_connection(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _swim_timings(interval: float) -> list[str]:
    """swim-protocol's defaults (ping 1 s, sync 0.5 s, ping timeout 0.3 s, ping-req timeout
    0.9 s, suspect timeout 5 s) scaled to the gossip interval; at 1 s they are the defaults."""
    return ["--interval", str(interval)]


class Cluster:
    """N nodes of one implementation, every address on 127.0.0.1, node 0 the seed."""

    # The route polled until a node answers HTTP (a subclass for a node without /health
    # names another).
    answering_path = "/health"
    # How long a node that refused the connection (not listening yet) waits before it is
    # asked again while the cluster starts: the join's figures are late by up to this.
    answer_poll = 0.1

    def __init__(
        self,
        impl: str,
        size: int,
        interval_ms: int,
        *,
        extra_args: Sequence[str] = (),
        rng: random.Random | None = None,
        pool_size: int = 8,
        tree: Path = REPO,
    ) -> None:
        """``tree``: the checkout whose code the nodes run (this one by default)."""
        if impl not in IMPLS:
            raise ValueError(f"unknown implementation {impl!r}")
        self.impl = impl
        self.size = size
        self.interval_ms = interval_ms
        self.interval = interval_ms / 1000
        self.extra_args = list(extra_args)
        self.rng = rng or random.Random()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"bench-{impl}-{size}-"))
        per_node = 1 if impl == GOSSIP_TUI else 2
        ports = allocate_ports(size * per_node, self.rng)
        self.nodes: list[NodeProcess] = []
        for i in range(size):
            if impl == GOSSIP_TUI:
                port = ports[i]
                self.nodes.append(NodeProcess(i, f"node-{i}", port, port))
            else:
                port, http_port = ports[2 * i], ports[2 * i + 1]
                self.nodes.append(NodeProcess(i, f"{HOST}:{port}", port, http_port))
        self.pool = ThreadPoolExecutor(max_workers=max(1, min(pool_size, size)))
        self.tree = tree
        self.began = self.spawned_at = self.started_at = math.nan
        self.cpu_when_answering = self.cpu_when_joined = math.nan

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def command(self, node: NodeProcess) -> list[str]:
        seed = self.nodes[0]
        if self.impl == GOSSIP_TUI:
            command = [
                sys.executable,
                "-m",
                "gossip_tui",
                "--headless",
                "--listen-addr",
                f"{HOST}:{node.gossip_port}",
                "--node-id",
                node.name,
                "--interval-ms",
                str(self.interval_ms),
            ]
            if node.index > 0:
                command += ["--seed", f"{HOST}:{seed.gossip_port}"]
            return command + self.extra_args
        # A swim member needs a peer from the start: node 0 takes node 1.
        peer = self.nodes[1] if node.index == 0 and self.size > 1 else seed
        command = [
            sys.executable,
            str(HERE / "_swim_member.py"),
            "--name",
            node.name,
            "--http-port",
            str(node.http_port),
            *_swim_timings(self.interval),
        ]
        if peer is not node:
            command += ["--peer", peer.name]
        return command + self.extra_args

    def _spawn(self, node: NodeProcess) -> None:
        node.process = spawn(self.command(node), self.workdir / f"node-{node.index}.log", self.tree)

    def _wait_answering(self, nodes: Sequence[NodeProcess], deadline: float) -> None:
        """Until every node of ``nodes`` answers ``answering_path``; each node's first answer
        is recorded in its ``answered_at`` (monotonic) and ``cpu_at_answer``.

        Every node is asked by a thread of its own, so that a node slow to give its first
        answer (a gossip-tui node starts its HTTP server on its first connection) delays
        no other: the harness sees each node answer within ``answer_poll`` of when it
        does. A node not listening yet refuses at once; one that is listening holds the
        request until it answers, so the harness waits for it without spending CPU."""
        stop = threading.Event()

        def until_answering(node: NodeProcess) -> None:
            while not stop.is_set():
                if not node.alive():
                    raise RuntimeError(
                        f"{self.impl} node {node.index} exited: {self.log_tail(node)}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.impl} node {node.index} never answered HTTP")
                try:
                    node.request(self.answering_path, timeout=left)
                except (OSError, http.client.HTTPException, ValueError):
                    stop.wait(self.answer_poll)
                    continue
                node.answered_at = time.monotonic()
                with contextlib.suppress(OSError, ValueError, IndexError):
                    node.cpu_at_answer = cpu_seconds(node.pid)
                return

        with ThreadPoolExecutor(max_workers=len(nodes) or 1) as waiters:
            try:
                for waited in [waiters.submit(until_answering, node) for node in nodes]:
                    waited.result()
            finally:
                # The first failure (or Ctrl-C) ends every other node's wait.
                stop.set()

    def start(self, timeout: float | None = None) -> float:
        """Start every node and wait until every node sees all N live; the seconds taken.

        Node 0 (the seed) is started first and every other node once it answers; each
        node is then asked until it answers HTTP (concurrently: see _wait_answering), and
        every node's view is read until it counts all N live. What it saw on the way is
        kept: ``began`` (the first spawn), ``spawned_at`` (the last), ``started_at``
        (every node answering), and the CPU seconds of all nodes together at those two
        last moments (``cpu_when_answering``, ``cpu_when_joined``)."""
        timeout = timeout if timeout is not None else 60 + 1.5 * self.size
        self.began = began = time.monotonic()
        deadline = began + timeout
        log(f"starting {self.size} {self.impl} nodes at {self.interval_ms} ms in {self.workdir}")
        self._spawn(self.nodes[0])
        self._wait_answering(self.nodes[:1], deadline)
        for node in self.nodes[1:]:
            self._spawn(node)
        self.spawned_at = time.monotonic()
        self._wait_answering(self.nodes[1:], deadline)
        self.started_at = time.monotonic()
        self.cpu_when_answering = sum(self.cpu().values())
        self.wait_membership(deadline)
        took = time.monotonic() - began
        self.cpu_when_joined = sum(self.cpu().values())
        log(f"{self.impl} cluster of {self.size} formed in {took:.1f} s")
        return took

    def start_one_by_one(self, timeout: float | None = None) -> None:
        """Start the nodes one after another, each once the one before answers HTTP, so
        that each starts into a running cluster of all those before it (node 0 alone):
        each node's ``cpu_at_answer`` is then what it spent starting while gossiping with
        the rest, to set beside node 0's (what a node alone spends)."""
        timeout = timeout if timeout is not None else 60 + 3 * self.size
        self.began = time.monotonic()
        deadline = self.began + timeout
        log(f"starting {self.size} {self.impl} nodes one by one in {self.workdir}")
        for node in self.nodes:
            self._spawn(node)
            self._wait_answering([node], deadline)
        self.spawned_at = self.started_at = time.monotonic()
        self.cpu_when_answering = sum(self.cpu().values())

    def wait_membership(self, deadline: float) -> None:
        """Until every live node counts all live nodes (itself included) as live."""
        expected = sum(1 for n in self.nodes if n.killed_at is None)
        pending = [n for n in self.nodes if n.killed_at is None]
        while pending:
            counts = self.map(lambda n: self.live_count(n), pending)
            short = [(n, c) for n, c in zip(pending, counts, strict=True) if c != expected]
            pending = [n for n, _count in short]
            if not pending:
                return
            if time.monotonic() > deadline:
                # None: the node did not answer the request in time.
                raise TimeoutError(
                    f"{len(pending)} {self.impl} nodes do not see {expected} live nodes "
                    f"(e.g. node {short[0][0].index} sees {short[0][1]})"
                )
            time.sleep(max(0.2, self.interval / 2))

    def stop(self) -> None:
        for node in self.nodes:
            node.close_connection()
            if node.alive():
                assert node.process is not None
                node.process.terminate()
        # One grace period for all the nodes, not one each: on a loaded machine a hundred
        # nodes slow to exit would otherwise hold the script for minutes.
        grace_ends = time.monotonic() + 5
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(timeout=max(0.0, grace_ends - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(timeout=5)
            with _LIVE_LOCK:
                _LIVE_PROCESSES.discard(node.process)
        self.pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self, node: NodeProcess) -> float:
        """kill -9 a node; the monotonic time it was killed."""
        assert node.process is not None
        node.close_connection()
        os.kill(node.pid, signal.SIGKILL)
        node.killed_at = time.monotonic()
        node.process.wait(timeout=5)
        return node.killed_at

    def log_tail(self, node: NodeProcess, lines: int = 5) -> str:
        path = self.workdir / f"node-{node.index}.log"
        try:
            return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @property
    def live(self) -> list[NodeProcess]:
        return [n for n in self.nodes if n.killed_at is None]

    # ---------------------------------------------------------------- reading views

    def map(self, fn: Callable[[NodeProcess], Any], nodes: Sequence[NodeProcess]) -> list[Any]:
        """``fn`` on every node, from the shared thread pool; results in order."""
        return list(self.pool.map(fn, nodes))

    def live_count(self, observer: NodeProcess) -> int | None:
        try:
            status, body = observer.request("/health")
        except (OSError, http.client.HTTPException, ValueError):
            return None
        return int(body["live_nodes"]) if status == 200 else None

    def node_view(self, observer: NodeProcess, target: NodeProcess) -> dict[str, Any] | None:
        """What ``observer`` knows of ``target`` (liveness, key_values), or None."""
        status, body = observer.request(f"/nodes/{quote(target.name, safe='')}")
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError(f"GET /nodes/{target.name} on node {observer.index}: {status}")
        return dict(body)

    def liveness_of_all(self, observer: NodeProcess) -> dict[str, str]:
        """Every node ``observer`` knows, by name, with its liveness as seen there."""
        status, body = observer.request("/nodes")
        if status != 200:
            raise RuntimeError(f"GET /nodes on node {observer.index}: {status}")
        return {n["chitchat_id"]["node_id"]: n["liveness"] for n in body["nodes"]}

    def set_kv(self, node: NodeProcess, key: str, value: str) -> None:
        status, _ = node.request(f"/set_kv/?key={quote(key)}&value={quote(value)}")
        if status != 200:
            raise RuntimeError(f"set_kv on node {node.index}: HTTP {status}")

    def traffic(self, node: NodeProcess) -> tuple[int, int, int | None]:
        """What ``node`` has sent so far: (bytes, datagrams, gossip rounds or None).

        gossip-tui serves its ``Node.stats`` in ``GET /metrics``; the swim member counts
        what it packs and serves it in ``GET /stats`` (it has no notion of rounds)."""
        if self.impl == SWIM:
            _status, body = node.request("/stats")
            return int(body["bytes_out"]), int(body["packets_out"]), None
        status, body = node.request("/metrics", text=True)
        if status != 200:
            raise RuntimeError(f"GET /metrics on node {node.index}: HTTP {status}")
        values: dict[str, int] = {}
        for line in str(body).splitlines():
            name, _, number = line.partition(" ")
            if name.startswith("gossip_tui_") and number:
                with contextlib.suppress(ValueError):
                    values[name] = int(float(number))
        return (
            values["gossip_tui_bytes_sent_total"],
            values["gossip_tui_datagrams_sent_total"],
            values["gossip_tui_gossip_rounds_total"],
        )

    # ---------------------------------------------------------------- resources

    def cpu(self) -> dict[int, float]:
        return {n.index: cpu_seconds(n.pid) for n in self.live}

    def rss(self) -> dict[int, float]:
        return {n.index: rss_mib(n.pid) for n in self.live}


@contextlib.contextmanager
def cluster(impl: str, size: int, interval_ms: int, **kwargs: Any) -> Iterator[Cluster]:
    """A started cluster, stopped on exit whatever happens."""
    with Cluster(impl, size, interval_ms, **kwargs) as running:
        running.start()
        yield running


def sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)
