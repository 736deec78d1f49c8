"""Trio in guest mode on Textual's asyncio loop, and the messages it posts to the app.

Textual owns the thread and the event loop; Trio runs as a guest on it, so node code stays
pure Trio and the app stays pure Textual. The two meet in exactly two ways:

* Trio to Textual: messages posted with ``App.post_message`` (never widget calls: by the time
  Trio winds down, the widgets may already be gone, and ``post_message`` then returns False).
* Textual to Trio: synchronous Trio calls made from Textual's thread (``node.set``, a memory
  channel's ``send_nowait``, ``CancelScope.cancel``), which is the thread Trio runs in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import outcome
import trio
from textual.app import App
from textual.message import Message

from gossip_tui.core.engine import LivenessReadings
from gossip_tui.core.models import SocketAddress
from gossip_tui.ui._node_api import NodeEvent, NodeFactory, NodeHandle

Post = Callable[[Message], bool]
# Starts the HTTP API beside the node (as one of its services); returns the bound address.
HttpService = Callable[[NodeHandle], Awaitable[SocketAddress | None]]

# Events arrive in bursts (a node joining brings all its keys): one message per burst keeps
# the app's queue short.
_MAX_EVENTS_PER_MESSAGE = 512


class NodeReady(Message):
    """The node is open; ``node`` is the handle the app may call from its own thread."""

    def __init__(self, node: NodeHandle, http_addr: SocketAddress | None) -> None:
        super().__init__()
        self.node = node
        self.http_addr = http_addr


class LivenessRead(Message):
    """Every node's liveness, heartbeat and phi, read once per refresh interval (no keys:
    those come with the events)."""

    def __init__(self, readings: LivenessReadings) -> None:
        super().__init__()
        self.readings = readings


class NodeEventsReceived(Message):
    """One or more node events, oldest first."""

    def __init__(self, events: tuple[NodeEvent, ...]) -> None:
        super().__init__()
        self.events = events


class TrioFinished(Message):
    """The Trio run is over; ``result`` holds its return or its exception."""

    def __init__(self, result: outcome.Outcome[None]) -> None:
        super().__init__()
        self.result = result


class NodeService(Protocol):
    """Extra Trio work started beside the node once it is open (the demo's peers)."""

    async def run(self, node: NodeHandle, factory: NodeFactory, config: Any, post: Post) -> None:
        """Run until cancelled; may post messages to the app."""


class TrioBridge:
    """Owns one guest Trio run: opens the node, feeds the app, and shuts down on request."""

    def __init__(
        self,
        app: App[Any],
        factory: NodeFactory,
        config: Any,
        *,
        refresh_interval: float,
        service: NodeService | None = None,
        http: HttpService | None = None,
    ) -> None:
        self._app = app
        self._factory = factory
        self._config = config
        self._refresh_interval = refresh_interval
        self._service = service
        self._http = http
        # Created outside the run so that stop() works at any moment, even before Trio
        # has entered it: a scope cancelled before it is entered is born cancelled.
        self._cancel_scope = trio.CancelScope()
        self._done: asyncio.Future[outcome.Outcome[None]] | None = None

    @property
    def done(self) -> asyncio.Future[outcome.Outcome[None]] | None:
        """Resolved with Trio's outcome once the run is over; None before start()."""
        return self._done

    def start(self) -> None:
        """Start Trio as a guest of the running asyncio loop. Call from the app's thread."""
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        trio.lowlevel.start_guest_run(
            self._main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=loop.call_soon,
            done_callback=self._on_done,
            host_uses_signal_set_wakeup_fd=False,
        )

    async def stop(self) -> outcome.Outcome[None] | None:
        """Cancel everything Trio runs and wait until the run has ended.

        Without this the guest run would be abandoned mid-flight, and any later trio.run() in
        the process would fail with "Attempted to call run() from inside a run()".
        """
        self._cancel_scope.cancel()
        if self._done is None:
            return None
        return await self._done

    def _post(self, message: Message) -> bool:
        return self._app.post_message(message)

    def _on_done(self, result: outcome.Outcome[None]) -> None:
        assert self._done is not None
        if not self._done.done():
            self._done.set_result(result)
        self._post(TrioFinished(result))

    async def _main(self) -> None:
        with self._cancel_scope:
            async with self._factory(self._config) as node:
                # Subscribe before anything awaits: the seeds' first replies (and the keys
                # they carry) can arrive at the first checkpoint, and belong in the log.
                events = node.subscribe()
                http_addr = await self._http(node) if self._http is not None else None
                self._post(NodeReady(node, http_addr))
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._forward_events, events)
                    nursery.start_soon(self._read_liveness, node)
                    if self._service is not None:
                        nursery.start_soon(
                            self._service.run, node, self._factory, self._config, self._post
                        )

    async def _forward_events(self, events: trio.MemoryReceiveChannel[NodeEvent]) -> None:
        async with events:
            async for first in events:
                batch = [first]
                while len(batch) < _MAX_EVENTS_PER_MESSAGE:
                    try:
                        batch.append(events.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                self._post(NodeEventsReceived(tuple(batch)))

    async def _read_liveness(self, node: NodeHandle) -> None:
        while True:
            self._post(LivenessRead(node.liveness_readings()))
            await trio.sleep(self._refresh_interval)
