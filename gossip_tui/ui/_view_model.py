"""What the dashboard shows, kept from the node's events and its liveness readings.

Plain Python, no Textual: the model is fed the node's events (membership and keys) and, once
per tick, a :class:`LivenessReadings` (heartbeat, phi, liveness per node, no key copied),
and answers each push with a :class:`ViewChanges` saying what moved since the last one:
rows added, updated or removed, which of this node's keys changed, whether the selected
node did, and the events worth a line in the log. Widgets apply exactly that; none of them
compares snapshots.

Key-values are read from the node one node at a time, and only where the screen shows them
in full: this node's own (the local keys pane) and the selected node's (the detail pane).
For every other node the model keeps its visible keys and values (references, no copy), to count
them and to match a key=value filter.

One concern, though over 400 lines: the dashboard's picture of the cluster (key history
and liveness history live in gossip_tui.ui._history).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence

import attrs

from gossip_tui.core.engine import LEAVING_KEY, LivenessReadings
from gossip_tui.core.generations import Restart, superseded
from gossip_tui.core.models import Liveness, NodeId, NodeSnapshot, SocketAddress, VersionedValue
from gossip_tui.ui._history import KeySightings, LivenessHistory
from gossip_tui.ui._keys import is_internal
from gossip_tui.ui._node_api import (
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

# Reads one node's full state from the node (None for a node it does not know).
NodeReader = Callable[[NodeId], NodeSnapshot | None]
# Reads the deadlines of this node's keys that expire (key -> deadline, the readings' clock).
ExpiryReader = Callable[[], Mapping[str, float]]


def _no_expiries() -> Mapping[str, float]:
    return {}


_LIVE = frozenset({Liveness.SELF, Liveness.LIVE})
_DEAD = frozenset({Liveness.DEAD, Liveness.LEFT, Liveness.SCHEDULED_FOR_DELETION})
# A key event's version when no version was written: the key was forgotten (garbage
# collected, or its node's state reset), never a stale report.
_FORGOTTEN = 0


@attrs.frozen
class NodeRow:
    """One node as the nodes table shows it."""

    node: NodeId
    liveness: Liveness
    heartbeat: int
    max_version: int
    key_count: int
    phi: float | None
    last_update: float | None
    # This node's own key-values, on its own row only (the local keys pane shows them);
    # None for peers, whose keys are read when they are selected. Left out of equality:
    # the table does not show them, and ViewChanges.local_keys says when they changed.
    key_values: Mapping[str, VersionedValue] | None = attrs.field(default=None, eq=False)
    # On a generation that older ones of its node id fold into (it restarted): when this
    # node first saw it (the node's clock), None when unknown or when it did not restart.
    restarted_at: float | None = None
    restarted: bool = False


@attrs.frozen
class ClusterCounts:
    """The header's figures."""

    live: int = 0
    dead: int = 0
    known: int = 0
    # Left gracefully: not dead, and counted apart (a leave is news, a death an alarm).
    left: int = 0


@attrs.frozen
class SeedState:
    """The seeds as the header shows them: how many were given, and those that have not
    answered for a few rounds (the node's SeedUnreachable, until its SeedAnswered)."""

    configured: int = 0
    unreachable: frozenset[SocketAddress] = frozenset()


@attrs.frozen
class ViewChanges:
    """What one push changed. Apply ``removed``, then ``added``, then ``updated``."""

    added: tuple[NodeRow, ...] = ()
    updated: tuple[NodeRow, ...] = ()
    removed: tuple[NodeId, ...] = ()
    # A reading moved the clock: ages (now - last update) may read differently on any row.
    ticked: bool = False
    # This node's keys whose row in the local keys pane changed (added, updated, gone).
    local_keys: frozenset[str] = frozenset()
    # The selected node changed, or something about it did (see ClusterViewModel.selected).
    selection: bool = False
    # The events worth a line in the log, oldest first.
    log: tuple[NodeEvent, ...] = ()
    # Some seed went unreachable or answered again (see ClusterViewModel.seeds).
    seeds: bool = False

    @property
    def rows_changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


