"""The running node: the engine driven by Trio tasks over a datagram transport.

This module is the facade (the public methods of :class:`Node`, its errors, and
:func:`open_node`); the node's parts live beside it as mixins: _node_base (shared state
and plumbing), _loops, _seeds, _persistence, _leave."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio

from gossip_tui.core.codec import MAX_DATAGRAM_SIZE
from gossip_tui.core.engine import GossipEngine, LivenessReadings, fits_in_one_delta
from gossip_tui.core.errors import GossipTuiError
from gossip_tui.core.events import NodeRemoved, change_events
from gossip_tui.core.expiry import check_ttl
from gossip_tui.core.generations import Restart, restarts_in
from gossip_tui.core.models import ClusterSnapshot, NodeId, NodeSnapshot, SocketAddress

from ._config import NodeConfig, default_node_id
from ._events import NodeEvent
from ._identity import load_or_create_node_id
from ._leave import NodeLeave
from ._local_store import SavedKeys, keep_refused_keys, recover_saved_keys
from ._loops import NodeLoops
from ._persistence import _MANAGED_KEYS, NodePersistence
from ._seeds import SeedResolver
from ._transport import Transport, UdpTransport
from ._views import NodeViews

log = logging.getLogger("gossip_tui.node")

# The most a key and its value may take together: room for the headers around them in
# one datagram (sealed or not), the node's own name, and some margin. Node.set also
# checks the exact fit, which only a very long node name can make the tighter bound.
MAX_KEY_VALUE_BYTES = 60_000


# How long a closing node lets its subscribers act on the end of their events, at most.
_SUBSCRIBERS_GRACE = 0.1


def _generation_now() -> int:
    # Unix time in milliseconds: a node restarted within the same second (a crash loop
    # under systemd) still gets a new generation, which peers need to tell the new
    # incarnation from the old one. chitchat-test uses seconds; Quickwit nanoseconds.
    return time.time_ns() // 1_000_000


class KeyValueTooLarge(GossipTuiError, ValueError):
    """A key or value that could never be gossiped in a single datagram."""


class NodeStateFull(KeyValueTooLarge):
    """A write that would take this node's keys past the memory bound every gossip-tui
    peer keeps for one node: the peers would refuse it, so it is refused here."""


def _check_size(engine: GossipEngine, key: str, value: str) -> None:
    if not key:
        raise ValueError("a key must not be empty")
    size = len(key.encode()) + len(value.encode())
    if size > MAX_KEY_VALUE_BYTES:
        raise KeyValueTooLarge(
            f"key and value take {size:,} bytes; at most {MAX_KEY_VALUE_BYTES:,} "
            "fit in a gossip datagram"
        )
    if not fits_in_one_delta(engine.self_id, key, value, engine.max_datagram_size):
        name = len(engine.self_id.node_id.encode())
        raise KeyValueTooLarge(
            f"key and value take {size:,} bytes, which do not fit in a gossip datagram "
            f"beside this node's {name:,}-byte name"
        )
    after = engine.self_state.size_after_set(key, value)
    bound = engine.state.limits.max_node_state_bytes
    if after > bound:
        raise NodeStateFull(
            f"this node's keys would hold {after:,} bytes of memory, over the {bound:,} "
            "bytes peers keep for one node: peers would refuse the change. "
            "Delete keys to make room (a deleted key still counts until its tombstone "
            "is collected)."
        )


class Node(NodeLoops, SeedResolver, NodePersistence, NodeLeave, NodeViews):
    """A live gossip node. Get one from :func:`open_node`.

    The write methods are synchronous: call them from Trio tasks, or from the thread
    that hosts Trio in guest mode (Textual's). From any other thread, go through
    ``trio.from_thread`` with the run's token.
    """

    # ------------------------------------------------------------------ identity

    @property
    def self_id(self) -> NodeId:
        return self.engine.self_id

    @property
    def cluster_id(self) -> str:
        return self.engine.cluster_id

    @property
    def gossip_addr(self) -> SocketAddress:
        """The address the socket is bound to (with the real port when 0 was asked)."""
        return self._socket.local_address

    # ------------------------------------------------------------------ local keys

    def set(self, key: str, value: str, *, ttl: float | None = None) -> None:
        """Set a local key. With ``ttl`` (seconds, > 0) the key lives until then and is
        deleted (peers see an ordinary delete; see gossip_tui.core.expiry); without it,
        any expiry the key had is cleared. Raises ValueError (``InvalidTtl``) for a bad
        ``ttl``, before anything changes."""
        seconds = None if ttl is None else check_ttl(ttl)
        _check_size(self.engine, key, value)
        self.engine.self_state.set(key, value)
        if seconds is None:
            self.expiries.clear(key)
        else:
            self.expiries.schedule(key, self._now() + seconds)
        self._local_changed()

    def set_with_ttl(self, key: str, value: str) -> None:
        """Set a value that is removed after the marked-for-deletion grace period
        (chitchat's DeleteAfterTtl, no duration of its own)."""
        _check_size(self.engine, key, value)
        self.engine.self_state.set_with_ttl(key, value, self._now())
        self.expiries.clear(key)
        self._local_changed()

    def delete(self, key: str) -> bool:
        """Delete a local key; False if there was no such key."""
        deleted = self.engine.self_state.delete(key, self._now())
        self.expiries.clear(key)
        self._local_changed()
        return deleted

    def delete_after_ttl(self, key: str) -> bool:
        """Keep a local key visible for the grace period, then remove it."""
        marked = self.engine.self_state.delete_after_ttl(key, self._now())
        self.expiries.clear(key)
        self._local_changed()
        return marked

    def key_expiries(self) -> Mapping[str, float]:
        """The deadlines of the local keys that expire, in the node's clock (the one
        snapshots and readings are taken at): key -> deadline."""
        return self.expiries.deadlines

    # ------------------------------------------------------------------ reading

    def get(self, key: str, node: NodeId | None = None) -> str | None:
        state = self.engine.state.node_state(node or self.self_id)
        return None if state is None else state.get(key)

    def live_nodes(self) -> list[NodeId]:
        return self.engine.live_nodes()

    def dead_nodes(self) -> list[NodeId]:
        return self.engine.dead_nodes()

    def known_nodes(self) -> list[NodeId]:
        """Every node this one knows, whatever its liveness, itself included; unlike
        :meth:`snapshot`, nothing of their state is copied."""
        return list(self.engine.state.nodes())

    def snapshot(self) -> ClusterSnapshot:
        return self.engine.snapshot(self._now())

    def node_snapshot(self, node: NodeId) -> NodeSnapshot | None:
        """One node's full state, key-values included; None for a node not known."""
        return self.engine.node_snapshot(node, self._now())

    def liveness_readings(self) -> LivenessReadings:
        """Every node's liveness, heartbeat and phi, without copying any key."""
        return self.engine.liveness_readings(self._now())

    def restarts(self) -> dict[NodeId, Restart]:
        """Live nodes known under an older generation too (they restarted), by live id."""
        return restarts_in(self.snapshot().nodes)

    def forget(self, node: NodeId) -> bool:
        """Drop a dead or left node from this node's view now (local only), rather than
        after the dead-node grace period. False when the node is unknown; raises
        ``NodeIsLive`` (a ValueError) for a live node or this one."""
        if not self.engine.forget(node):
            return False
        self._peer_views.forget(node)
        # Not an engine step: the removal's records are news at once, as a local write's.
        self._publish_all([NodeRemoved(node), *change_events(self.engine.drain_changes())])
        return True

    def subscribe(
        self, prefix: str = "", max_buffer: int = 1_000
    ) -> trio.MemoryReceiveChannel[NodeEvent]:
        """Events from now on. Membership events always; key events for keys under
        ``prefix``. A subscriber that falls ``max_buffer`` events behind loses events
        (counted in ``stats.events_dropped``) rather than slowing the node down."""
        return self._fanout.subscribe(prefix, max_buffer)

    async def start_service(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run a task in the node's nursery (``nursery.start``); it ends with the node."""
        return await self._nursery.start(async_fn, *args)

    # ------------------------------------------------------------------ tasks

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        try:
            with self._tasks:
                async with trio.open_nursery() as nursery:
                    await nursery.start(self._seed_resolver)
                    nursery.start_soon(self._receive_loop)
                    nursery.start_soon(self._gossip_loop)
                    nursery.start_soon(self._failure_detector_loop)
                    if self.config.state_dir is not None:
                        nursery.start_soon(self._save_keys, self.config.state_dir)
                    task_status.started()
        finally:
            self._tasks_ended.set()

    async def _close(self) -> None:
        """Stop the regular tasks, say goodbye, keep the last change. Run shielded.

        The leave needs a receiver for the SynAcks it waits for; the regular receive loop
        may already be cancelled (the node closed by an outer cancel scope) or about to be,
        so it is stopped for good here and the leave runs its own, however the node stops.
        """
        self._tasks.cancel()
        await self._tasks_ended.wait()
        if self.config.announce_leave:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._receive_loop)
                await self.leave()
                nursery.cancel_scope.cancel()
        if self.config.state_dir is not None:
            try:
                await self.save_keys(self.config.state_dir)
            except OSError as exc:
                log.error("could not save the local keys to %s: %s", self.config.state_dir, exc)


async def _restore_saved_keys(
    node: Node, state_dir: Path, saved: SavedKeys, *, keep: set[str]
) -> bool:
    """Set the saved keys that pass the checks a new key passes; the keys in ``keep``
    (given in the config) win over saved ones. A key whose deadline passed while the node
    was down is not set again (the file is saved anew without it); the others expire at
    their deadline. Refused keys are reported in one line, never gossiped, and kept in a
    file beside the state file. True when the state file is to be saved again."""
    engine = node.engine
    refused: dict[str, str] = {}
    reasons: list[str] = []
    # Deadlines were saved as wall-clock time: turned back into the node's clock here.
    offset = node._now() - time.time()
    expired = 0
    for key, value in saved.keys.items():
        if key in keep:
            continue
        try:
            if key in _MANAGED_KEYS:
                raise ValueError("the node sets this key itself")
            _check_size(engine, key, value)
        except ValueError as exc:
            refused[key] = value
            reasons.append(f"{key[:40]!r}: {exc}")
            continue
        deadline = saved.expires_at.get(key)
        if deadline is not None and deadline + offset <= node._now():
            expired += 1
            continue
        engine.self_state.set(key, value)
        if deadline is not None:
            node.expiries.schedule(key, deadline + offset)
    if expired:
        log.info("state file: %d saved key(s) expired while the node was down", expired)
    if not refused:
        return expired > 0
    try:
        aside = await trio.to_thread.run_sync(keep_refused_keys, state_dir, refused)
    except OSError as exc:
        kept = f"could not keep them aside ({exc})"
    else:
        kept = f"kept them in {aside}"
    shown = "; ".join(reasons[:3]) + ("; ..." if len(reasons) > 3 else "")
    log.error("state file: refused %d saved key(s) (%s); %s", len(refused), shown, kept)
    return True


@asynccontextmanager
async def open_node(
    config: NodeConfig | None = None, *, transport: Transport | None = None
) -> AsyncIterator[Node]:
    """Bind, start gossiping, and yield the running :class:`Node`.

    Raises OSError (errno EADDRINUSE) before yielding when the address is taken. On exit
    every task of the node is cancelled and the socket closed.
    """
    config = config or NodeConfig()
    transport = transport or UdpTransport()
    max_datagram_size = MAX_DATAGRAM_SIZE
    if config.secret_keys:
        from ._crypto import OVERHEAD as SEAL_OVERHEAD  # only a node with a key seals
        from ._crypto import SealedTransport

        transport = SealedTransport(transport, config.secret_keys)
        max_datagram_size -= SEAL_OVERHEAD
    socket = await transport.bind(config.listen_addr)
    try:
        public = config.public_addr or socket.local_address
        if public.port == 0 or public.ip.is_unspecified:
            public = socket.local_address
        if config.node_id:
            name = config.node_id
        elif config.state_dir is not None:
            # Created once, then the same on every restart (with a new generation each).
            name = await trio.to_thread.run_sync(
                load_or_create_node_id, config.state_dir, partial(default_node_id, public)
            )
        else:
            name = default_node_id(public)
        node_id = NodeId(
            name,
            config.generation if config.generation is not None else _generation_now(),
            public,
        )
        initial = dict(config.initial_key_values)
        if config.publish_bind_key:
            initial.setdefault("bind", str(public))
        engine = GossipEngine(
            node_id,
            config.cluster_id,
            now=trio.current_time(),
            failure_detector=config.failure_detector,
            marked_for_deletion_grace_period=config.marked_for_deletion_grace_period,
            initial_key_values=initial,
            max_datagram_size=max_datagram_size,
            protocol_version=config.protocol_version,
            partial_digests=config.partial_digests,
        )
        saved = SavedKeys()
        if config.state_dir is not None:
            saved = await trio.to_thread.run_sync(recover_saved_keys, config.state_dir)
        async with trio.open_nursery() as nursery:
            node = Node(config, engine, socket, nursery)
            resave = False
            if config.state_dir is not None:
                resave = await _restore_saved_keys(node, config.state_dir, saved, keep=set(initial))
            # The initial keys are the starting state, not news for later subscribers.
            engine.drain_changes()
            if resave:  # else each start would set the refused keys aside once more
                node._local_dirty.set()
            await nursery.start(node._run)
            try:
                yield node
            finally:
                # Shielded: a node cancelled by Ctrl-C, SIGTERM or an outer cancel scope
                # still says goodbye and keeps its last change.
                with trio.CancelScope(shield=True):
                    await node._close()
                    # Subscribers see their stream end while the node's services (the
                    # HTTP API's /events) can still pass that on to their clients.
                    if node._fanout.close():
                        # Until no other task is left to run, as trio.testing's
                        # wait_all_tasks_blocked (which pulls in pytest where it is
                        # installed: ~0.1 s and 10 MiB per stop). The run queue counted
                        # is the next batch's, so a task woken in this task's own batch
                        # shows only a turn later: hence two idle turns in a row.
                        with trio.move_on_after(_SUBSCRIBERS_GRACE):
                            idle_turns = 0
                            while idle_turns < 2:
                                await trio.lowlevel.checkpoint()
                                runnable = trio.lowlevel.current_statistics().tasks_runnable
                                idle_turns = idle_turns + 1 if runnable == 0 else 0
                nursery.cancel_scope.cancel()
    finally:
        socket.close()
