"""Demo mode: peers beside the dashboard's node, to watch them come and go.

The peers run in worker processes, one per core (gossip_tui.ui.demo_workers, each worker
gossip_tui.ui.demo_worker), or in the dashboard's own Trio run (:class:`DemoCluster`: for
test doubles of the node, or where no worker can be started). Each peer has its own cancel
scope, so one can be stopped (and later restarted with a new generation, as a real restart
would) without touching the others. The nodes of one process share the frozen objects each
would otherwise make for itself (:func:`demo_shared_objects`).

A demo is a cluster of its own: unless the operator names them, node 0 takes an ephemeral
port and a cluster id drawn for this run (:func:`demo_overrides`), so a demo started beside
a real local cluster (127.0.0.1:10000, cluster ``testing``) can neither merge into it nor
be joined by its nodes.
"""

from __future__ import annotations

import gc
import random
import secrets
import time
from collections.abc import Collection
from typing import Any

import attrs
import trio
from textual.message import Message

from gossip_tui.core.codec import keep_repeated_syns
from gossip_tui.core.models import NodeId, SocketAddress
from gossip_tui.core.state import ClusterState, SharedObjects
from gossip_tui.ui._node_api import NodeFactory, NodeHandle
from gossip_tui.ui._trio_bridge import Post

_EPHEMERAL = SocketAddress.parse("127.0.0.1:0")
DEMO_CLUSTER_PREFIX = "demo-"
# No node answers the first Syns of more than this many newcomers: with all peers seeded by
# node 0, 199 of them asked it at once, its receive buffer overflowed (a Syn of 200 nodes is
# about 9 KB) and the cluster took 30 s to form.
SEED_FANOUT = 8
# The demo's sockets keep the kernel's receive buffer (212,992 bytes here), on purpose. At
# 200 nodes the process is CPU-bound (a round takes 1.2-1.7 s, not 0.5 s) and ~10 % of the
# datagrams overflow it, but a larger buffer only queues work that is stale by the time it
# is read: with 4 MiB nothing was dropped and the cluster took 49-54 s to form instead of
# 14-19 s, in twice the rounds (scripts/bench/demo_scale.py --receive-buffer).
# Heartbeat intervals each peer keeps per node for phi's mean (a node's default is 1,000):
# in one process N peers keep N * N windows, and at 1,000 floats each 200 peers grew by
# 1.2 MB/s towards 1.3 GB. The mean of the last 32 intervals of a steady rhythm is the same.
PEER_SAMPLING_WINDOW = 32
# The collector's thresholds once the demo's peers are up (see _spare_the_collector).
DEMO_GC_THRESHOLDS = (10_000, 20, 100)
# Bytes of decoded Syns the demo's process holds to hand a repeat out undecoded (see
# codec.keep_repeated_syns): each Syn reaches 3-5 of the peers, a few hundred other Syns
# apart at 200 nodes (~9 KB each); a node alone holds none.
DEMO_SYN_CACHE_BYTES = 4 * 2**20


# Once a peer lists the whole cluster live it gossips at this interval, where its own is
# shorter; forming keeps the fast rounds, and node 0 (the operator's node) keeps its own.
# 200 nodes at the demo's 0.5 s rounds kept both cores busy for as long as the demo ran
# (1.95 CPU-s a second once formed, scripts/bench/demo_scale.py); at 1 s they took ~0.55
# and at 2 s ~0.3, but formed in 8.5 and 16 s instead of ~5.6. The detectors adapt: at the
# switch a peer's phi is measured against the 0.5 s rhythm seen so far, so a 1.5 s gap is
# phi ~1.7 of the threshold's 8 (with the acceptable pause, 7 s are tolerated), and once
# adapted a stopped peer is judged dead after ~15 s, inside the demo's 30 s restart delay.
PEER_CALM_INTERVAL = 1.5
# A peer that never lists everyone (one was stopped while the cluster formed) calms anyway
# this long after it started.
PEER_CALM_AFTER = 60.0