@attrs.frozen
class ClusterView:
    """The whole picture at one push, as plain data (what tests and scripts look at)."""

    self_node: NodeId
    taken_at: float
    nodes: tuple[NodeRow, ...]

    @property
    def live_nodes(self) -> tuple[NodeId, ...]:
        return tuple(row.node for row in self.nodes if row.liveness in _LIVE)

    @property
    def dead_nodes(self) -> tuple[NodeId, ...]:
        return tuple(row.node for row in self.nodes if row.liveness in _DEAD)

    def node(self, node: NodeId) -> NodeRow | None:
        return next((row for row in self.nodes if row.node == node), None)


def log_worthy(events: Sequence[NodeEvent]) -> tuple[NodeEvent, ...]:
    """``events`` minus the NodeUpdated of a node whose key changed in the same batch (the
    key change already says that its node moved on), and minus changes of internal keys."""
    keyed = {event.node for event in events if isinstance(event, KeyChanged | KeyDeleted)}
    return tuple(
        event
        for event in events
        if not (isinstance(event, NodeUpdated) and event.node in keyed)
        and not (isinstance(event, KeyChanged | KeyDeleted) and is_internal(event.key))
    )


@attrs.define
class _KnownKeys:
    """A node's visible keys and their values, complete up to ``version`` (its max
    version); internal keys (gossip_tui.ui._keys) apart, as the panes never count them.

    The values are the node's own strings, referenced, not copied: they serve the table's
    key=value filter."""

    visible: dict[str, str]
    internal: set[str]
    version: int

    @classmethod
    def of(cls, snapshot: NodeSnapshot) -> _KnownKeys:
        visible: dict[str, str] = {}
        internal: set[str] = set()
        for key, value in snapshot.key_values.items():
            if value.is_deleted:
                continue
            if is_internal(key):
                internal.add(key)
            else:
                visible[key] = value.value
        return cls(visible, internal, snapshot.max_version)

    def add(self, key: str, value: str) -> None:
        if is_internal(key):
            self.internal.add(key)
        else:
            self.visible[key] = value

    def discard(self, key: str) -> None:
        self.visible.pop(key, None)
        self.internal.discard(key)


class _Push:
    """Collects one push's changes: each row touched, with what it was before the push."""

    def __init__(self) -> None:
        self.rows_before: dict[NodeId, NodeRow | None] = {}
        self.local_keys: set[str] = set()
        self.selection = False
        self.ticked = False
        self.seeds = False
        # A row came, went or changed liveness: which generations fold may have changed.
        self.generations = False

    def touch(self, node: NodeId, before: NodeRow | None) -> None:
        self.rows_before.setdefault(node, before)

    def finish(self, rows: Mapping[NodeId, NodeRow], log: tuple[NodeEvent, ...]) -> ViewChanges:
        """``rows``: the rows shown after the push (``rows_before`` holds them as shown
        before it: None for a row that was not)."""
        added: list[NodeRow] = []
        updated: list[NodeRow] = []
        removed: list[NodeId] = []
        for node, before in self.rows_before.items():
            after = rows.get(node)
            if before is None:
                if after is not None:
                    added.append(after)
            elif after is None:
                removed.append(node)
            elif after is not before:  # rows are only replaced by rows that differ
                updated.append(after)
        return ViewChanges(
            added=tuple(added),
            updated=tuple(updated),
            removed=tuple(removed),
            ticked=self.ticked,
            local_keys=frozenset(self.local_keys),
            selection=self.selection,
            log=log,
            seeds=self.seeds,
        )


