"""What the dashboard remembers beyond the present moment, fed by the view model.

- :class:`KeySightings`: for every node, each visible key's version, its status (set,
  deleted, marked delete-after-TTL), and when this dashboard saw that version arrive (the
  key grid's status and age columns).
- :class:`LivenessHistory`: for every node, its last :data:`HISTORY_LENGTH` phi readings and
  heartbeat increases (the detail pane's sparklines).

Both come from what the view model is already handed (node events, full reads of one node,
the per-tick liveness reading): nothing here asks the node for anything. Plain Python, no
Textual.

Memory is bounded by the number of nodes known: the sightings hold a small record per key
the model already counts, and the history a fixed ring of floats per node, kept for every
node rather than only the one on screen, so that a node shows its last readings the moment
it is selected: about 1.3 KB a node, 0.66 MB for 500 (tests/ui/test_sparklines.py).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping

import attrs

from gossip_tui.core.engine import LivenessReadings
from gossip_tui.core.models import KeyStatus, NodeId, VersionedValue
from gossip_tui.ui._keys import is_internal

#: Readings kept per node: at the default refresh of 0.5 s, the last 30 seconds.
HISTORY_LENGTH = 60

_NO_READING = math.nan


@attrs.frozen
class KeySighting:
    """One key of one node as last seen here."""

    version: int
    status: KeyStatus
    # The node's clock at the first reading after this version arrived; None until that
    # reading (events carry no time, the readings do).
    seen_at: float | None = None

    @property
    def deleted(self) -> bool:
        return self.status is KeyStatus.DELETED


class KeySightings:
    """Each node's visible keys: version, status, and when that version was seen."""

    def __init__(self) -> None:
        self._by_node: dict[NodeId, dict[str, KeySighting]] = {}
        # Versions seen since the last reading, stamped by the next one.
        self._unstamped: list[tuple[NodeId, str]] = []

    def of(self, node: NodeId) -> Mapping[str, KeySighting]:
        return self._by_node.get(node, {})

    def saw(self, node: NodeId, key: str, version: int, status: KeyStatus) -> None:
        """An event: ``key`` of ``node`` is at ``version`` now (stale versions ignored)."""
        if is_internal(key):
            return
        keys = self._by_node.setdefault(node, {})
        current = keys.get(key)
        if current is not None and current.version >= version:
            return
        keys[key] = KeySighting(version, status)
        self._unstamped.append((node, key))

    def saw_deleted(self, node: NodeId, key: str, version: int) -> None:
        """An event: ``key`` of ``node`` is a tombstone at ``version`` now."""
        self.saw(node, key, version, KeyStatus.DELETED)

    def lost(self, node: NodeId, key: str) -> None:
        """``key`` of ``node`` was forgotten (garbage collected)."""
        keys = self._by_node.get(node)
        if keys is not None:
            keys.pop(key, None)

    def read(self, node: NodeId, key_values: Mapping[str, VersionedValue]) -> None:
        """A full read of ``node``: versions seen before keep the time they were seen."""
        before = self._by_node.get(node, {})
        after: dict[str, KeySighting] = {}
        for key, value in key_values.items():
            if is_internal(key):
                continue
            known = before.get(key)
            if known is not None and known.version == value.version:
                after[key] = known
            else:
                after[key] = KeySighting(value.version, value.status)
                self._unstamped.append((node, key))
        self._by_node[node] = after

    def forget(self, node: NodeId) -> None:
        self._by_node.pop(node, None)

    def stamp(self, taken_at: float) -> None:
        """A reading at ``taken_at``: versions seen since the last one were seen now."""
        for node, key in self._unstamped:
            keys = self._by_node.get(node)
            sighting = keys.get(key) if keys is not None else None
            if keys is not None and sighting is not None and sighting.seen_at is None:
                keys[key] = attrs.evolve(sighting, seen_at=taken_at)
        self._unstamped.clear()


@attrs.frozen
class NodeHistory:
    """One node's last readings, oldest first (missing readings left out)."""

    phi: tuple[float, ...]
    heartbeat_rate: tuple[float, ...]
    # How many readings were ever recorded for the node: tells a widget whether anything
    # moved since it last drew, without comparing the series.
    recorded: int


class _Ring:
    """The last ``size`` floats in a flat array (8 bytes each, no float objects kept)."""

    __slots__ = ("_next", "_values")

    def __init__(self, size: int) -> None:
        self._values = array("d", [_NO_READING]) * size
        self._next = 0

    def push(self, value: float) -> None:
        self._values[self._next] = value
        self._next = (self._next + 1) % len(self._values)

    def values(self) -> tuple[float, ...]:
        ordered = self._values[self._next :] + self._values[: self._next]
        return tuple(value for value in ordered if not math.isnan(value))


class _NodeRings:
    __slots__ = ("heartbeat", "phi", "rate", "recorded")

    def __init__(self, size: int, heartbeat: int) -> None:
        self.phi = _Ring(size)
        self.rate = _Ring(size)
        self.heartbeat = heartbeat
        self.recorded = 0


class LivenessHistory:
    """Every node's last ``length`` phi readings and heartbeat increases per reading."""

    def __init__(self, length: int = HISTORY_LENGTH) -> None:
        self._length = length
        self._rings: dict[NodeId, _NodeRings] = {}

    def record(self, readings: LivenessReadings) -> None:
        rings_of = self._rings
        for reading in readings.nodes:
            rings = rings_of.get(reading.node)
            if rings is None:
                # The first reading of a node has no increase to show yet.
                rings = rings_of[reading.node] = _NodeRings(self._length, reading.heartbeat)
                rings.rate.push(_NO_READING)
            else:
                rings.rate.push(float(max(0, reading.heartbeat - rings.heartbeat)))
                rings.heartbeat = reading.heartbeat
            rings.phi.push(_NO_READING if reading.phi is None else reading.phi)
            rings.recorded += 1

    def forget(self, nodes: Iterable[NodeId]) -> None:
        for node in nodes:
            self._rings.pop(node, None)

    def __len__(self) -> int:
        return len(self._rings)

    def of(self, node: NodeId) -> NodeHistory | None:
        rings = self._rings.get(node)
        if rings is None:
            return None
        return NodeHistory(rings.phi.values(), rings.rate.values(), rings.recorded)
