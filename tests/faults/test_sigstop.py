"""A node stopped for 3 s (SIGSTOP, a long GC pause, a VM steal) must not be declared dead.

chitchat's phi is the silence divided by the mean heartbeat inter-arrival time, smoothed
towards a 5 s prior with weight 5. A peer's heartbeat reaches us several times per round
(its own Syns and SynAcks and everybody's digests), so once the prior has washed out the
mean is about 0.45 of the gossip interval, and phi 8 is crossed after a silence of about
3.5 intervals: with chitchat's rule alone a 3 s stop kills a node at 0.5 s rounds (and at
1 s rounds half the time). Hence the detector's ``acceptable_pause`` (3 s by default),
added to what phi tolerates. Measured with the freeze below (after 10 minutes then), 4 nodes,
6 seeds each, the largest phi the others saw (threshold 8):

* 0.5 s rounds, defaults: a 3 s stop peaks at phi 5.4-5.5, 3.5 s at 6.3, 4 s at 7.1.
* 1 s rounds, defaults: a 3 s stop peaks at 4.3-4.4.
* 0.5 s rounds, no pause (chitchat's rule): a 3 s stop is a death on all 3 others.

The real-process test shows a 3 s SIGSTOP survived end to end with the defaults; the
virtual-time tests show the steady state, which real time cannot reach in a test.
"""

from __future__ import annotations

import signal
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import trio

from gossip_tui.core.failure_detector import FailureDetectorConfig
from gossip_tui.node import NodeDead, NodeJoined
from gossip_tui.testing import MemoryNetwork
from tests.node.helpers import wait_until
from tests.processes import answers, free_port, get_json, running_node, wait_for

from .helpers import (
    FreezableTransport,
    Freezer,
    attach_logs,
    exactly_live,
    memory_addr,
    node_config,
    start_node,
)

STOP_FOR = 3.0
# Rounds of virtual time before the freeze: a peer's heartbeat arrives about 2.2 times a
# round, so its sampling window (1,000 intervals) is full after about 450 rounds, whatever
# the interval (measured: full at 225 s with 0.5 s rounds, at 450 s with 1 s rounds), and
# from then on the mean interval, hence phi, no longer drifts. A fixed 10 minutes ran the
# 0.5 s cases for twice that.
STEADY_ROUNDS = 600

# --------------------------------------------------------------------------- real processes


def _index(port: int) -> Any:
    return get_json(f"http://127.0.0.1:{port}/")


def _names(nodes: list[dict[str, Any]]) -> set[str]:
    return {n["node_id"] for n in nodes}


def _phi_of(port: int, name: str) -> float | None:
    for summary in get_json(f"http://127.0.0.1:{port}/nodes")["nodes"]:
        if summary["chitchat_id"]["node_id"] == name:
            phi = summary["phi"]
            return None if phi is None else float(phi)
    return None


@pytest.mark.slow
def test_sigstop_for_3_s_does_not_get_a_node_declared_dead(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(4)]
    names = [f"stop-{i}" for i in range(4)]
    victim = 3
    with ExitStack() as stack:
        procs = []
        for i, port in enumerate(ports):
            seed = () if i == 0 else ("--seed", f"127.0.0.1:{ports[0]}")
            proc, _ = stack.enter_context(
                running_node(
                    tmp_path,
                    names[i],
                    "--listen-addr",
                    f"127.0.0.1:{port}",
                    *seed,
                )
            )
            procs.append(proc)
        wait_for(lambda: all(answers(f"http://127.0.0.1:{p}/") for p in ports), 60, "HTTP up")
        wait_for(
            lambda: all(_names(_index(p)["live_nodes"]) == set(names) for p in ports),
            60,
            "4 live nodes everywhere",
        )
        others = [p for i, p in enumerate(ports) if i != victim]
        seen_dead: dict[int, float] = {}  # port -> first time (s after SIGSTOP) it said dead
        max_phi = 0.0
        polls = 0

        def poll(stopped_at: float) -> None:
            nonlocal max_phi, polls
            for port in others:
                if names[victim] in _names(_index(port)["dead_nodes"]):
                    seen_dead.setdefault(port, round(time.monotonic() - stopped_at, 2))
                max_phi = max(max_phi, _phi_of(port, names[victim]) or 0.0)
            polls += 1

        procs[victim].send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            while time.monotonic() - stopped_at < STOP_FOR:
                poll(stopped_at)
        finally:
            procs[victim].send_signal(signal.SIGCONT)
        resumed_at = time.monotonic()
        # A death declared in the last sweep before the resume shows up just after it.
        while time.monotonic() - resumed_at < 2.0:
            poll(stopped_at)

        assert seen_dead == {}, f"declared dead (port: s after SIGSTOP): {seen_dead}"
        assert polls >= 10, "too few polls to have watched the stop"
        wait_for(
            lambda: all(_names(_index(p)["live_nodes"]) == set(names) for p in ports),
            30,
            "the stopped node back to a full view",
        )
        print(
            f"\nSIGSTOP {STOP_FOR:.0f} s with the defaults: never listed dead in {polls} polls "
            f"of the 3 others; its largest phi there {max_phi:.2f} (threshold 8)"
        )