class ClusterViewModel:
    """The dashboard's picture of the cluster, fed by ``apply_events``, ``apply_readings``
    and ``select``; each returns the :class:`ViewChanges` it made."""

    def __init__(
        self,
        self_id: NodeId,
        read_node: NodeReader,
        read_expiries: ExpiryReader = _no_expiries,
        *,
        seed_count: int = 0,
    ) -> None:
        self.self_id = self_id
        self._read_node = read_node
        self._read_expiries = read_expiries
        self._seeds = SeedState(seed_count)
        # Whole seconds left (rounded up) of each local key that expires, as of the last
        # reading: a key's row changes when its figure does, once a second at most.
        self._countdowns: dict[str, int] = {}
        # Local keys whose last change was their expiry (their tombstone is not shown).
        self._expired: set[str] = set()
        # Every generation known, folded ones included (see _fold); _shown leaves those out.
        self._rows: dict[NodeId, NodeRow] = {}
        # Older generation -> the newer one of its node id that stands for it.
        self._folded: dict[NodeId, NodeId] = {}
        # Generations that folded an older one while live: they keep it folded if they die,
        # so a restarted node that dies again is one dead row, its newest.
        self._restarted: set[NodeId] = set()
        # When this node first saw each generation (from its snapshot), for "restarted ...".
        self._discovered: dict[NodeId, float | None] = {}
        self._shown: Mapping[NodeId, NodeRow] = _ShownRows(self._rows, self._folded)
        self._keys: dict[NodeId, _KnownKeys] = {}
        self._liveness = Counter[Liveness]()
        self._taken_at = 0.0
        self._selected_id: NodeId | None = None
        self._selected: NodeSnapshot | None = None  # as last read from the node
        # The nodes whose keys are on screen: this one and the selected one (a set, for
        # a membership test by cached hash in the per-node loops).
        self._in_full: set[NodeId] = {self_id}
        # Versions and ages per key (the key grid), phi and heartbeat rings (the sparklines).
        self.key_sightings = KeySightings()
        self.history = LivenessHistory()

    # -- reading ---------------------------------------------------------------------------

    @property
    def rows(self) -> Mapping[NodeId, NodeRow]:
        """The rows shown: every node known, older generations of a restarted one aside."""
        return self._shown

    def restart_of(self, node: NodeId) -> Restart | None:
        """The restart ``node``'s row stands for: the newest generation folded into it."""
        older = self.folded_into(node)
        if not older:
            return None
        previous = max(older, key=lambda ident: ident.generation)
        return Restart(previous, node, self._discovered.get(node))

    def folded_into(self, node: NodeId) -> tuple[NodeId, ...]:
        """The older generations of ``node``'s node id that its row stands for."""
        return tuple(sorted(old for old, into in self._folded.items() if into == node))

    @property
    def taken_at(self) -> float:
        """The node's clock at the last reading: what ages are measured against."""
        return self._taken_at

    @property
    def counts(self) -> ClusterCounts:
        # A folded generation is its node's older self, not a node of its own.
        by = self._liveness - Counter(self._rows[node].liveness for node in self._folded)
        return ClusterCounts(
            live=sum(by[liveness] for liveness in _LIVE),
            dead=sum(by[liveness] for liveness in _DEAD - {Liveness.LEFT}),
            known=len(self._rows) - len(self._folded),
            left=by[Liveness.LEFT],
        )

    @property
    def seeds(self) -> SeedState:
        return self._seeds

    @property
    def local_key_values(self) -> Mapping[str, VersionedValue]:
        row = self._rows.get(self.self_id)
        key_values = row.key_values if row is not None else None
        return key_values if key_values is not None else {}

    @property
    def selected(self) -> NodeSnapshot | None:
        """The selected node in full: its keys as last read, its liveness as last seen."""
        node, read = self._selected_id, self._selected
        row = self._rows.get(node) if node is not None else None
        if read is None or row is None:
            return None
        return attrs.evolve(
            read,
            liveness=row.liveness,
            heartbeat=row.heartbeat,
            phi=row.phi,
            last_update=row.last_update,
        )

    @property
    def local_countdowns(self) -> Mapping[str, int]:
        """Seconds left (rounded up; 0: due) of this node's keys that expire."""
        return self._countdowns

    @property
    def local_expired(self) -> frozenset[str]:
        """This node's keys deleted by their expiry (and not set since)."""
        return frozenset(self._expired)

    def key_values_of(self, node: NodeId) -> Mapping[str, str]:
        """``node``'s visible keys and values, as far as the model knows them (internal
        keys left out): what a key=value filter is matched against."""
        known = self._keys.get(node)
        return known.visible if known is not None else {}

    def view(self) -> ClusterView:
        nodes = tuple(self._rows[node] for node in sorted(self._shown))
        return ClusterView(self.self_id, self._taken_at, nodes)

    # -- feeding ---------------------------------------------------------------------------

    def apply_readings(self, readings: LivenessReadings) -> ViewChanges:
        """A tick: every node's liveness. Nodes missing from it are gone; a node whose max
        version is not the one its keys are known at has its keys read again (events were
        lost, or its state was reset)."""
        push = _Push()
        push.ticked = True
        self._taken_at = readings.taken_at
        self.history.record(readings)
        rows_read = 0
        for reading in readings.nodes:
            node = reading.node
            known = self._keys.get(node)
            if known is None or known.version != reading.max_version:
                if self._reread(node, push) is None:
                    continue
                known = self._keys[node]
            rows_read += 1
            old = self._rows.get(node)
            key_count = len(known.visible)
            # The hot loop of a big cluster: compare fields rather than build rows to compare.
            if (
                old is None
                or old.heartbeat != reading.heartbeat
                or old.phi != reading.phi
                or old.liveness is not reading.liveness
                or old.last_update != reading.last_update
                or old.max_version != known.version
                or old.key_count != key_count
            ):
                row = NodeRow(
                    node,
                    reading.liveness,
                    reading.heartbeat,
                    known.version,
                    key_count,
                    reading.phi,
                    reading.last_update,
                    old.key_values if old is not None else None,
                    old.restarted_at if old is not None else None,
                    old is not None and old.restarted,
                )
                self._set_row(node, row, push)
        if len(self._rows) != rows_read:  # some node is no more (a set only in that case)
            seen = {reading.node for reading in readings.nodes}
            for node in [node for node in self._rows if node not in seen]:
                self._forget(node, push)
        if self._selected_id is not None:
            push.selection = True  # its heartbeat, phi and age come with the reading
        self._count_down(push)
        # Versions seen since the last reading, this one's reads included, were seen now.
        self.key_sightings.stamp(readings.taken_at)
        return self._finish(push, ())

    def apply_events(self, events: Sequence[NodeEvent]) -> ViewChanges:
        """A batch of the node's events, oldest first."""
        push = _Push()
        # Nodes shown in full whose keys moved on: read once each, after the batch.
        reread: set[NodeId] = set()
        for event in events:
            if isinstance(event, SeedUnreachable | SeedAnswered):
                self._apply_seed_event(event, push)  # seeds are not rows: the header's
                continue
            node = event.node
            if isinstance(event, NodeRemoved):
                self._forget(node, push)
                continue
            known = self._keys.get(node)
            if known is None:
                # A node not seen yet: read it once, which covers this event too.
                self._reread(node, push)
                continue
            match event:
                case NodeJoined():
                    self._set_liveness(node, Liveness.LIVE, push)
                case NodeLeft():
                    self._set_liveness(node, Liveness.LEFT, push)
                case NodeDead():
                    # A node that announced its departure set the leaving key first.
                    said_goodbye = LEAVING_KEY in known.internal
                    self._set_liveness(node, Liveness.LEFT if said_goodbye else Liveness.DEAD, push)
                case NodeUpdated(max_version=version) if version > known.version:
                    known.version = version
                    reread |= self._shown_in_full(node)
                case KeyChanged(key=key, value=value, version=version) if version > known.version:
                    known.add(key, value)
                    self.key_sightings.saw(node, key, version, event.status)
                    reread |= self._shown_in_full(node)
                case KeyDeleted(key=key, version=version) if (
                    version == _FORGOTTEN or version > known.version
                ):
                    known.discard(key)
                    if version == _FORGOTTEN:
                        self.key_sightings.lost(node, key)
                    else:
                        self.key_sightings.saw_deleted(node, key, version)
                    reread |= self._shown_in_full(node)
            if isinstance(event, KeyChanged | KeyDeleted) and node == self.self_id:
                push.local_keys.add(event.key)
                if isinstance(event, KeyDeleted) and event.reason == "expired":
                    self._expired.add(event.key)
                else:
                    self._expired.discard(event.key)
            self._refresh_row(node, push)
        for node in reread:
            self._reread(node, push)
        if push.local_keys:  # a key set with a ttl shows its countdown at once
            self._count_down(push)
        return self._finish(push, log_worthy(events))

    def _apply_seed_event(self, event: SeedUnreachable | SeedAnswered, push: _Push) -> None:
        unreachable = set(self._seeds.unreachable)
        if isinstance(event, SeedUnreachable):
            unreachable.add(event.addr)
        else:
            unreachable.discard(event.addr)
        if unreachable != self._seeds.unreachable:
            self._seeds = attrs.evolve(self._seeds, unreachable=frozenset(unreachable))
            push.seeds = True

    def select(self, node: NodeId | None) -> ViewChanges:
        """The user selected ``node`` (None: nothing): its keys are read now."""
        push = _Push()
        if node != self._selected_id:
            self._selected_id = node
            self._selected = None
            self._in_full = {self.self_id} if node is None else {self.self_id, node}
            push.selection = True
            if node is not None:
                self._reread(node, push)
        return self._finish(push, ())

    def forget(self, nodes: Sequence[NodeId]) -> ViewChanges:
        """The node forgot ``nodes`` (see NodeHandle.forget): their rows go now, rather
        than with the next reading."""
        push = _Push()
        for node in nodes:
            self._forget(node, push)
        return self._finish(push, ())

    # -- internals -------------------------------------------------------------------------

    def _finish(self, push: _Push, log: tuple[NodeEvent, ...]) -> ViewChanges:
        if push.generations:
            self._fold(push)
        return push.finish(self._shown, log)

    def _fold(self, push: _Push) -> None:
        """Work out again which generations fold into which (core.generations' rule), and
        mark the rows that now stand for a restart."""
        rows = self._rows

        def stands(node: NodeId) -> bool:
            return rows[node].liveness in _LIVE or node in self._restarted

        folded = superseded(rows, stands)
        if folded == self._folded:
            return
        for node in folded.keys() ^ self._folded.keys():
            # Shown before the push unless it was folded then.
            push.touch(node, None if node in self._folded else rows[node])
        self._folded.clear()
        self._folded.update(folded)
        standing = set(folded.values())
        self._restarted = standing
        for node in standing | {node for node, row in rows.items() if row.restarted}:
            row = rows[node]
            restarted = node in standing
            at = self._discovered.get(node) if restarted else None
            if (row.restarted, row.restarted_at) != (restarted, at):
                self._set_row(node, attrs.evolve(row, restarted=restarted, restarted_at=at), push)

    def _count_down(self, push: _Push) -> None:
        """Recompute the local keys' countdowns at the last reading's time; the keys whose
        figure moved are changed rows of the local keys pane."""
        deadlines = self._read_expiries()
        if not deadlines and not self._countdowns:
            return
        now = self._taken_at
        shown = {key: max(0, math.ceil(deadline - now)) for key, deadline in deadlines.items()}
        for key in shown.keys() | self._countdowns.keys():
            if shown.get(key) != self._countdowns.get(key):
                push.local_keys.add(key)
        self._countdowns = shown

    def _shown_in_full(self, node: NodeId) -> set[NodeId]:
        return {node} if node in self._in_full else set()

    def _reread(self, node: NodeId, push: _Push) -> NodeSnapshot | None:
        """Read ``node`` from the node: its keys, and a row if it had none."""
        snapshot = self._read_node(node)
        if snapshot is None:
            self._forget(node, push)
            return None
        known = _KnownKeys.of(snapshot)
        self._keys[node] = known
        self._discovered[node] = snapshot.discovered_at
        self.key_sightings.read(node, snapshot.key_values)
        old = self._rows.get(node)
        key_values = None
        if node == self.self_id:
            key_values = snapshot.key_values
            before = old.key_values if old is not None and old.key_values is not None else {}
            push.local_keys |= _changed_keys(before, key_values)
        if node == self._selected_id:
            self._selected = snapshot
            push.selection = True
        if old is None:
            row = NodeRow(
                node,
                snapshot.liveness,
                snapshot.heartbeat,
                known.version,
                len(known.visible),
                snapshot.phi,
                snapshot.last_update,
                key_values,
            )
        elif (old.max_version, old.key_count, old.key_values) != (
            known.version,
            len(known.visible),
            key_values,
        ):
            row = attrs.evolve(
                old, max_version=known.version, key_count=len(known.visible), key_values=key_values
            )
        else:
            return snapshot
        self._set_row(node, row, push)
        return snapshot

    def _refresh_row(self, node: NodeId, push: _Push) -> None:
        row, known = self._rows.get(node), self._keys.get(node)
        if row is None or known is None:
            return
        if row.max_version != known.version or row.key_count != len(known.visible):
            self._set_row(
                node,
                attrs.evolve(row, max_version=known.version, key_count=len(known.visible)),
                push,
            )

    def _set_liveness(self, node: NodeId, liveness: Liveness, push: _Push) -> None:
        row = self._rows.get(node)
        if row is not None and row.liveness is not liveness and node != self.self_id:
            self._set_row(node, attrs.evolve(row, liveness=liveness), push)

    def _set_row(self, node: NodeId, row: NodeRow, push: _Push) -> None:
        """Replace ``node``'s row by ``row``, which differs from it."""
        old = self._rows.get(node)
        push.touch(node, None if node in self._folded else old)
        if old is None or old.liveness is not row.liveness:
            push.generations = True
            if old is not None:
                self._liveness[old.liveness] -= 1
            self._liveness[row.liveness] += 1
        self._rows[node] = row
        if node in self._in_full:
            push.selection |= node == self._selected_id

    def _forget(self, node: NodeId, push: _Push) -> None:
        old = self._rows.pop(node, None)
        self._keys.pop(node, None)
        self._discovered.pop(node, None)
        self.key_sightings.forget(node)
        self.history.forget((node,))
        if old is None:
            return
        push.touch(node, None if node in self._folded else old)
        # Until the fold is worked out again (this push's end), no folding names it.
        self._folded.pop(node, None)
        for older in [older for older, into in self._folded.items() if into == node]:
            del self._folded[older]
            push.touch(older, None)
        self._restarted.discard(node)
        push.generations = True
        self._liveness[old.liveness] -= 1
        if node == self._selected_id:
            self._selected = None
            push.selection = True


