"""The demo's peers in worker processes, one per core (issues 15, 17): the dashboard's
process keeps node 0 and the UI while each worker (``python -m gossip_tui.ui.demo_worker``)
runs its share of the peers. :func:`demo_cluster` chooses between these workers and the
in-process :class:`gossip_tui.ui.demo.DemoCluster`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import random
import subprocess
import sys
import time
from typing import Any

import attrs
import trio

from gossip_tui.core.models import NodeId, SocketAddress
from gossip_tui.ui._node_api import NodeFactory, NodeHandle
from gossip_tui.ui._trio_bridge import Post
from gossip_tui.ui.demo import (
    _EPHEMERAL,
    SEED_FANOUT,
    DemoCluster,
    DemoNotice,
    KillRequests,
    _for_peers,
    _seed_index,
    _waves,
)

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


class WorkerDemoCluster(KillRequests):
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
        super().__init__()
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

    async def run(self, node: NodeHandle, factory: NodeFactory, config: Any, post: Post) -> None:
        self._post = post
        base_id: str | None = config.node_id
        peer_base = attrs.evolve(_for_peers(config), public_addr=None)
        header = {
            "config": base64.b64encode(pickle.dumps(peer_base)).decode("ascii"),
            "nodes": -(-self.peers // self.workers) + 1,
            "cluster_size": self.peers + 1,
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
