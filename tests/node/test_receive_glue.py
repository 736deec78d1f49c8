"""The runtime's glue on the receive path, counted (never timed): what a node does per
received datagram around the engine, the decoder, the encoder and the socket (budget the
reply, count, hear seeds, note the digest, publish). An idle node receives several
datagrams per peer per round, so each call here is paid thousands of times a minute
(issues 12 and 17)."""

from __future__ import annotations

import sys
from collections import Counter
from types import CodeType, FrameType
from typing import Any

import pytest
import trio

from gossip_tui.core import codec
from gossip_tui.core.agreement import VIEW_KEY
from gossip_tui.core.engine import GossipEngine
from gossip_tui.node import Node
from gossip_tui.node._loops import NodeLoops
from gossip_tui.testing import MemoryNetwork

from .helpers import all_see_each_other, node_task, open_cluster, wait_until

# What the glue wraps, counted apart: not the runtime's per-datagram overhead.
_HANDLE = NodeLoops._handle_datagram.__code__
_ENGINE = GossipEngine.handle_message.__code__
_WRAPPED = {_ENGINE, codec.decode.__code__, codec.encode.__code__}


class GlueCalls(trio.abc.Instrument):
    """Every call (Python and C) made in ``node``'s ``_handle_datagram`` outside the engine,
    the codec and the socket, by name; ``datagrams``: the messages it handed the engine."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.calls: Counter[str] = Counter()
        self.datagrams = 0
        self._inside = False
        self._wrapped_depth = 0
        self._wrapped = _WRAPPED | {type(node._socket).send.__code__}

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if node_task(self.node, task) == "_receive_loop":
            sys.setprofile(self._profile)

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if node_task(self.node, task) == "_receive_loop":
            sys.setprofile(None)
            self._inside, self._wrapped_depth = False, 0

    def _profile(self, frame: FrameType, event: str, arg: Any) -> None:
        code: CodeType = frame.f_code
        if event == "call":
            if code is _HANDLE:
                self._inside = True  # entered, or resumed after an await
            elif not self._inside:
                return
            elif code in self._wrapped:
                self._wrapped_depth += 1
                self.datagrams += code is _ENGINE
            elif not self._wrapped_depth:
                self.calls[code.co_qualname] += 1
        elif event == "return":
            if code is _HANDLE:
                self._inside = False
            elif self._inside and code in self._wrapped:
                self._wrapped_depth -= 1
        elif event == "c_call" and self._inside and not self._wrapped_depth:
            self.calls[getattr(arg, "__qualname__", repr(arg))] += 1

    def per_datagram(self) -> float:
        return sum(self.calls.values()) / max(self.datagrams, 1)


def _views_settled(nodes: list[Node]) -> bool:
    views = {holder.get(VIEW_KEY, node.self_id) for holder in nodes for node in nodes}
    return len(views) == 1 and None not in views


async def _count_glue(datagrams: int, monkeypatch: pytest.MonkeyPatch) -> GlueCalls:
    # Empty codec caches: node ids decoded by earlier tests (equal to this test's, other
    # objects) would cost an address __eq__ per lookup and make the count depend on the
    # order the tests run in.
    for cache in ("_NODES_BY_WIRE", "_WIRE_BY_NODE", "_ENTRIES_BY_WIRE", "_WIRE_BY_ENTRY"):
        monkeypatch.setattr(codec, cache, {})
    network = MemoryNetwork(seed=12)
    async with open_cluster(4, transport=network.transport()) as nodes:
        await wait_until(lambda: all_see_each_other(nodes), 30, "4 live nodes everywhere")
        # Idle from here: every node's view summary published and known everywhere, so
        # that datagrams only move heartbeats (news builds events, as it must).
        await wait_until(lambda: _views_settled(nodes), 30, "every view known everywhere")
        watched = nodes[1]  # no seed: its peers are plain peers
        counter = GlueCalls(watched)
        trio.lowlevel.add_instrument(counter)
        try:
            await wait_until(lambda: counter.datagrams >= datagrams, 60, "datagrams")
        finally:
            trio.lowlevel.remove_instrument(counter)
    return counter


@pytest.mark.trio
async def test_an_idle_datagram_builds_no_closure(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A closure is a function object built per datagram (the reply budget's, the digest
    # reader's were): the glue passes methods bound once instead.
    counter = await _count_glue(200, monkeypatch)
    built_per_datagram = [name for name in counter.calls if "<locals>" in name]
    assert built_per_datagram == [], built_per_datagram


@pytest.mark.trio
async def test_an_idle_datagram_costs_a_bounded_number_of_glue_calls(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Measured over the memory network at 53 calls per datagram once the glue was cut
    # (86 before): a report object per digest, Counter.update of empty refusals, events
    # built from no change, the time read twice, a closure... each shows up here. Most of
    # what is left is dict lookups keyed by addresses and node ids (their __hash__ and
    # __eq__ are Python calls). 47.7 in session 9 before the clock was read directly (the
    # run looked up through trio.current_time() once a datagram), 44.7 after.
    counter = await _count_glue(300, monkeypatch)
    assert counter.per_datagram() <= 46, (counter.per_datagram(), counter.calls.most_common(12))


@pytest.mark.trio
async def test_the_node_reads_its_clock_in_one_python_call() -> None:
    # The receive path reads the time once a datagram, the round and the sweep each time
    # they run: trio.current_time() is three Python calls before the clock's own (the
    # wrapper, the run's method, the clock's), the clock read directly one.
    network = MemoryNetwork(seed=3)
    async with open_cluster(1, transport=network.transport()) as nodes:
        node = nodes[0]
        calls: list[str] = []

        def profile(frame: FrameType, event: str, _arg: Any) -> None:
            if event == "call":
                calls.append(frame.f_code.co_qualname)

        sys.setprofile(profile)
        try:
            now = node._now()
        finally:
            sys.setprofile(None)
        assert now == pytest.approx(trio.current_time())
        # The clock's method, and setprofile(None) itself.
        assert [c for c in calls if c != "setprofile"] == ["SystemClock.current_time"], calls
