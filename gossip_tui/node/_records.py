"""Typed values over the key-value map: attrs records stored as JSON under a key prefix.

A typical use is peer discovery: every node publishes its own record (say, a WireGuard
peer: public key, endpoint, allowed IPs) under ``peer/<name>``, and every node watches
the pool of records of the live nodes, seeing each record join, change and leave.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from typing import Generic, TypeVar

import attrs
import cattrs
import trio

from gossip_tui.core.converter import converter as default_converter
from gossip_tui.core.models import NodeId

from ._events import KeyChanged, KeyDeleted, NodeDead, NodeEvent, NodeJoined, NodeLeft, NodeRemoved
from ._node import Node

log = logging.getLogger("gossip_tui.records")

T = TypeVar("T")


@attrs.frozen
class RecordJoined(Generic[T]):
    node: NodeId
    key: str
    record: T


@attrs.frozen
class RecordUpdated(Generic[T]):
    node: NodeId
    key: str
    record: T


@attrs.frozen
class RecordLeft(Generic[T]):
    node: NodeId
    key: str


RecordEvent = RecordJoined[T] | RecordUpdated[T] | RecordLeft[T]


def publish(
    node: Node, key: str, record: object, converter: cattrs.Converter = default_converter
) -> None:
    """Store ``record`` as compact JSON under ``key`` of the local node."""
    node.set(key, json.dumps(converter.unstructure(record), separators=(",", ":")))


def _parse(raw: str, cls: type[T], converter: cattrs.Converter) -> T | None:
    try:
        return converter.structure(json.loads(raw), cls)
    except (ValueError, TypeError, KeyError, cattrs.BaseValidationError) as exc:
        log.warning("ignoring a record that is not a valid %s: %s", cls.__name__, exc)
        return None


def collect(
    node: Node, prefix: str, cls: type[T], converter: cattrs.Converter = default_converter
) -> dict[tuple[NodeId, str], T]:
    """The valid records under ``prefix`` of every live node, the local one included."""
    records: dict[tuple[NodeId, str], T] = {}
    for node_id in node.live_nodes():
        state = node.engine.state.node_state(node_id)
        if state is None:
            continue
        for key, value in state.visible_items():
            if key.startswith(prefix):
                parsed = _parse(value.value, cls, converter)
                if parsed is not None:
                    records[(node_id, key)] = parsed
    return records


class RecordPool(Generic[T]):
    """The records of live nodes under a prefix, kept current from the node's events.

    Iterate it to receive :class:`RecordJoined` / :class:`RecordUpdated` /
    :class:`RecordLeft`; ``current`` is the pool at this instant.
    """

    def __init__(
        self,
        node: Node,
        prefix: str,
        cls: type[T],
        converter: cattrs.Converter = default_converter,
    ) -> None:
        self._node = node
        self._prefix = prefix
        self._cls = cls
        self._converter = converter
        self._events: trio.MemoryReceiveChannel[NodeEvent] = node.subscribe(prefix)
        self.current: dict[tuple[NodeId, str], T] = collect(node, prefix, cls, converter)
        self._pending: deque[RecordEvent[T]] = deque()

    def _set(self, node: NodeId, key: str, raw: str) -> RecordEvent[T] | None:
        record = _parse(raw, self._cls, self._converter)
        if record is None:
            return self._drop(node, key)
        previous = self.current.get((node, key))
        self.current[(node, key)] = record
        if previous is None:
            return RecordJoined(node, key, record)
        if previous != record:
            return RecordUpdated(node, key, record)
        return None

    def _drop(self, node: NodeId, key: str) -> RecordEvent[T] | None:
        if self.current.pop((node, key), None) is None:
            return None
        return RecordLeft(node, key)

    def _translate(self, event: NodeEvent) -> list[RecordEvent[T]]:
        out: list[RecordEvent[T] | None] = []
        live = set(self._node.live_nodes())
        if isinstance(event, KeyChanged) and event.node in live:
            out.append(self._set(event.node, event.key, event.value))
        elif isinstance(event, KeyDeleted):
            out.append(self._drop(event.node, event.key))
        elif isinstance(event, (NodeLeft, NodeDead, NodeRemoved)):
            for node, key in [k for k in self.current if k[0] == event.node]:
                out.append(self._drop(node, key))
        elif isinstance(event, NodeJoined):
            for (node, key), record in collect(
                self._node, self._prefix, self._cls, self._converter
            ).items():
                if node == event.node and (node, key) not in self.current:
                    self.current[(node, key)] = record
                    out.append(RecordJoined(node, key, record))
        return [e for e in out if e is not None]

    def __aiter__(self) -> RecordPool[T]:
        return self

    async def __anext__(self) -> RecordEvent[T]:
        # A plain iterator rather than an async generator: nothing is left for the
        # garbage collector to finalise when a consumer stops early.
        while not self._pending:
            try:
                event = await self._events.receive()
            except trio.EndOfChannel:
                raise StopAsyncIteration from None
            self._pending.extend(self._translate(event))
        return self._pending.popleft()

    def close(self) -> None:
        self._events.close()