def _changed_keys(
    before: Mapping[str, VersionedValue], after: Mapping[str, VersionedValue]
) -> set[str]:
    """Keys whose value differs between two reads of the same node."""
    return {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}


class _ShownRows(Mapping[NodeId, NodeRow]):
    """The model's rows minus the folded generations, without a copy."""

    def __init__(self, rows: Mapping[NodeId, NodeRow], folded: Mapping[NodeId, NodeId]) -> None:
        self._rows = rows
        self._folded = folded

    def __getitem__(self, node: NodeId) -> NodeRow:
        if node in self._folded:
            raise KeyError(node)
        return self._rows[node]

    def __iter__(self) -> Iterator[NodeId]:
        folded = self._folded
        return (node for node in self._rows if node not in folded)

    def __len__(self) -> int:
        return len(self._rows) - len(self._folded)

    def __contains__(self, node: object) -> bool:
        return node in self._rows and node not in self._folded


class HeldChanges:
    """The changes of pushes held back while the view is paused, given back as one.

    Widgets apply changes as differences, so none may be dropped: on release, every node
    touched meanwhile is handed over as it is now (or as removed), the flags are or-ed, and
    the log keeps its last ``max_log`` events (the event log's own bound)."""

    def __init__(self, max_log: int = 2000) -> None:
        self._nodes: dict[NodeId, None] = {}  # insertion-ordered set
        self._local_keys: set[str] = set()
        self._ticked = False
        self._selection = False
        self._seeds = False
        self._log: deque[NodeEvent] = deque(maxlen=max_log)
        self.pushes = 0

    def hold(self, changes: ViewChanges) -> None:
        self.pushes += 1
        for row in (*changes.added, *changes.updated):
            self._nodes[row.node] = None
        for node in changes.removed:
            self._nodes[node] = None
        self._local_keys |= changes.local_keys
        self._ticked |= changes.ticked
        self._selection |= changes.selection
        self._seeds |= changes.seeds
        self._log.extend(changes.log)

    def release(self, rows: Mapping[NodeId, NodeRow]) -> ViewChanges:
        """One ViewChanges that brings widgets from before the pause to ``rows``."""
        return ViewChanges(
            updated=tuple(rows[node] for node in self._nodes if node in rows),
            removed=tuple(node for node in self._nodes if node not in rows),
            ticked=self._ticked,
            local_keys=frozenset(self._local_keys),
            selection=self._selection,
            log=tuple(self._log),
            seeds=self._seeds,
        )
