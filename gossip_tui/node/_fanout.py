"""Hand each event to every subscriber whose key prefix matches, never blocking."""

from __future__ import annotations

import trio

from ._events import NodeEvent


class EventFanout:
    """Subscribers are bounded memory channels. One that falls behind loses events (the
    count is kept) instead of slowing the node; one that closed its end is forgotten."""

    def __init__(self) -> None:
        self._subscribers: list[tuple[str, trio.MemorySendChannel[NodeEvent]]] = []
        self.dropped = 0

    def subscribe(
        self, prefix: str = "", max_buffer: int = 1_000
    ) -> trio.MemoryReceiveChannel[NodeEvent]:
        send, receive = trio.open_memory_channel[NodeEvent](max_buffer)
        self._subscribers.append((prefix, send))
        return receive

    def publish(self, event: NodeEvent) -> None:
        # Membership events reach everyone; key events only the matching prefixes.
        key = getattr(event, "key", None)
        alive = []
        for prefix, channel in self._subscribers:
            if key is not None and not key.startswith(prefix):
                alive.append((prefix, channel))
                continue
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                self.dropped += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                continue
            alive.append((prefix, channel))
        self._subscribers = alive

    def close(self) -> int:
        """End every subscription: their ``async for`` loops finish. Returns how many."""
        ended = len(self._subscribers)
        for _prefix, channel in self._subscribers:
            channel.close()
        self._subscribers = []
        return ended
