"""An idle node's trips through the Trio scheduler, counted (never timed): each task step
of an idle node costs a wake-up's CPU, so a step more per round shows up in the idle
CPU per node (issue 17). A Trio instrument counts the steps of chosen tasks."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Callable

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from gossip_tui.core.models import SocketAddress
from gossip_tui.node import Node
from gossip_tui.node._transport import _YIELD_EVERY, UdpSocket, UdpTransport
from gossip_tui.testing import MemoryNetwork

from .helpers import all_see_each_other, node_task, open_cluster, wait_until

LOCALHOST = SocketAddress.parse("127.0.0.1:0")


class StepCounter(trio.abc.Instrument):
    """Task steps by the label ``label_of`` gives a task (None: not counted)."""

    def __init__(self, label_of: Callable[[trio.lowlevel.Task], str | None]) -> None:
        self.label_of = label_of
        self.steps: Counter[str] = Counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        label = self.label_of(task)
        if label is not None:
            self.steps[label] += 1


def _by_name(*names: str) -> Callable[[trio.lowlevel.Task], str | None]:
    def label_of(task: trio.lowlevel.Task) -> str | None:
        last = task.name.rsplit(".", 1)[-1]
        return last if last in names else None

    return label_of


async def _ping_pong(
    asking: UdpSocket,
    echoing: UdpSocket,
    exchanges: int,
    instrument: trio.abc.Instrument | None = None,
) -> None:
    """``exchanges`` pings from ``asking``, each echoed by a task named ``echo`` on
    ``echoing`` and awaited before the next; both sockets closed after. ``instrument``
    watches the exchanges only, from when the echo task first waits."""

    async def echo() -> None:
        while True:
            data, source = await echoing.recv()
            await echoing.send(data, source)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            await wait_all_tasks_blocked()
            if instrument is not None:
                trio.lowlevel.add_instrument(instrument)
            try:
                for i in range(exchanges):
                    await asking.send(b"ping %d" % i, echoing.local_address)
                    data, _source = await asking.recv()
                    assert data == b"ping %d" % i
            finally:
                if instrument is not None:
                    trio.lowlevel.remove_instrument(instrument)
            nursery.cancel_scope.cancel()
    finally:
        echoing.close()
        asking.close()


@pytest.mark.trio
async def test_a_socket_that_waits_after_each_datagram_takes_one_step_per_datagram() -> None:
    # An idle node's receive loop: a datagram, its reply, then a wait for the next. The
    # wait is a trip through the scheduler, so no extra checkpoint is owed: one step per
    # datagram, where a yield every _YIELD_EVERY calls added one per 8 datagrams.
    transport = UdpTransport()
    echoing = await transport.bind(LOCALHOST)
    asking = await transport.bind(LOCALHOST)
    exchanges = 8 * _YIELD_EVERY
    counter = StepCounter(_by_name("echo"))
    await _ping_pong(asking, echoing, exchanges, counter)
    # Each step starts with the datagram that woke it and ends waiting for the next.
    assert counter.steps["echo"] <= exchanges + 1, counter.steps


@pytest.mark.trio
async def test_a_flood_still_lets_the_other_tasks_run() -> None:
    # Datagrams queued faster than they are read: recv never waits, so it must yield now
    # and again on its own or the node's other tasks (the round, the sweep) would starve.
    transport = UdpTransport()
    flooded = await transport.bind(LOCALHOST)
    queued = 8 * _YIELD_EVERY
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ticks = 0
    ticks_while_reading: list[int] = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    try:
        target = (flooded.local_address.host, flooded.local_address.port)
        for i in range(queued):
            sender.sendto(b"flood %d" % i, target)  # on loopback: queued once sent
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await trio.lowlevel.checkpoint()
            started = ticks
            for _ in range(queued):
                await flooded.recv()
            ticks_while_reading.append(ticks - started)
            nursery.cancel_scope.cancel()
    finally:
        sender.close()
        flooded.close()
    assert ticks_while_reading[0] >= queued // _YIELD_EVERY - 1


def _node_tasks(node: Node) -> Callable[[trio.lowlevel.Task], str | None]:
    return lambda task: node_task(node, task)


@pytest.mark.trio
async def test_an_idle_node_takes_one_step_per_round_per_sweep_and_per_datagram() -> None:
    # Real UDP, real time, but nothing timed: what is counted is how many steps the node's
    # tasks took against how many rounds, sweeps and datagrams they had to do.
    async with open_cluster(3) as nodes:
        await wait_until(lambda: all_see_each_other(nodes), 20, "3 live UDP nodes")
        watched = nodes[1]
        counter = StepCounter(_node_tasks(watched))
        rounds_before = watched.stats.rounds
        datagrams_before = watched.stats.datagrams_in
        trio.lowlevel.add_instrument(counter)
        try:
            await wait_until(
                lambda: watched.stats.rounds >= rounds_before + 100, 60, "100 more rounds"
            )
        finally:
            trio.lowlevel.remove_instrument(counter)
        rounds = watched.stats.rounds - rounds_before
        datagrams = watched.stats.datagrams_in - datagrams_before
    steps = counter.steps
    # A round is one step (woken by its deadline, asleep again once sent), and so is a
    # sweep; give each one step of slack for the edges of the window.
    assert steps["_gossip_loop"] <= rounds + 1, (steps, rounds)
    assert steps["_failure_detector_loop"] <= rounds + 2, (steps, rounds)
    # A step per datagram at most: several queued at once are read in one.
    assert steps["_receive_loop"] <= datagrams + 1, (steps, datagrams)
    assert datagrams >= rounds  # the watched node did hear its peers meanwhile


@pytest.mark.trio
async def test_an_idle_nodes_liveness_sweep_sleeps_through_the_slots_that_change_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Live peers beating steadily: phi needs seconds (the acceptable pause alone is 3 s,
    # 60 rounds here) to reach the threshold, so nearly every slot's sweep would judge
    # every node as the last did. The loop wakes for the few that may not.
    async with open_cluster(3, transport=MemoryNetwork(seed=5).transport()) as nodes:
        await wait_until(lambda: all_see_each_other(nodes), 30, "3 live nodes")
        watched = nodes[1]
        counter = StepCounter(_node_tasks(watched))
        rounds_before = watched.stats.rounds
        trio.lowlevel.add_instrument(counter)
        try:
            await wait_until(
                lambda: watched.stats.rounds >= rounds_before + 400, 60, "400 more rounds"
            )
        finally:
            trio.lowlevel.remove_instrument(counter)
        assert all_see_each_other(nodes)
    # One sweep every interval was 400; every MAX_SKIPPED_SWEEPS slots is the floor.
    assert counter.steps["_failure_detector_loop"] <= 400 // 16, counter.steps


@pytest.mark.trio
async def test_a_datagram_that_a_wait_brought_owes_no_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    # The wait for readability was the call's checkpoint already: a cancellation check
    # after it (checkpoint_if_cancelled, three Python calls) would be a second one per
    # datagram of an idle node. Sends, which never wait on an idle node, keep theirs.
    transport = UdpTransport()
    echoing = await transport.bind(LOCALHOST)
    asking = await transport.bind(LOCALHOST)
    paced: Counter[str] = Counter()
    pace = UdpSocket._pace

    async def counting_pace(self: UdpSocket) -> None:
        paced["echoing" if self is echoing else "asking"] += 1
        await pace(self)

    monkeypatch.setattr(UdpSocket, "_pace", counting_pace)
    exchanges = 20
    await _ping_pong(asking, echoing, exchanges)
    # Each side paced its sends only: every recv found its socket empty and waited.
    assert paced == {"echoing": exchanges, "asking": exchanges}, paced


@pytest.mark.trio
async def test_a_peer_sent_to_comes_back_as_the_address_object_sent_to() -> None:
    # The node's lookups by address (reply budgets, seeds) hit on identity, where an
    # equal copy costs an __eq__ of the address and one of its ip (Python calls) each.
    transport = UdpTransport()
    one = await transport.bind(LOCALHOST)
    other = await transport.bind(LOCALHOST)
    try:
        # An equal copy of the peer's address, not the socket's own object.
        peer = SocketAddress.parse(str(other.local_address))
        assert peer is not other.local_address
        # Heard from first (an address of the transport's making), then sent to.
        await other.send(b"hello", one.local_address)
        _data, heard = await one.recv()
        assert heard == peer and heard is not peer
        await one.send(b"ping", peer)
        await other.recv()
        await other.send(b"pong", one.local_address)
        _data, source = await one.recv()
        assert source is peer
    finally:
        one.close()
        other.close()
