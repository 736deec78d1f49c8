"""Demo mode: peers beside the dashboard's node, to watch them come and go.

The peers run in worker processes, one per core (:class:`WorkerDemoCluster`, each worker
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

import base64
import contextlib
import gc
import json
import os
import pickle
import random
import secrets
import subprocess
import sys
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


class DemoCluster:
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
        self._requests, self._incoming = trio.open_memory_channel[None](8)
        self._slots: list[_Peer] = []
        self._factory: NodeFactory | None = None
        self._post: Post = lambda _message: False
        self._shared = demo_shared_objects(peers + 1)

    @property
    def running(self) -> list[NodeId]:
        """Ids of the peers currently up."""
        return [p.node_id for p in self._slots if p.scope is not None and p.node_id is not None]

    def request_kill(self) -> bool:
        """Queue "stop a random peer". Called from Textual's thread (Trio's thread too)."""
        try:
            self._requests.send_nowait(None)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

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


# --------------------------------------------------------------------------- worker processes

# The module each worker runs (``python -m``): gossip_tui/ui/demo_worker.py.
WORKER_MODULE = "gossip_tui.ui.demo_worker"
# Seconds a worker has to stop its peers once its stdin is closed, before it is killed.
WORKER_EXIT_TIMEOUT = 5.0


def default_workers() -> int:
    """Worker processes for the demo's peers: one per core (the dashboard's process keeps
    node 0 and the UI, mostly idle beside 200 peers' rounds)."""
    return max(1, os.cpu_count() or 1)


def worker_path_unavailable() -> str | None:
    """Why the peers cannot run in worker processes here, or None when they can."""
    if not sys.executable:
        # Embedded or frozen: no interpreter to start ``python -m`` with.
        return "no Python executable to start workers with"
    return None


@attrs.define
class _RemotePeer:
    index: int
    worker: int
    seeds: list[str]
    node_id: NodeId | None = None
    up: bool = False
    restarting: bool = False
    # Set when the worker reports this peer up, or failed to start.
    reported: trio.Event = attrs.field(factory=trio.Event)
    error: str | None = None


@attrs.define
class _Worker:
    number: int
    process: trio.Process
    alive: bool = True