def demo_shared_objects(nodes: int) -> SharedObjects:
    """What the demo's nodes share (see SharedObjects): each node's digest entries, stored
    values and encoded key-values, made once for the process where each of the ``nodes``
    states would make its own. Sized as the core's Simulation sizes it: a handful per node
    in circulation."""
    return SharedObjects(8 * nodes + 1_024)


def demo_cluster_id() -> str:
    """A cluster id for one demo run: no other run, and no node left at its default, has it."""
    return f"{DEMO_CLUSTER_PREFIX}{secrets.token_hex(4)}"


def demo_overrides(given: Collection[str]) -> dict[str, Any]:
    """Node 0's ``listen_addr`` and ``cluster_id`` for a demo, where the operator gave none.

    ``given`` names the settings the operator set (command line, environment or config
    file); those are kept. The result applies to the CLI's settings and to ``NodeConfig``
    alike (``attrs.evolve``): both name the fields the same.
    """
    overrides: dict[str, Any] = {}
    if "listen_addr" not in given:
        overrides["listen_addr"] = _EPHEMERAL
    if "cluster_id" not in given:
        overrides["cluster_id"] = demo_cluster_id()
    return overrides


def live_count(node: Any) -> int:
    """The live nodes ``node`` lists (itself included), without sorting them."""
    engine = getattr(node, "engine", None)
    if engine is not None:
        return 1 + sum(1 for _ in engine.detector.live_nodes())
    return len(node.live_nodes())


async def calm_when_formed(
    node: Any,
    cluster_size: int,
    *,
    interval: float = PEER_CALM_INTERVAL,
    give_up_after: float = PEER_CALM_AFTER,
) -> None:
    """Slow a peer's rounds to ``interval`` (see PEER_CALM_INTERVAL) once it lists
    ``cluster_size`` nodes live, or ``give_up_after`` seconds on; return then. A node
    already as slow, or one that cannot change its interval (a test double), is left as
    it is. Checked once a round of the peer's: the check is a count, not a sort."""
    set_interval = getattr(node, "set_gossip_interval", None)
    current = getattr(getattr(node, "config", None), "gossip_interval", None)
    if set_interval is None or not isinstance(current, float | int) or current >= interval:
        return
    with trio.move_on_after(give_up_after):
        while live_count(node) < cluster_size:
            await trio.sleep(current)
    set_interval(interval)


class DemoNotice(Message):
    """Something the demo did (a peer stopped or restarted), for the event log."""

    def __init__(self, text: str, *, error: bool = False) -> None:
        super().__init__()
        self.text = text
        self.error = error


@attrs.define
class _Peer:
    index: int
    config: Any
    node_id: NodeId | None = None
    scope: trio.CancelScope | None = None
    restarting: bool = False


def _name(peer: _Peer) -> str:
    return peer.node_id.node_id if peer.node_id is not None else "a peer"


class KillRequests:
    """The queue of "stop a random peer" requests (the demo's ``x``) that both kinds of demo
    cluster take from the dashboard and serve in their own Trio task."""

    def __init__(self) -> None:
        self._requests, self._incoming = trio.open_memory_channel[None](8)

    def request_kill(self) -> bool:
        """Queue "stop a random peer". Called from Textual's thread (Trio's thread too)."""
        try:
            self._requests.send_nowait(None)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True


