"""The demo's peers in worker processes (issues 15 and 17): they form one cluster with node 0,
stop and restart on request across the process boundary, and never outlive the dashboard.

Real nodes over real UDP on 127.0.0.1; the workers are real child processes.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
import trio

from gossip_tui.node import NodeConfig, open_node
from gossip_tui.ui.demo import PEER_CALM_INTERVAL, demo_overrides
from gossip_tui.ui.demo_worker import WORKER_NICENESS
from gossip_tui.ui.demo_workers import WorkerDemoCluster


def _config() -> NodeConfig:
    return attrs.evolve(NodeConfig(gossip_interval=0.1, node_id="w"), **demo_overrides(()))


async def _until(condition: Callable[[], bool], what: str, timeout: float) -> None:
    with trio.move_on_after(timeout):
        while not condition():
            await trio.sleep(0.05)
    assert condition(), f"no {what} within {timeout} s"


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return status.rsplit(")", 1)[1].split()[0] in ("Z", "X")


@pytest.mark.trio
async def test_the_workers_peers_and_node_0_converge() -> None:
    nodes = 12
    config = _config()
    demo = WorkerDemoCluster(nodes - 1, workers=2, views_every=0.1)
    async with open_node(config) as node0, trio.open_nursery() as nursery:
        nursery.start_soon(demo.run, node0, open_node, config, lambda _message: True)
        await _until(lambda: len(demo.running) == nodes - 1, "peers up", 20)
        assert len(demo.worker_pids) == 2
        # Every node (node 0 here, the peers in their workers) lists all of them live.
        await _until(
            lambda: (
                len(node0.live_nodes()) == nodes
                and len(demo.views) == nodes - 1
                and all(view[0] == nodes for view in demo.views.values())
            ),
            "convergence",
            20,
        )
        pids = demo.worker_pids
        nursery.cancel_scope.cancel()
    # Stopping the demo ends its workers.
    assert all(_gone(pid) for pid in pids)


@pytest.mark.trio
async def test_the_peers_slow_down_once_formed_and_none_is_judged_dead() -> None:
    # Issue 15: 200 peers at the fast rounds kept both cores busy for as long as the demo
    # ran; once a peer lists everyone it gossips at PEER_CALM_INTERVAL. Its peers' detectors
    # measured the fast rhythm until then: the slower one must not read as a failure.
    nodes = 8
    config = _config()
    demo = WorkerDemoCluster(nodes - 1, workers=2, views_every=0.1)
    calm_ms = round(1000 * PEER_CALM_INTERVAL)
    dead_seen: list[object] = []

    def calm() -> bool:
        dead_seen.extend(node0.dead_nodes())
        dead_seen.extend(view[1] for view in demo.views.values() if view[1])
        return len(demo.views) == nodes - 1 and all(
            view[5] == calm_ms for view in demo.views.values()
        )

    async with open_node(config) as node0, trio.open_nursery() as nursery:
        nursery.start_soon(demo.run, node0, open_node, config, lambda _message: True)
        await _until(calm, "peers at the calm interval", 30)
        # While forming a node is listed dead until its heartbeat is seen to rise: from
        # here on, none may be.
        dead_seen.clear()
        # Node 0 keeps its own rhythm; three of the peers' calm rounds on, every node still
        # lists every node live and none was ever judged dead.
        rounds = node0.stats.rounds
        rhythm = config.gossip_interval
        await _until(
            lambda: calm() and (node0.stats.rounds - rounds) * rhythm >= 3 * PEER_CALM_INTERVAL,
            "three calm rounds",
            30,
        )
        assert len(node0.live_nodes()) == nodes
        assert all(view[0] == nodes for view in demo.views.values())
        assert dead_seen == []
        assert node0.config.gossip_interval == rhythm
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_peer_stops_and_restarts_across_the_process_boundary() -> None:
    config = _config()
    demo = WorkerDemoCluster(3, workers=2, restart_delay=1.5, rng=random.Random(4))
    async with open_node(config) as node0, trio.open_nursery() as nursery:
        nursery.start_soon(demo.run, node0, open_node, config, lambda _message: True)
        await _until(lambda: len(node0.live_nodes()) == 4, "node 0 to see all four", 20)
        before = set(demo.running)
        assert demo.request_kill()
        # Gone from `running` once its worker reports it down.
        await _until(lambda: len(demo.running) == 2, "a peer to stop", 10)
        (stopped,) = before - set(demo.running)

        def restarted() -> list[object]:
            return [
                ident
                for ident in demo.running
                if ident.node_id == stopped.node_id and ident.generation > stopped.generation
            ]

        await _until(lambda: bool(restarted()), "the restart", 20)
        (again,) = restarted()
        # On its own address again: its worker had closed the old socket.
        assert again.gossip_addr == stopped.gossip_addr
        await _until(lambda: again in node0.live_nodes(), "node 0 to see it back", 20)
        nursery.cancel_scope.cancel()


_DASHBOARD = """
import sys, trio, attrs
from gossip_tui.node import NodeConfig, open_node
from gossip_tui.ui.demo import PEER_CALM_INTERVAL, demo_overrides
from gossip_tui.ui.demo_worker import WORKER_NICENESS
from gossip_tui.ui.demo_workers import WorkerDemoCluster

async def main():
    config = attrs.evolve(NodeConfig(gossip_interval=0.1), **demo_overrides(()))
    demo = WorkerDemoCluster(3, workers=2)
    async with open_node(config) as node0, trio.open_nursery() as nursery:
        nursery.start_soon(demo.run, node0, open_node, config, lambda _message: True)
        while len(demo.running) < 3:
            await trio.sleep(0.05)
        print(*demo.worker_pids, flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


def test_a_killed_dashboard_leaves_no_worker_running() -> None:
    # SIGKILL: nothing of the dashboard runs; the kernel closing its end of each worker's
    # stdin is all that tells them.
    with subprocess.Popen(
        [sys.executable, "-c", _DASHBOARD], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    ) as dashboard:
        assert dashboard.stdout is not None
        pids = [int(pid) for pid in dashboard.stdout.readline().split()]
        assert len(pids) == 2 and not any(_gone(pid) for pid in pids)
        niceness = [os.getpriority(os.PRIO_PROCESS, pid) for pid in pids]
        os.kill(dashboard.pid, signal.SIGKILL)
        dashboard.wait(timeout=10)
        trio.run(_until, lambda: all(_gone(pid) for pid in pids), "the workers to exit", 10.0)
    # The peers yield the CPU to the dashboard.
    # (The kernel caps niceness at 19: under `nice` the suite starts at 10 already.)
    assert niceness == [min(os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICENESS, 19)] * 2