class WorkerDemoCluster:
    """The demo's peers in ``workers`` child processes (see gossip_tui.ui.demo_worker).

    The same service as :class:`DemoCluster` (``run``, ``request_kill``, ``running``) and the
    same cluster: peers seeded in the same tree of SEED_FANOUT, started in the same waves,
    stopped as a crash would and restarted on their id and address with a higher
    generation. Peer ``i`` runs in worker ``i % workers``. The workers run the real
    runtime whatever ``factory`` the dashboard was given: test doubles need the in-process
    DemoCluster. Each worker ends at the end of its stdin, so none outlives the dashboard.
    """

    def __init__(
        self,
        peers: int,
        *,
        workers: int | None = None,
        restart_delay: float = 30.0,
        rng: random.Random | None = None,
        views_every: float | None = None,
    ) -> None:
        if peers < 0:
            raise ValueError("peers must be >= 0")
        self.peers = peers
        self.workers = max(1, min(workers or default_workers(), max(1, peers)))
        self.restart_delay = restart_delay
        # How often each worker reports every peer's view (views), None: never.
        self.views_every = views_every
        self._rng = rng if rng is not None else random.Random()
        self._requests, self._incoming = trio.open_memory_channel[None](8)
        self._slots: list[_RemotePeer] = []
        self._workers: list[_Worker] = []
        self._post: Post = lambda _message: False
        # Peer index -> [live, dead, rounds, datagrams_out, datagrams_in], as last reported.
        self.views: dict[int, list[int]] = {}

    @property
    def running(self) -> list[NodeId]:
        """Ids of the peers currently up."""
        return [p.node_id for p in self._slots if p.up and p.node_id is not None]

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the workers still running."""
        return [w.process.pid for w in self._workers if w.alive]

    def request_kill(self) -> bool:
        """Queue "stop a random peer". Called from Textual's thread (Trio's thread too)."""
        try:
            self._requests.send_nowait(None)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

    async def run(self, node: NodeHandle, factory: NodeFactory, config: Any, post: Post) -> None:
        self._post = post
        base_id: str | None = config.node_id
        peer_base = attrs.evolve(_for_peers(config), public_addr=None)
        header = {
            "config": base64.b64encode(pickle.dumps(peer_base)).decode("ascii"),
            "nodes": -(-self.peers // self.workers) + 1,
            "views_every": self.views_every,
        }
        seed_of: dict[int, str] = {0: str(node.gossip_addr)}
        async with trio.open_nursery() as nursery:
            try:
                for number in range(self.workers):
                    process = await trio.lowlevel.open_process(
                        [sys.executable, "-m", WORKER_MODULE],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        # Its own session: the terminal's signals (Ctrl-C, a hang-up) are
                        # the dashboard's to act on; the worker goes at end of its stdin.
                        start_new_session=True,
                    )
                    worker = _Worker(number, process)
                    self._workers.append(worker)
                    await self._send(worker, header)
                    nursery.start_soon(self._read_reports, worker)
                    nursery.start_soon(self._read_errors, worker)
                for wave in _waves(self.peers, SEED_FANOUT):
                    for index in wave:
                        seeds = [seed_of[_seed_index(index, SEED_FANOUT)]]
                        peer = _RemotePeer(index, (index - 1) % self.workers, seeds)
                        self._slots.append(peer)
                        await self._start(
                            peer,
                            node_id=f"{base_id}-peer{index}" if base_id else None,
                            listen_addr=str(_EPHEMERAL),
                            generation=None,
                        )
                    for peer in self._slots[-len(wave) :]:
                        await peer.reported.wait()
                        if peer.error is not None or peer.node_id is None:
                            problem = peer.error or "its worker ended"
                            raise RuntimeError(f"demo peer {peer.index} did not start: {problem}")
                        seed_of[peer.index] = str(peer.node_id.gossip_addr)
                for worker in self._workers:
                    await self._send(worker, {"tune": True})
                post(
                    DemoNotice(
                        f"demo: {self.peers} peers up in {self.workers} worker processes, "
                        f"seeded through node 0 ({seed_of[0]}), at most {SEED_FANOUT} per seed"
                    )
                )
                async for _ in self._incoming:
                    await self._kill_random(nursery)
            finally:
                with trio.CancelScope(shield=True):
                    await self._stop_workers()
                nursery.cancel_scope.cancel()

    async def _send(self, worker: _Worker, request: dict[str, Any]) -> None:
        """One request to ``worker``; lost if the worker has ended (_read_reports says so)."""
        stdin = worker.process.stdin
        assert stdin is not None
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stdin.send_all(json.dumps(request).encode() + b"\n")

    async def _start(self, peer: _RemotePeer, **request: Any) -> None:
        peer.reported = trio.Event()
        peer.error = None
        await self._send(
            self._workers[peer.worker], {"start": peer.index, "seeds": peer.seeds, **request}
        )

    async def _stop_workers(self) -> None:
        """Close every worker's stdin (end of input: it stops its peers and exits) and wait
        for it; kill one that does not go in time."""
        for worker in self._workers:
            if worker.process.stdin is not None:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await worker.process.stdin.aclose()
        with trio.move_on_after(WORKER_EXIT_TIMEOUT):
            for worker in self._workers:
                await worker.process.wait()
        for worker in self._workers:
            if worker.process.returncode is None:
                worker.process.kill()
                await worker.process.wait()
            worker.alive = False

    async def _read_reports(self, worker: _Worker) -> None:
        from gossip_tui.ui.demo_worker import read_lines

        stdout = worker.process.stdout
        assert stdout is not None
        by_index = {p.index: p for p in self._slots}
        async for line in read_lines(stdout):
            report = json.loads(line)
            if "views" in report:
                for index, *view in report["views"]:
                    self.views[index] = view
                continue
            index = next(iter(report.values()))
            peer = by_index.get(index)
            if peer is None:
                by_index = {p.index: p for p in self._slots}
                peer = by_index[index]
            if "up" in report:
                peer.node_id = NodeId(
                    report["node_id"],
                    report["generation"],
                    SocketAddress.parse(report["addr"]),
                )
                peer.up = True
                peer.reported.set()
            elif "failed" in report:
                peer.error = report["error"]
                peer.reported.set()
                self._post(
                    DemoNotice(f"demo: peer {_remote_name(peer)} failed: {peer.error}", error=True)
                )
            elif "down" in report:
                peer.up = False
                self.views.pop(index, None)
        worker.alive = False
        for peer in self._slots:
            if peer.worker == worker.number:
                peer.up = False
                peer.reported.set()
        self._post(DemoNotice(f"demo: worker {worker.number} has ended", error=True))

    async def _read_errors(self, worker: _Worker) -> None:
        """A worker's stderr (a traceback, a warning) goes to the event log: the terminal
        is the dashboard's."""
        from gossip_tui.ui.demo_worker import read_lines

        stderr = worker.process.stderr
        assert stderr is not None
        async for line in read_lines(stderr):
            text = line.decode(errors="replace")
            self._post(DemoNotice(f"demo worker {worker.number}: {text}", error=True))

    async def _kill_random(self, nursery: trio.Nursery) -> None:
        candidates = [p for p in self._slots if p.up and not p.restarting]
        if not candidates:
            self._post(DemoNotice("demo: no running peer to stop"))
            return
        peer = self._rng.choice(candidates)
        peer.restarting = True
        # Up until its worker reports it down: `running` says what the workers run.
        await self._send(self._workers[peer.worker], {"stop": peer.index})
        self._post(
            DemoNotice(f"demo: stopped {_remote_name(peer)}; restarting in {self.restart_delay:g}s")
        )
        nursery.start_soon(self._restart_later, peer)

    async def _restart_later(self, peer: _RemotePeer) -> None:
        await trio.sleep(self.restart_delay)
        old = peer.node_id
        try:
            if old is not None:
                await self._start(
                    peer,
                    node_id=old.node_id,
                    listen_addr=str(old.gossip_addr),
                    generation=max(time.time_ns() // 1_000_000, old.generation + 1),
                )
            await peer.reported.wait()
        finally:
            peer.restarting = False
        if peer.error is not None or not peer.up:
            self._post(DemoNotice(f"demo: could not restart {old}: {peer.error}", error=True))
        else:
            generation = peer.node_id.generation if peer.node_id else "?"
            self._post(
                DemoNotice(f"demo: restarted {_remote_name(peer)} as generation {generation}")
            )


def _remote_name(peer: _RemotePeer) -> str:
    return peer.node_id.node_id if peer.node_id is not None else "a peer"


def demo_cluster(
    peers: int,
    *,
    workers: int | None = None,
    restart_delay: float = 30.0,
    custom_factory: bool = False,
) -> DemoCluster | WorkerDemoCluster:
    """The demo's peers: in worker processes when they can be, else in the dashboard's own
    process (``workers`` 0, a ``custom_factory`` the workers could not run, or no
    interpreter to start them with)."""
    if workers == 0 or custom_factory or worker_path_unavailable() is not None:
        return DemoCluster(peers, restart_delay=restart_delay, tune_process=True)
    return WorkerDemoCluster(peers, workers=workers, restart_delay=restart_delay)