class DemoCluster(KillRequests):
    """Runs ``peers`` extra nodes seeded with node 0's address; stops one on request.

    A stopped peer comes back after ``restart_delay`` seconds, on the same id and address
    with a higher generation: long enough for the others to declare it dead first. Peers
    stop without announcing their departure, as a crash would, so that it is the failure
    detector that has to notice (phi climbing to the threshold, then "dead").
    """

    def __init__(
        self,
        peers: int,
        *,
        restart_delay: float = 30.0,
        rng: random.Random | None = None,
        tune_process: bool = False,
    ) -> None:
        if peers < 0:
            raise ValueError("peers must be >= 0")
        self.peers = peers
        # Whether the process is the demo's (the CLI's, the bench's), not a test session
        # that runs one among others: its garbage collector is retuned once the peers are
        # up (see _spare_the_collector) and the codec holds repeated Syns while it runs.
        self.tune_process = tune_process
        self.restart_delay = restart_delay
        self._rng = rng if rng is not None else random.Random()
        super().__init__()
        self._slots: list[_Peer] = []
        self._factory: NodeFactory | None = None
        self._post: Post = lambda _message: False
        self._shared = demo_shared_objects(peers + 1)

    @property
    def running(self) -> list[NodeId]:
        """Ids of the peers currently up."""
        return [p.node_id for p in self._slots if p.scope is not None and p.node_id is not None]

    async def run(self, node: NodeHandle, factory: NodeFactory, config: Any, post: Post) -> None:
        self._factory = factory
        self._post = post
        base_id: str | None = config.node_id
        peer_base = _for_peers(config)
        seed_of: dict[int, str] = {0: str(node.gossip_addr)}
        if self.tune_process:
            keep_repeated_syns(DEMO_SYN_CACHE_BYTES)
        self._share(node, self._shared)
        try:
            async with trio.open_nursery() as nursery:
                for wave in _waves(self.peers, SEED_FANOUT):
                    # A wave starts at once (a start is mostly waiting on the scheduler, one at a
                    # time 200 of them took 12 s); its seeds are all up by then.
                    async with trio.open_nursery() as starting:
                        for index in wave:
                            peer_config = attrs.evolve(
                                peer_base,
                                listen_addr=_EPHEMERAL,
                                public_addr=None,
                                node_id=f"{base_id}-peer{index}" if base_id else None,
                                generation=None,
                                seeds=(seed_of[_seed_index(index, SEED_FANOUT)],),
                            )
                            peer = _Peer(index, peer_config)
                            self._slots.append(peer)
                            starting.start_soon(nursery.start, self._run_peer, peer)
                    for peer in self._slots[-len(wave) :]:
                        if peer.node_id is not None:
                            seed_of[peer.index] = str(peer.node_id.gossip_addr)
                if self.tune_process:
                    _spare_the_collector()
                post(
                    DemoNotice(
                        f"demo: {self.peers} peers up, seeded through node 0 ({seed_of[0]}), "
                        f"at most {SEED_FANOUT} per seed"
                    )
                )
                async for _ in self._incoming:
                    self._kill_random(nursery)
        finally:
            # Node 0 may go on alone: its state makes its own objects again.
            self._share(node, None)
            if self.tune_process:
                # Given back as a process alone has it (none held): the process may go on.
                keep_repeated_syns()

    @staticmethod
    def _share(node: object, shared: SharedObjects | None) -> None:
        """Let ``node``'s cluster state take its frozen objects from ``shared`` (None: make
        its own), where it has one: a real node does, the dashboard tests' fakes do not.
        Shared objects are equal to the copies each state would make: nothing changes but
        the CPU and memory."""
        state = getattr(getattr(node, "engine", None), "state", None)
        if isinstance(state, ClusterState):
            state.shared = shared

    def _kill_random(self, nursery: trio.Nursery) -> None:
        candidates = [p for p in self._slots if p.scope is not None and not p.restarting]
        if not candidates:
            self._post(DemoNotice("demo: no running peer to stop"))
            return
        peer = self._rng.choice(candidates)
        assert peer.scope is not None
        peer.restarting = True
        peer.scope.cancel()
        self._post(
            DemoNotice(f"demo: stopped {_name(peer)}; restarting in {self.restart_delay:g}s")
        )
        nursery.start_soon(self._restart_later, peer, nursery)

    async def _restart_later(self, peer: _Peer, nursery: trio.Nursery) -> None:
        await trio.sleep(self.restart_delay)
        old = peer.node_id
        if old is not None:
            peer.config = attrs.evolve(
                peer.config,
                node_id=old.node_id,
                listen_addr=old.gossip_addr,
                generation=max(time.time_ns() // 1_000_000, old.generation + 1),
            )
        try:
            await nursery.start(self._run_peer, peer)
        except Exception as error:  # a peer that cannot come back must not end the demo
            self._post(DemoNotice(f"demo: could not restart {old}: {error!r}", error=True))
        else:
            generation = peer.node_id.generation if peer.node_id else "?"
            self._post(DemoNotice(f"demo: restarted {_name(peer)} as generation {generation}"))
        finally:
            peer.restarting = False

    async def _run_peer(
        self, peer: _Peer, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        assert self._factory is not None
        started = False
        scope = trio.CancelScope()
        try:
            with scope:
                async with self._factory(peer.config) as node:
                    self._share(node, self._shared)
                    peer.node_id = node.self_id
                    peer.scope = scope
                    started = True
                    task_status.started()
                    await calm_when_formed(node, self.peers + 1)
                    await trio.sleep_forever()
        except Exception as error:
            if not started:
                raise
            self._post(DemoNotice(f"demo: peer {_name(peer)} failed: {error!r}", error=True))
        finally:
            if peer.scope is scope:  # a restart may already have put a new scope there
                peer.scope = None


def _spare_the_collector() -> None:
    """Keep Python's cyclic garbage collector from taking a fifth of the demo's CPU.

    200 nodes in one process hold millions of tracked objects (digest entries, states,
    detector windows) and allocate fast: at the default thresholds a run of
    scripts/bench/demo_scale.py spent ~5.7 of its ~26 CPU-seconds collecting, 4.6 of them
    in 15 full collections. Freezing what start-up built keeps it out of every later
    collection, and collecting the young generation every 10,000 allocations instead of
    700 (older ones less often too) leaves <1 CPU-second of it. The gossip code makes few
    reference cycles: reference counting frees nearly everything, so memory stays as it
    was."""
    gc.freeze()
    young, middle, old = DEMO_GC_THRESHOLDS
    # Under the dashboard its QuietCollector owns the full collections (a far higher old
    # threshold): kept, so that none starts in the middle of typing.
    gc.set_threshold(young, middle, max(old, gc.get_threshold()[2]))


def _waves(peers: int, fanout: int) -> list[range]:
    """Peer indexes 1..peers in start order, by level of the seed tree: 1..fanout first
    (seeded with node 0), then the peers those seed, and so on."""
    waves: list[range] = []
    first = 1
    size = fanout
    while first <= peers:
        last = min(peers, first + size - 1)
        waves.append(range(first, last + 1))
        first, size = last + 1, size * fanout
    return waves


def _seed_index(index: int, fanout: int) -> int:
    """The peer that seeds peer ``index`` (0 is node 0): a tree of ``fanout`` children per
    node, so that no node answers the first Syns of more than ``fanout`` newcomers."""
    return (index - 1) // fanout


def _for_peers(config: Any) -> Any:
    """``config`` as every peer takes it: without the leave announcement (a stopped peer
    goes as a crash would) and with a short sampling window, where the config class has
    them (the dashboard's tests hand a fake config without)."""
    fields = attrs.fields_dict(type(config)) if attrs.has(type(config)) else {}
    changes: dict[str, Any] = {}
    if "announce_leave" in fields:
        changes["announce_leave"] = False
    detector: Any = getattr(config, "failure_detector", None)
    if "failure_detector" in fields and attrs.has(type(detector)):
        changes["failure_detector"] = attrs.evolve(
            detector,
            sampling_window_size=min(detector.sampling_window_size, PEER_SAMPLING_WINDOW),
        )
    return attrs.evolve(config, **changes) if changes else config
