"""Demo mode: in-process peers beside the dashboard's node, to watch them come and go.

All peers run in the dashboard's own Trio run, each in its own cancel scope, so one can be
stopped (and later restarted with a new generation, as a real restart would) without
touching the others.
"""

from __future__ import annotations

import random
import time
from typing import Any

import attrs
import trio
from textual.message import Message

from gossip_tui.core.models import NodeId, SocketAddress
from gossip_tui.ui._node_api import NodeFactory, NodeHandle
from gossip_tui.ui._trio_bridge import Post

_EPHEMERAL = SocketAddress.parse("127.0.0.1:0")


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
        self, peers: int, *, restart_delay: float = 30.0, rng: random.Random | None = None
    ) -> None:
        if peers < 0:
            raise ValueError("peers must be >= 0")
        self.peers = peers
        self.restart_delay = restart_delay
        self._rng = rng if rng is not None else random.Random()
        self._requests, self._incoming = trio.open_memory_channel[None](8)
        self._slots: list[_Peer] = []
        self._factory: NodeFactory | None = None
        self._post: Post = lambda _message: False

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
        seeds = (str(node.gossip_addr),)
        base_id: str | None = config.node_id
        async with trio.open_nursery() as nursery:
            for index in range(1, self.peers + 1):
                peer_config = attrs.evolve(
                    config,
                    listen_addr=_EPHEMERAL,
                    public_addr=None,
                    node_id=f"{base_id}-peer{index}" if base_id else None,
                    generation=None,
                    seeds=seeds,
                )
                peer = _Peer(index, _without_goodbye(peer_config))
                self._slots.append(peer)
                await nursery.start(self._run_peer, peer)
            post(DemoNotice(f"demo: {self.peers} peers up, seeded with {seeds[0]}"))
            async for _ in self._incoming:
                self._kill_random(nursery)

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


def _without_goodbye(config: Any) -> Any:
    """``config`` with the leave announcement off, where the config class has one."""
    if attrs.has(type(config)) and "announce_leave" in attrs.fields_dict(type(config)):
        return attrs.evolve(config, announce_leave=False)
    return config
