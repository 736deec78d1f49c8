"""The liveness sweep sleeps through the slots where it could change nothing (issue 17):
every verdict still comes at the virtual time it came when every slot swept. One scenario
(deaths by partition, a heal, a departure, a removal after the grace period, a key's TTL)
runs twice on trio's mock clock with everything seeded -- once with the sweep on every
slot (MAX_SKIPPED_SWEEPS = 1, the loop as it was) and once as shipped -- and the two
event logs, times included, must be identical while the second run swept far less."""

from __future__ import annotations

import random
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from gossip_tui.core import engine as engine_module
from gossip_tui.core.failure_detector import FailureDetectorConfig
from gossip_tui.node import Node, _node_base, open_node
from gossip_tui.testing import MemoryNetwork

from .helpers import all_see_each_other, fast_config, node_task, wait_until

# Short enough that a removal happens within the scenario.
DETECTOR = FailureDetectorConfig(initial_interval=0.1, dead_node_grace_period=6.0)
INTERVAL = 0.05
SIZE = 5
_PHASE, _STAGGER = 0.0033, 0.0071


class _SweepCounter(trio.abc.Instrument):
    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self.steps: Counter[str] = Counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        for node in self.nodes:
            if node_task(node, task) == "_failure_detector_loop":
                self.steps[node.self_id.node_id] += 1


async def _scenario(log: list[tuple[float, str, str]], counter: _SweepCounter) -> None:
    network = MemoryNetwork(seed=17)
    nodes: list[Node] = []
    stops = [trio.Event() for _ in range(SIZE)]

    async def run_node(index: int, *, task_status: trio.TaskStatus[None]) -> None:
        # Each node in a task of its own, so that one can leave while the others run.
        seeds = (str(nodes[0].gossip_addr),) if nodes else ()
        config = fast_config(node_id=f"n{index}", interval=INTERVAL, detector=DETECTOR, seeds=seeds)
        async with open_node(config, transport=network.transport()) as node:
            nodes.append(node)
            with node.subscribe() as events:
                task_status.started()
                with trio.CancelScope() as recording:
                    async with trio.open_nursery() as nursery:

                        async def record() -> None:
                            async for event in events:
                                log.append((trio.current_time(), f"n{index}", repr(event)))

                        nursery.start_soon(record)
                        await stops[index].wait()
                        recording.cancel()

    async with trio.open_nursery() as nursery:
        # Staggered starts: no node's round or sweep falls at the same virtual time as
        # another's, or as a step of this scenario (multiples of 0.01 s), where trio's order
        # of same-time tasks (which the two runs need not share) would decide what a sweep
        # saw. The network delivers at once: an exchange happens at its round's time.
        await trio.sleep(_PHASE)
        for i in range(SIZE):
            await nursery.start(run_node, i)
            await trio.sleep(_STAGGER)
        counter.nodes = nodes
        await wait_until(lambda: all_see_each_other(nodes), 30, "the cluster to form")
        await trio.sleep(2.0)
        nodes[0].set("short-lived", "x", ttl=1.234)
        # n4 cut off (a crash, to the others) for long enough to die, then back.
        rest = [n.gossip_addr for n in nodes[:4]]
        network.partition([nodes[4].gossip_addr], rest)
        await trio.sleep(6.0)
        network.heal()
        await trio.sleep(3.0)
        # n3 leaves; the others remove it once the grace period is over.
        stops[3].set()
        await trio.sleep(9.0)
        for stop in stops:
            stop.set()


def _run(monkeypatch: pytest.MonkeyPatch, max_skipped: int) -> tuple[list[Any], Counter[str]]:
    seeds = iter(range(1_000_000))

    def seeded() -> random.Random:
        # Every engine's RNG (target picks) seeded alike in both runs.
        return random.Random(next(seeds))

    with monkeypatch.context() as patch:
        patch.setattr(engine_module, "random", SimpleNamespace(Random=seeded))
        # Trio's scheduler RNG (it orders each batch of runnable tasks), seeded alike.
        patch.setattr(trio._core._run, "_r", random.Random(0))
        patch.setattr(_node_base, "MAX_SKIPPED_SWEEPS", max_skipped)
        log: list[tuple[float, str, str]] = []
        counter = _SweepCounter([])
        trio.run(
            _scenario,
            log,
            counter,
            clock=trio.testing.MockClock(autojump_threshold=0),
            instruments=[counter],
        )
    return log, counter.steps


def test_skipped_sweeps_change_no_verdict_and_no_time_of_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    every_slot, swept_every_slot = _run(monkeypatch, max_skipped=1)
    skipping, swept_skipping = _run(monkeypatch, max_skipped=_node_base.MAX_SKIPPED_SWEEPS)
    kinds = {entry[2].split("(")[0] for entry in every_slot}
    # The scenario shows what it is meant to: joins, deaths, a departure, a removal, an
    # expiry.
    assert {"NodeJoined", "NodeDead", "NodeLeft", "NodeRemoved", "KeyDeleted"} <= kinds, kinds
    assert sorted(skipping) == sorted(every_slot)
    # And the skipping run woke its sweep far less often.
    assert sum(swept_skipping.values()) < sum(swept_every_slot.values()) / 2, (
        swept_skipping,
        swept_every_slot,
    )


@pytest.mark.trio
async def test_a_lone_nodes_key_still_expires_at_the_sweep_after_its_deadline(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Nothing arrives to wake a lone node's sweep, which the detector would let sleep for
    # MAX_SKIPPED_SWEEPS slots: the write of a key with a TTL itself brings it forward.
    started = trio.current_time()
    config = fast_config(node_id="alone", interval=1.0, detector=DETECTOR)
    async with open_node(config, transport=MemoryNetwork(seed=3).transport()) as node:
        with node.subscribe() as events:
            await trio.sleep(3.1)
            node.set("short-lived", "x", ttl=1.3)  # due at 4.4: the sweep at 4.5 fires it
            async for event in events:
                if getattr(event, "reason", None) == "expired":
                    break
            assert trio.current_time() - started == pytest.approx(4.5)
