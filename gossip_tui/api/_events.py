"""``GET /events``: the node's events as NDJSON, one JSON object a line, as they happen.

The first line is ``{"type": "subscribed", ...}`` (from then on nothing is missed but what
a slow reader loses); then one line per event; empty lines are keep-alives. The stream
ends with ``{"type": "end", "reason": ...}`` when the node leaves or closes, or once the
client's optional bounds are reached (``limit`` events, ``timeout`` seconds).

Events are read in batches (everything buffered at once goes out in one chunk), so a busy
cluster costs one write per wake-up, not one per event.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import trio

from gossip_tui.core import converter as converters
from gossip_tui.core.engine import LEAVING_KEY
from gossip_tui.node import (
    KeyChanged,
    KeyDeleted,
    NodeDead,
    NodeEvent,
    NodeJoined,
    NodeLeft,
    NodeRemoved,
    NodeUpdated,
    SeedAnswered,
    SeedUnreachable,
)

from ._types import ApiNode

__all__ = [
    "EVENT_BUFFER",
    "KEEPALIVE_INTERVAL",
    "MAX_EVENTS_LIMIT",
    "MAX_EVENTS_TIMEOUT",
    "MEDIA_TYPE",
    "event_lines",
]

MEDIA_TYPE = "application/x-ndjson"
#: Events a subscriber may lag behind before it loses some (the node never waits for it).
EVENT_BUFFER = 10_000
#: The bounds of the optional ``limit`` (events) and ``timeout`` (seconds) of /events.
MAX_EVENTS_LIMIT = 1_000_000
MAX_EVENTS_TIMEOUT = 24 * 3600.0
#: Seconds of silence after which an empty line tells the client the node is still there.
KEEPALIVE_INTERVAL = 15.0

_TYPES: dict[type[Any], str] = {
    NodeJoined: "node_joined",
    NodeLeft: "node_left",
    NodeDead: "node_dead",
    NodeRemoved: "node_removed",
    NodeUpdated: "node_updated",
    KeyChanged: "key_changed",
    KeyDeleted: "key_deleted",
    SeedUnreachable: "seed_unreachable",
    SeedAnswered: "seed_answered",
}


def _line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, allow_nan=False).encode() + b"\n"


def event_record(event: NodeEvent) -> dict[str, Any]:
    """The JSON object of one event: ``type``, then the event's fields (``node`` is a
    ChitchatId object)."""
    fields = converters.converter.unstructure(event)
    # The documented record (see _openapi): a key_changed's status is the dashboard's.
    fields.pop("status", None)
    return {"type": _TYPES[type(event)], **fields}


def end_line(reason: str) -> bytes:
    return _line({"type": "end", "reason": reason})


async def event_lines(
    node: ApiNode, prefix: str, *, limit: int | None = None, timeout: float | None = None
) -> AsyncIterator[bytes]:
    """The body of ``/events``: chunks of whole lines, until the node leaves or closes,
    ``limit`` events were sent or ``timeout`` seconds passed."""
    deadline = math.inf if timeout is None else trio.current_time() + timeout
    left = math.inf if limit is None else limit
    # Subscribed without the prefix, filtered here: the node's own leaving marker must be
    # seen whatever prefix the client asked for.
    events = node.subscribe("", EVENT_BUFFER)
    self_id = node.self_id
    with events:
        yield _line(
            {
                "type": "subscribed",
                "chitchat_id": converters.converter.unstructure(self_id),
                "prefix": prefix,
            }
        )
        while True:
            # The cancel scope is around the receive only, never around a yield: a scope
            # left open across a yield of an async generator would cancel its consumer.
            keepalive_at = trio.current_time() + KEEPALIVE_INTERVAL
            with trio.move_on_at(min(keepalive_at, deadline)) as waited:
                try:
                    first = await events.receive()
                except trio.EndOfChannel:  # the node closed every subscription
                    yield end_line("node closed")
                    return
            if waited.cancelled_caught:
                if trio.current_time() >= deadline:
                    yield end_line("timeout")
                    return
                yield b"\n"
                continue
            batch = [first]
            while True:
                try:
                    batch.append(events.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            chunk = bytearray()
            leaving = False
            for event in batch:
                key = getattr(event, "key", None)
                if key == LEAVING_KEY and getattr(event, "node", None) == self_id:
                    leaving = True
                elif key is None or key.startswith(prefix):
                    chunk += _line(event_record(event))
                    left -= 1
                    if left <= 0:
                        break
            if leaving:
                yield bytes(chunk) + end_line("node leaving")
                return
            if left <= 0:
                yield bytes(chunk) + end_line("limit reached")
                return
            if chunk:
                yield bytes(chunk)
