"""scripts/bench/_cluster.py: how a starting cluster is watched until every node answers.

The nodes here are stand-in HTTP servers on 127.0.0.1 (no node process is started): one
holds its first answer until the other has answered, as a gossip-tui node does while it
starts its HTTP server on its first connection under load.
"""

from __future__ import annotations

import http.server
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench"
sys.path.insert(0, str(BENCH))
import _cluster as bench  # noqa: E402

# A safety net only: a stand-in holding its answer lets go after this long.
HOLD_LIMIT = 20.0


class _Running:
    """What the harness reads of a node's process: it runs (this test's own pid)."""

    pid = os.getpid()

    def poll(self) -> None:
        return None


class _StandIn(http.server.ThreadingHTTPServer):
    def __init__(self, port: int, hold_until: Callable[[], bool] | None) -> None:
        self.hold_until = hold_until
        self.requests = 0
        super().__init__((bench.HOST, port), _Handler)
        self.daemon_threads = True

    def hold(self) -> None:
        if self.hold_until is None:
            return
        gives_up = time.monotonic() + HOLD_LIMIT
        while not self.hold_until() and time.monotonic() < gives_up:
            time.sleep(0.005)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _StandIn

    def do_GET(self) -> None:
        self.server.requests += 1
        self.server.hold()
        body = b'{"live_nodes": 1}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextmanager
def _serving(server: _StandIn) -> Iterator[_StandIn]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _stop(cluster: bench.Cluster) -> None:
    for node in cluster.nodes:
        node.process = None  # nothing of ours to stop
    cluster.stop()


def test_a_node_slow_to_answer_holds_up_no_other_and_is_asked_once() -> None:
    cluster = bench.Cluster(bench.GOSSIP_TUI, 2, 1000)
    try:
        slow, fast = cluster.nodes
        for node in cluster.nodes:
            node.process = _Running()  # type: ignore[assignment]
        fast_server = _StandIn(fast.http_port, hold_until=None)
        # The slow node answers only once the harness has recorded the fast one's answer
        # (not merely once the fast server wrote it: the two clients race after that). A
        # harness that waits for the slow node before it asks the fast one waits out
        # HOLD_LIMIT and then sees the slow node answer first.
        slow_server = _StandIn(slow.http_port, hold_until=lambda: not math.isnan(fast.answered_at))
        with _serving(slow_server), _serving(fast_server):
            began = time.monotonic()
            cluster._wait_answering(cluster.nodes, began + 2 * HOLD_LIMIT)
        assert began < fast.answered_at < slow.answered_at
        assert slow_server.requests == 1
        assert fast_server.requests == 1
        assert fast.cpu_at_answer >= 0
    finally:
        _stop(cluster)


def test_a_node_that_never_answers_ends_the_wait_at_the_deadline() -> None:
    cluster = bench.Cluster(bench.GOSSIP_TUI, 2, 1000)
    try:
        for node in cluster.nodes:
            node.process = _Running()  # type: ignore[assignment]
        # Nothing listens on either port: every request is refused.
        with pytest.raises(TimeoutError, match="never answered HTTP"):
            cluster._wait_answering(cluster.nodes, time.monotonic() + 0.5)
    finally:
        _stop(cluster)


class _SlowToExit:
    """A node's process that outlives SIGTERM: each wait takes the whole timeout it is
    given (on the test's clock) until the process is killed."""

    pid = os.getpid()

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.grace_waits: list[float] = []
        self.killed = False

    def poll(self) -> int | None:
        return -9 if self.killed else None

    def terminate(self) -> None:
        return None

    def kill(self) -> None:
        self.killed = True

    def wait(self, timeout: float | None = None) -> int:
        if self.killed:
            return -9
        assert timeout is not None
        self.grace_waits.append(timeout)
        self.clock[0] += timeout
        raise bench.subprocess.TimeoutExpired("node", timeout)


def test_nodes_slow_to_exit_share_one_grace_period(monkeypatch: pytest.MonkeyPatch) -> None:
    # Three nodes that ignore SIGTERM: the cluster waits 5 s for all of them together
    # before it kills them, not 5 s for each (100 such nodes held a run for minutes).
    cluster = bench.Cluster(bench.GOSSIP_TUI, 3, 1000)
    clock = [1_000.0]
    monkeypatch.setattr(bench.time, "monotonic", lambda: clock[0])
    processes = [_SlowToExit(clock) for _ in cluster.nodes]
    for node, process in zip(cluster.nodes, processes, strict=True):
        node.process = process  # type: ignore[assignment]
    cluster.stop()
    assert all(p.killed for p in processes)
    assert sum(sum(p.grace_waits) for p in processes) <= 5.0
    assert processes[0].grace_waits == [5.0]