# --------------------------------------------------------------------------- steady state


async def _freeze_at_steady_state(
    *, interval: float, detector: FailureDetectorConfig, network_seed: int
) -> tuple[int, float, bool]:
    """4 nodes, ``STEADY_ROUNDS`` rounds of virtual time, then node 3 frozen for 3 s.
    Returns how many peers declared it dead, the largest phi they gave it, and whether it
    was live everywhere again 10 rounds later."""
    network = MemoryNetwork(seed=network_seed)
    freezer = Freezer()
    addrs = [memory_addr(i, 23_000) for i in range(4)]
    async with trio.open_nursery() as nursery:
        handles = []
        for i in range(4):
            transport = network.transport()
            config = node_config(i, addrs[i], seeds=addrs[:1], interval=interval, detector=detector)
            frozen = FreezableTransport(transport, freezer) if i == 3 else transport
            handles.append(await start_node(nursery, config, frozen, rng_seed=network_seed + i))
        nodes = [h.node for h in handles]
        ids = {n.self_id for n in nodes}
        victim = nodes[3].self_id
        await wait_until(lambda: all(exactly_live(n, ids) for n in nodes), 60, "convergence")
        await trio.sleep(STEADY_ROUNDS * interval)
        logs = attach_logs(nursery, nodes[:3])
        await trio.sleep(0)
        largest_phi = 0.0

        def watch_phi() -> None:
            nonlocal largest_phi
            for node in nodes[:3]:
                phi = node.engine.detector.phi(victim, trio.current_time())
                largest_phi = max(largest_phi, phi or 0.0)

        freezer.freeze()
        frozen_at = trio.current_time()
        while trio.current_time() - frozen_at < STOP_FOR:
            watch_phi()
            await trio.sleep(0.05)
        freezer.thaw()
        thawed_at = trio.current_time()
        while trio.current_time() - thawed_at < 10 * interval:
            watch_phi()
            await trio.sleep(0.05)
        declared_dead = [log for log in logs if log.times_of(NodeDead(victim))]
        # Whoever declared it dead saw it join again.
        assert all(log.times_of(NodeJoined(victim)) for log in declared_dead)
        left = len(declared_dead)
        back = all(exactly_live(n, ids) for n in nodes[:3])
        nursery.cancel_scope.cancel()
    return left, largest_phi, back


@pytest.mark.trio
@pytest.mark.parametrize(("interval", "network_seed"), [(0.5, 41), (0.5, 42), (1.0, 43)])
async def test_with_the_defaults_a_3_s_freeze_at_steady_state_is_survived(
    autojump_clock: trio.abc.Clock, interval: float, network_seed: int
) -> None:
    detector = FailureDetectorConfig()
    left, largest_phi, back = await _freeze_at_steady_state(
        interval=interval, detector=detector, network_seed=network_seed
    )
    assert left == 0
    # It came close (the pause is not slack that a silence never reaches) but stayed under.
    assert 3.0 < largest_phi < detector.phi_threshold
    assert back


@pytest.mark.trio
async def test_with_chitchats_rule_alone_a_3_s_freeze_at_steady_state_is_a_death(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Why the pause exists: without it 0.5 s rounds tolerate about 2 s at steady state."""
    left, _, back = await _freeze_at_steady_state(
        interval=0.5, detector=FailureDetectorConfig(acceptable_pause=0.0), network_seed=44
    )
    assert left == 3
    assert back
