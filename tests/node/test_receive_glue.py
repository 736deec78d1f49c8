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


async def _count_glue(datagrams: int) -> GlueCalls:
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
async def test_an_idle_datagram_builds_no_closure(autojump_clock: trio.abc.Clock) -> None:
    # A closure is a function object built per datagram (the reply budget's, the digest
    # reader's were): the glue passes methods bound once instead.
    counter = await _count_glue(200)
    built_per_datagram = [name for name in counter.calls if "<locals>" in name]
    assert built_per_datagram == [], built_per_datagram


@pytest.mark.trio
async def test_an_idle_datagram_costs_a_bounded_number_of_glue_calls(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Measured over the memory network at 53 calls per datagram once the glue was cut
    # (86 before): a report object per digest, Counter.update of empty refusals, events
    # built from no change, the time read twice, a closure... each shows up here. Most of
    # what is left is dict lookups keyed by addresses and node ids (their __hash__ and
    # __eq__ are Python calls).
    counter = await _count_glue(300)
    assert counter.per_datagram() <= 60, (counter.per_datagram(), counter.calls.most_common(12))
