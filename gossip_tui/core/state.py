"""Replicated cluster state and scuttlebutt reconciliation, as chitchat 0.10 does it.

Each node owns a map of versioned key-values. Versions grow by one per change of the
owner's map; ``max_version`` is the newest, ``last_gc_version`` the newest tombstone the
state has already forgotten. Peers exchange digests (per node: heartbeat,
last_gc_version, max_version) and answer with deltas holding what the other lacks.

State changes are recorded as :class:`KeyChange` / :class:`VersionChange` records in
``ClusterState.changes`` so the runtime can turn them into events without diffing.

One concern, though over 400 lines: the replicated state and its reconciliation, with
the byte bounds that keep it from growing without end.
"""

from __future__ import annotations

import enum
import heapq
import random
from array import array
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import repeat
from operator import attrgetter, is_, itemgetter
from typing import TypeVar, cast

import attrs

from .codec import (
    BLOCK_THRESHOLD,
    DIGEST_SLOT_SETTERS,
    MIN_DELTA_BUDGET,
    U64_MAX,
    DeltaWriter,
    EncodeError,
    StaleNode,
    _slot_setters,
    encode_key_values,
    forget_digest_entry,
    forget_digest_entry_at,
    node_id_size,
    renew_digest_entry,
    stale_node,
)
from .fields_repr import fields_repr
from .messages import Delta, Digest, DigestColumns, KeyValueMutation, NodeDelta, NodeDigest
from .models import KeyStatus, NodeId, SocketAddress, VersionedValue, sort_key_of

# How many garbage-collected nodes are remembered, so that a peer still gossiping about
# one cannot bring it back with an old heartbeat. chitchat after 0.10.1 remembers 5,000
# (0.10.1: 500): with fewer, a chitchat peer refuses a stale node that we learn back.
GC_NODE_MEMORY = 5_000

# What one stored key-value costs in memory besides its characters. Measured with
# tracemalloc on CPython 3.11 over 100,000 replicated keys (scripts/measure_state_memory.py):
# 110 bytes for the VersionedValue and its dict slot, 28 for the version int, 49 for each of
# the two str headers; rounded up. (CPython 3.12+ has 8-byte smaller str headers.)
KEY_VALUE_OVERHEAD = 240
# A node's entry in a digest besides its id: heartbeat, last_gc_version, max_version.
_DIGEST_ENTRY_TAIL = 24
# The digest's node count.
_DIGEST_HEAD = 2


# What DeltaWriter(any budget).finish() gives when nothing was added.
_NOTHING_LACKED = DeltaWriter(MIN_DELTA_BUDGET).finish()


def _unset(_instance: object, _value: object) -> None:
    """Stands in for the slot setters where the codec found none; never called."""
    raise AssertionError("slot setters are only used when the codec found them")


def _chars_bytes(text: str) -> int:
    """Bytes CPython holds for the characters of ``text``: 1, 2 or 4 per character, by
    the widest one (PEP 393). Counting UTF-8 would undercount a long ASCII text with a
    single emoji four times."""
    if text.isascii():
        return len(text)
    widest = ord(max(text))
    return len(text) * (1 if widest < 0x100 else 2 if widest < 0x10000 else 4)


def key_value_cost(key: str, value: str) -> int:
    """An honest estimate of the memory a stored key-value holds, in bytes: what the
    state bounds count, here and on every gossip-tui peer."""
    if key.isascii() and value.isascii():  # the usual case, counted without two calls
        return KEY_VALUE_OVERHEAD + len(key) + len(value)
    return KEY_VALUE_OVERHEAD + _chars_bytes(key) + _chars_bytes(value)


def digest_entry_size(node: NodeId) -> int:
    """Bytes ``node`` takes in an encoded digest."""
    return node_id_size(node) + _DIGEST_ENTRY_TAIL


@attrs.frozen
class KeyChange:
    """A key of ``node`` changed; ``value`` is None when it was removed by tombstone GC."""

    __repr__ = fields_repr

    node: NodeId
    key: str
    value: VersionedValue | None


@attrs.frozen
class VersionChange:
    """A node's ``max_version`` moved on."""

    __repr__ = fields_repr

    node: NodeId
    max_version: int


StateChange = KeyChange | VersionChange

# Slot setters that fill a bare KeyChange or VersionChange as calling the class does (see
# codec._slot_setters; None if that no longer holds): apply_delta records one of each per
# key-value it stores, where the classes' __init__ is a Python call each.
_KEY_CHANGE_SETTERS = _slot_setters(KeyChange, ("node", "key", "value"))
_VERSION_CHANGE_SETTERS = _slot_setters(VersionChange, ("node", "max_version"))
_new = object.__new__

_SET = KeyStatus.SET
_Item = TypeVar("_Item")
_first = itemgetter(0)
_entry_of = attrgetter("_entry")


class DeltaStatus(enum.Enum):
    REJECT = "reject"
    APPLY = "apply"
    APPLY_AFTER_RESET = "apply_after_reset"
    OVER_LIMIT = "over_limit"


@attrs.frozen
class StateLimits:
    """Bounds that keep a hostile or runaway peer from growing our memory without end.

    Sizes are bytes of memory held, as :func:`key_value_cost` estimates them. A delta that
    would push a node's state, or the whole cluster state, past its bound is dropped whole
    (dropping part of it would leave a gap in the versions), and counted. The total bound
    caps what a flood of tiny keys for made-up nodes can take: about 256 MiB of the
    process, however the keys are spread.

    Node ids longer than ``max_node_id_bytes`` are not admitted: one made-up name must not
    fill the digest, which every message carries (our own id is exempt).
    """

    __repr__ = fields_repr

    max_nodes: int = 10_000
    max_node_state_bytes: int = 8 * 1024 * 1024
    max_total_state_bytes: int = 256 * 1024 * 1024
    max_node_id_bytes: int = 1_024


class _Usage:
    """What all node states of one cluster state keep together: the running total of the
    bytes they hold, where they record their changes, and which of them may hold a
    key-value marked for deletion (one slot of each state for all three, where a slot
    each cost 8 bytes per state, N^2 states in a simulation)."""

    __slots__ = ("_last_cohort", "changes", "marked", "total", "unlearnt")

    def __init__(self, changes: list[StateChange] | None = None) -> None:
        self.total = 0
        self.changes: list[StateChange] = changes if changes is not None else []
        # The states that may hold a key-value marked for deletion (a tombstone, a TTL
        # key): the sweep every round skips the others (most states hold none).
        self.marked: set[NodeState] = set()
        # The cohort of the states not learnt yet (see NodeState.discovered_at), and the
        # last one given out: states are learnt as time goes on, many at one moment.
        self.unlearnt = self._last_cohort = _Cohort(self, None)

    def cohort_learnt_at(self, at: float | None) -> _Cohort:
        """The cohort of the states learnt at ``at`` (the last one given out, if it is
        of that moment; else a new one)."""
        if at is None:
            return self.unlearnt
        last = self._last_cohort
        if last.discovered_at == at:
            return last
        cohort = self._last_cohort = _Cohort(self, at)
        return cohort


class _Cohort:
    """What the node states of one cluster state learnt at one moment hold alike: the
    cluster state's usage and that moment (``discovered_at``), one slot of each state
    for both, where a slot each cost 8 bytes a state (N^2 in a simulation, where an
    engine learns all of its nodes in a few steps, most at one)."""

    __slots__ = ("discovered_at", "usage")

    def __init__(self, usage: _Usage, discovered_at: float | None) -> None:
        self.usage = usage
        self.discovered_at = discovered_at


# The digest entry of a state that was never in a digest (the codec checks the node along
# with the entry, so one entry may stand for any number of nodes).
_NO_DIGEST = NodeDigest(0, 0, 0)
_NO_ENTRY: tuple[NodeDigest, bytes | None] = (_NO_DIGEST, None)


class KeyValues(dict[str, VersionedValue]):
    """A node state's key-values, with ``size``: the bytes of memory they hold, as
    :func:`key_value_cost` estimates them (summed over them, kept as they change). Held
    here rather than in a slot of the state, since it follows from the key-values alone:
    the states of a simulation that hold one mapping (see SharedKeyValues) hold one size,
    where a slot each cost 8 bytes a state, N^2 in a simulation.

    And ``stale``: the node as the last delta carried it of these key-values (see
    NodeState.stale_node), or None. What a delta carries of a node follows from its
    key-values, its last_gc_version and the floor; the last two are checked by whoever
    takes it, so it is kept with the key-values, until they change (a state that writes
    to them forgets it), and the states that hold one mapping keep one between them,
    where a slot of each state cost 8 bytes (N^2 in a simulation)."""

    __slots__ = ("size", "stale")

    size: int
    stale: StaleNode | None

    def copy_of_own(self) -> KeyValues:
        """A copy, with its size, to write to (and no stale node: it is to change)."""
        copy = KeyValues(self)
        copy.size = self.size
        copy.stale = None
        return copy


class SharedKeyValues(KeyValues):
    """A node's key-values at one version as every state of the process that holds that
    version holds them (see SharedObjects.key_values_of): never changed in place. A state
    that writes to it writes to a copy of its own."""

    __slots__ = ()


# The key-values of a state that holds none (a new one, or one reset): one mapping for
# all, shared as any other (a state writes to a copy of its own), where each held an
# empty mapping of its own (80 bytes) until its first key-value. Never has a stale node:
# a node without key-values is not kept (see NodeState.new_stale_node).
_NO_KEY_VALUES = SharedKeyValues()
_NO_KEY_VALUES.size = 0
_NO_KEY_VALUES.stale = None


class NodeState:
    """One node's replicated key-values, heartbeat and versions."""

    __slots__ = (
        "_cohort",
        "_entry",
        "heartbeat",
        "key_values",
        "last_gc_version",
        "last_update",
        "max_version",
        "node",
    )

    def __init__(
        self,
        node: NodeId,
        changes: list[StateChange] | None = None,
        usage: _Usage | None = None,
    ) -> None:
        self.node = node
        self.heartbeat = 0
        if usage is None:
            usage = _Usage(changes)
        elif changes is not None and changes is not usage.changes:
            raise ValueError("a node state records its changes where its usage counts them")
        self._cohort = usage.unlearnt
        self.key_values: KeyValues = _NO_KEY_VALUES
        self.max_version = 0
        # Invariant: the state holds every live key-value as of max_version, and every
        # tombstone newer than last_gc_version. After a reset last_gc_version may exceed
        # max_version while the state is being refilled.
        self.last_gc_version = 0
        # Local time of the last heartbeat rise seen: when we last heard from the node
        # itself. Not set by the first heartbeat we learn (a peer may report a node dead
        # for minutes), nor by deltas (peers relay old news).
        self.last_update: float | None = None
        # The last digest entry handed out and its encoding (None until the first digest;
        # see ClusterState.compute_digest), in one tuple: the one renew_digest_entry gives,
        # or in a simulation the one of SharedObjects.entries, shared (a slot each cost 8
        # bytes a state). The entry is given again while the three versions are the same,
        # so that an unchanged node costs no new object and the codec finds its encoded
        # entry by identity. One entry for every new state (frozen), where each made its
        # own: 64 B per state, N^2 states in a simulation, until their first digest.
        self._entry = _NO_ENTRY
        # The node as the last delta carried it is kept with the key-values (see
        # KeyValues.stale and stale_node), until they change: its NodeDelta and operations
        # are joined into the next delta as they are, and its key-values and their
        # operations are what stale_mutations gives again (the same node goes to every
        # peer that lacks it, mostly from the same version). One slot, not a table: 200
        # nodes in one process hold 40,000 states, and a table per state cost more memory
        # than it saved work. (A slot of its own for the key-values cost 8 bytes a state,
        # N^2 in a simulation, for what the node holds.)

    # ------------------------------------------------------------------ reading

    @property
    def discovered_at(self) -> float | None:
        """Local time this state was first learnt (a new generation of a restarted node),
        or None: set once, by the engine, kept in the state's cohort."""
        return self._cohort.discovered_at

    @discovered_at.setter
    def discovered_at(self, at: float | None) -> None:
        self._cohort = self._cohort.usage.cohort_learnt_at(at)

    @property
    def size(self) -> int:
        """Bytes of memory the key-values hold (as :func:`key_value_cost` estimates them)."""
        return self.key_values.size

    def get(self, key: str) -> str | None:
        versioned = self.key_values.get(key)
        if versioned is None or versioned.is_deleted:
            return None
        return versioned.value

    def visible_items(self) -> Iterator[tuple[str, VersionedValue]]:
        return ((k, v) for k, v in self.key_values.items() if not v.is_deleted)

    def num_visible(self) -> int:
        return sum(1 for v in self.key_values.values() if not v.is_deleted)

    def digest(self) -> NodeDigest:
        """This node's digest entry now. The held one is only replaced by
        ClusterState.compute_digest, which keeps its own table of them in step."""
        digest = self._entry[0]
        if (
            digest.heartbeat != self.heartbeat
            or digest.max_version != self.max_version
            or digest.last_gc_version != self.last_gc_version
        ):
            return NodeDigest(self.heartbeat, self.last_gc_version, self.max_version)
        return digest

    def stale_key_values(self, floor_version: int) -> list[tuple[str, VersionedValue]]:
        """Key-values (tombstones included) newer than ``floor_version``, oldest first."""
        stale = [(k, v) for k, v in self.key_values.items() if v.version > floor_version]
        stale.sort(key=lambda item: item[1].version)
        return stale

    def _kept_stale(self, floor_version: int) -> tuple[tuple[KeyValueMutation, ...], bytes] | None:
        """The kept node's key-values and operations, if they are those of
        ``floor_version``: the same for any floor from the node's up to the oldest of them
        (peers a version or two apart mostly lack just the newest key). A node is kept
        only with key-values, encoded within a block (see new_stale_node)."""
        kept = self.key_values.stale
        if kept is None:
            return None
        node_delta, ops = kept[0], kept[1]
        floor, kvs = node_delta.from_version_excluded, node_delta.key_values
        if ops is not None and (
            floor_version == floor or (floor_version > floor and floor_version < kvs[0].version)
        ):
            return kvs, ops
        return None

    def stale_mutations(
        self, floor_version: int
    ) -> tuple[tuple[KeyValueMutation, ...], bytes | None]:
        """:meth:`stale_key_values` as delta key-values, with their encoded operations
        (None when they cannot be sent whole in one block, or encoded at all: the delta
        writer then takes them one by one). Kept, in the node new_stale_node keeps, until
        the key-values change."""
        kept = self._kept_stale(floor_version)
        if kept is not None:
            return kept
        kvs = tuple(
            KeyValueMutation(key, value.value, value.version, value.status)
            for key, value in self.stale_key_values(floor_version)
        )
        ops: bytes | None
        try:
            ops = encode_key_values(kvs)
        except EncodeError:  # raised again by the writer, if it gets that far
            ops = None
        if ops is None or len(ops) > BLOCK_THRESHOLD:
            # Never added whole: not worth keeping (nor the memory of a large state).
            return kvs, None
        return kvs, ops

    def stale_node(self, floor_version: int) -> StaleNode:
        """This node as a delta carries it to a peer at ``floor_version`` (see
        :func:`~gossip_tui.core.codec.stale_node`): kept until the key-values change, for
        the next peer at the same floor."""
        kept = self.key_values.stale
        if kept is not None:
            node_delta = kept[0]
            if (
                node_delta.from_version_excluded == floor_version
                and node_delta.last_gc_version == self.last_gc_version
            ):
                return kept
        return self.new_stale_node(floor_version)

    def new_stale_node(self, floor_version: int) -> StaleNode:
        """:meth:`stale_node` made from this state's key-values (and kept)."""
        kvs, ops = self.stale_mutations(floor_version)
        stale = stale_node(
            self.node, self.last_gc_version, floor_version, kvs, ops, self.max_version
        )
        # Kept only with key-values and their operations, which is what _kept_stale gives
        # again (an emptied node is not: it carries the max version of the moment).
        if stale[2] is not None:
            self.key_values.stale = stale
        return stale

    def stale_content(self, floor_version: int) -> list[tuple[int, str, str, KeyStatus]]:
        """What a delta carries of the key-values newer than ``floor_version``: (version,
        key, value, status), oldest first. Built and compared in C but for one call."""
        content = [
            (value.version, key, value.value, value.status)
            for key, value in self.key_values.items()
            if value.version > floor_version
        ]
        content.sort()  # versions are distinct within a state (else the keys decide)
        return content

    def stale_count(self, floor_version: int) -> int:
        """How many key-values are newer than ``floor_version``."""
        kept = self._kept_stale(floor_version)
        if kept is not None:
            return len(kept[0])
        # (A list, not a generator: one call, where a generator is resumed per value.)
        return len([v for v in self.key_values.values() if v.version > floor_version])

    # ------------------------------------------------------------------ owner's writes

    def size_after_set(self, key: str, value: str) -> int:
        """What :attr:`size` would be once ``key`` holds ``value``."""
        previous = self.key_values.get(key)
        released = key_value_cost(key, previous.value) if previous is not None else 0
        return self.size - released + key_value_cost(key, value)

    def _own_key_values(self) -> KeyValues:
        """The key-values, to write to: a copy of its own first, when shared."""
        key_values = self.key_values
        if type(key_values) is SharedKeyValues:
            key_values = self.key_values = key_values.copy_of_own()
        return key_values

    def _store(self, key: str, value: VersionedValue) -> None:
        grown = self.size_after_set(key, value.value) - self.key_values.size
        if value.status_since is not None:
            self._cohort.usage.marked.add(self)
        key_values = self._own_key_values()
        key_values[key] = value
        key_values.stale = None
        key_values.size += grown
        self._cohort.usage.total += grown

    def _remove(self, key: str) -> None:
        key_values = self._own_key_values()
        removed = key_values.pop(key)
        key_values.stale = None
        shrunk = key_value_cost(key, removed.value)
        key_values.size -= shrunk
        self._cohort.usage.total -= shrunk

    def _bump(self, key: str, value: VersionedValue) -> None:
        self._store(key, value)
        self.max_version = value.version
        self._cohort.usage.changes.append(KeyChange(self.node, key, value))
        self._cohort.usage.changes.append(VersionChange(self.node, self.max_version))

    def next_version(self) -> int:
        """The version of the owner's next write. It saturates at the u64 edge rather than
        overflow the wire field; the engine takes a new generation long before that."""
        return min(self.max_version + 1, U64_MAX)

    def set(self, key: str, value: str) -> None:
        previous = self.key_values.get(key)
        if previous is not None and previous.value == value and previous.status is KeyStatus.SET:
            return  # Same value: no new version, as chitchat.
        self._bump(key, VersionedValue(value, self.next_version()))

    def set_with_ttl(self, key: str, value: str, now: float) -> None:
        previous = self.key_values.get(key)
        if (
            previous is not None
            and previous.value == value
            and previous.status is KeyStatus.DELETE_AFTER_TTL
        ):
            return
        self._bump(key, VersionedValue(value, self.next_version(), KeyStatus.DELETE_AFTER_TTL, now))

    def delete(self, key: str, now: float) -> bool:
        """Tombstone ``key``: it vanishes for readers now, from memory after the grace period."""
        if key not in self.key_values:
            return False
        self._bump(key, VersionedValue("", self.next_version(), KeyStatus.DELETED, now))
        return True

    def delete_after_ttl(self, key: str, now: float) -> bool:
        """Keep ``key`` visible, but remove it after the grace period."""
        previous = self.key_values.get(key)
        if previous is None:
            return False
        self._bump(
            key,
            VersionedValue(previous.value, self.next_version(), KeyStatus.DELETE_AFTER_TTL, now),
        )
        return True

    def republish(
        self, items: Iterable[tuple[str, VersionedValue]], last_gc_version: int, *, announce: bool
    ) -> None:
        """The owner's repair: hold exactly the live ``items`` (oldest first), at versions
        just above ``last_gc_version``. A peer whose view of this state is below that
        last_gc_version resets its copy and takes these keys afresh (scuttlebutt's reset
        rule, chitchat's too), which undoes whatever was forged into it. Tombstones are
        dropped: a peer that resets never needs them. ``announce`` records the keys as
        changes (a new identity); renumbering the same values is no news to readers."""
        kept = [(key, value) for key, value in items if not value.is_deleted]
        for key in list(self.key_values):
            self._remove(key)
        self.last_gc_version = last_gc_version
        self.max_version = last_gc_version
        for offset, (key, value) in enumerate(kept, start=1):
            renumbered = attrs.evolve(value, version=last_gc_version + offset)
            self._store(key, renumbered)
            self.max_version = renumbered.version
            if announce:
                self._cohort.usage.changes.append(KeyChange(self.node, key, renumbered))
        self._cohort.usage.changes.append(VersionChange(self.node, self.max_version))

    # ------------------------------------------------------------------ replication

    def try_set_heartbeat(self, heartbeat: int, now: float) -> bool:
        """Record a peer's heartbeat; True when it is news (the first one never is)."""
        if self.heartbeat == 0:
            self.heartbeat = heartbeat
            return False
        if heartbeat > self.heartbeat:
            self.heartbeat = heartbeat
            self.last_update = now
            return True
        return False

    def check_delta(self, delta: NodeDelta) -> DeltaStatus:
        if delta.from_version_excluded > self.max_version:
            # From a future we never saw (we were reset, most likely): useless to us.
            return DeltaStatus.REJECT
        if delta.key_values and delta.key_values[-1].version > delta.max_version:
            # A SetMaxVersion below the delta's own key-values: malformed. chitchat would
            # panic on it; we drop it.
            return DeltaStatus.REJECT
        compatible = (
            delta.last_gc_version <= self.last_gc_version
            or delta.last_gc_version <= self.max_version
        )
        if not compatible:
            # The sender forgot tombstones we never saw: only a full state (from 0) is safe.
            if delta.from_version_excluded != 0:
                return DeltaStatus.REJECT
            return DeltaStatus.APPLY_AFTER_RESET
        if self.max_version < delta.max_version:
            return DeltaStatus.APPLY
        return DeltaStatus.REJECT

    def _reset(self, last_gc_version: int) -> None:
        for key, value in self.key_values.items():
            if not value.is_deleted:
                self._cohort.usage.changes.append(KeyChange(self.node, key, None))
        self._cohort.usage.total -= self.key_values.size
        self.heartbeat = 0
        self.key_values = _NO_KEY_VALUES
        self.max_version = 0
        self.last_gc_version = last_gc_version

    def _would_exceed(
        self,
        news: list[KeyValueMutation],
        costs: list[int],
        limits: StateLimits,
        reset: bool,
    ) -> bool:
        """Whether storing ``news`` (each with its cost) would pass a bound, once counting
        every value as new growth (none replaced, no repeat, no reset) would: the usual
        case, which fits even so, is decided by apply_delta without this exact count."""
        # The size the state would have afterwards, net of the values it replaces (a
        # node near its bound that rewrites a key must not look like it outgrew it).
        held: Mapping[str, VersionedValue] = {} if reset else self.key_values
        # A key repeated within the delta ends up stored once, with its last value.
        final = {kv.key: (kv.value, cost) for kv, cost in zip(news, costs, strict=True)}
        size = self.key_values.size
        growth = -size if reset else 0
        for key, (_value, cost) in final.items():
            previous = held.get(key)
            growth += cost
            if previous is not None:
                growth -= key_value_cost(key, previous.value)
        if growth <= 0:
            return False
        return (
            size + growth > limits.max_node_state_bytes
            or self._cohort.usage.total + growth > limits.max_total_state_bytes
        )

    def apply_delta(
        self,
        delta: NodeDelta,
        now: float,
        limits: StateLimits | None = None,
        shared: SharedObjects | None = None,
    ) -> DeltaStatus:
        status = self.check_delta(delta)
        if status is DeltaStatus.REJECT:
            return status
        reset = status is DeltaStatus.APPLY_AFTER_RESET
        # What a state at ``floor`` would store, decided once for the bound and the writes
        # (after a reset the state is at 0, its last_gc_version the delta's): not already
        # known, and no tombstone we have already collected. Each with its cost, counted
        # inline for ASCII (key_value_cost's usual case): a node joining brings every key
        # it holds, and this runs for each node of every delta that brings news.
        floor, last_gc = (
            (0, delta.last_gc_version) if reset else (self.max_version, self.last_gc_version)
        )
        news: list[KeyValueMutation] = []
        costs: list[int] = []
        for kv in delta.key_values:
            version = kv.version
            if version > floor and (kv.status is _SET or version > last_gc):
                key, text = kv.key, kv.value
                news.append(kv)
                costs.append(
                    KEY_VALUE_OVERHEAD + len(key) + len(text)
                    if key.isascii() and text.isascii()
                    else key_value_cost(key, text)
                )
        upper = sum(costs)  # the growth if every value were new: what the bounds check first
        if (
            limits is not None
            and (
                self.key_values.size + upper > limits.max_node_state_bytes
                or self._cohort.usage.total + upper > limits.max_total_state_bytes
            )
            and self._would_exceed(news, costs, limits, reset)
        ):
            return DeltaStatus.OVER_LIMIT
        if reset:
            self._reset(delta.last_gc_version)
        # _store and the change records inlined, the records and set values made without
        # a Python call each (see _KEY_CHANGE_SETTERS): a node joining brings every key.
        key_values = self.key_values
        if news and type(key_values) is SharedKeyValues:  # _own_key_values inlined
            # (KeyValues.copy_of_own inlined: every new state's first key-values are a
            # copy of the shared empty mapping.)
            shared_size = key_values.size
            key_values = self.key_values = KeyValues(key_values)
            key_values.size, key_values.stale = shared_size, None
        usage = self._cohort.usage
        changes, node = usage.changes, self.node
        grown = 0
        for kv, cost in zip(news, costs, strict=True):
            key, version = kv.key, kv.version
            previous = key_values.get(key)
            if previous is not None:
                if previous.version >= version:
                    continue
                cost -= key_value_cost(key, previous.value)
            kv_status = kv.status
            if kv_status is not _SET:
                usage.marked.add(self)  # stored with a status_since (now)
                value = VersionedValue(kv.value, version, kv_status, now)
            elif shared is None:
                value = VersionedValue(kv.value, version)
            else:
                # SharedObjects.value's usual case (another state stored it) inlined.
                held = shared.values.get(id(kv))
                value = held[1] if held is not None and held[0] is kv else shared.value(kv)
            key_values[key] = value
            grown += cost
            if _KEY_CHANGE_SETTERS is None:
                changes.append(KeyChange(node, key, value))
            else:
                change = _new(KeyChange)
                set_node, set_key, set_value = _KEY_CHANGE_SETTERS
                set_node(change, node)
                set_key(change, key)
                set_value(change, value)
                changes.append(change)
        if news:
            key_values.stale = None
            key_values.size += grown  # (its own mapping: written to above)
            usage.total += grown
        self.max_version = delta.max_version
        if _VERSION_CHANGE_SETTERS is None:
            changes.append(VersionChange(node, self.max_version))
        else:
            moved = _new(VersionChange)
            set_node, set_max_version = _VERSION_CHANGE_SETTERS
            set_node(moved, node)
            set_max_version(moved, self.max_version)
            changes.append(moved)
        if shared is not None:
            marked = usage.marked
            if not marked or self not in marked:
                shared.key_values_of(self)
        return status

    def gc_keys_marked_for_deletion(self, grace_period: float, now: float) -> None:
        """Forget tombstones and expired TTL keys older than ``grace_period``."""
        if self not in self._cohort.usage.marked:
            return
        expired = []
        marked = False
        for key, value in self.key_values.items():
            if value.status_since is not None:
                if now >= value.status_since + grace_period:
                    expired.append((key, value))
                else:
                    marked = True
        if not marked:
            self._cohort.usage.marked.discard(self)
        for key, value in expired:
            self._remove(key)
            self.last_gc_version = max(self.last_gc_version, value.version)
            if not value.is_deleted:
                self._cohort.usage.changes.append(KeyChange(self.node, key, None))


class SharedObjects:
    """Immutable objects shared by the cluster states of one process: many engines in one
    process (the simulation, N^2 entries) hold the same few digest entries of each node (a
    NodeDigest and its wire bytes, 180 bytes), the same stored values (72 bytes each) and
    the same key-value mappings (184 bytes for a few keys), each a copy otherwise. Frozen
    objects (a shared mapping is copied before a write), equal to the copies, so sharing
    them changes nothing but memory. A node alone in its process has nothing to share and
    none of this (ClusterState.shared is None). Each table is emptied when it holds
    ``max_entries``, the digest entries' when it holds ``max_digest_entries`` (by default
    as many)."""

    __slots__ = (
        "_alone",
        "_lists",
        "_positions",
        "alone_at",
        "entries",
        "key_values",
        "max_digest_entries",
        "max_entries",
        "stale_nodes",
        "values",
    )

    def __init__(self, max_entries: int, max_digest_entries: int | None = None) -> None:
        self.max_entries = max_entries
        # The states of a simulation hold some 20 heartbeats of each node at a time (each
        # engine's view lags its own way): a table that holds fewer is emptied every few
        # digests, and the states that renew an entry after that each make their own copy
        # of it, while the others still hold theirs (0.24 entries a state at 1,000 nodes
        # with 8 a node, ~230 bytes each; 0.02 with 32).
        self.max_digest_entries = max_entries if max_digest_entries is None else max_digest_entries
        # (id of the node, heartbeat, last_gc_version, max_version) -> the node (kept, so
        # the id is not reused while cached) and its entry with the entry's bytes.
        self.entries: dict[
            tuple[int, int, int, int], tuple[NodeId, tuple[NodeDigest, bytes | None]]
        ] = {}
        # Set values by the identity of the mutation they were read from (kept alike): the
        # codec hands out the same decoded mutations for the same bytes.
        self.values: dict[int, tuple[KeyValueMutation, VersionedValue]] = {}
        # (id of the node, last_gc_version, max_version) -> the node (kept, as above), the
        # key-values a state of it holds at those versions (their size with them).
        self.key_values: dict[tuple[int, int, int], tuple[NodeId, SharedKeyValues]] = {}

        # Each node's 1-tuple, the address index's entry of a node alone at its address
        # (by the identity of the node, kept as above); the ints 0, 1, 2...
        self._alone: dict[int, tuple[NodeId]] = {}
        # Each address's first node, as the 1-tuple of the address index: a state that
        # holds that very node alone at the address finds it here rather than in an index
        # of its own (a dict slot each, ~31 bytes, N^2 in a simulation; see
        # ClusterState.nodes_at). Never emptied, since states rely on it; once it holds
        # ``max_entries`` new addresses go to the states' own indexes.
        self.alone_at: dict[SocketAddress, tuple[NodeId]] = {}
        self._positions: list[int] = []
        # Lists of the same objects in the same order, one for every state that holds one
        # (see same_list), by (length, identity of the first and last item).
        self._lists: dict[tuple[int, int, int], list[object]] = {}
        # (id of the node, last_gc_version, max_version, floor version) -> the node (kept,
        # so the id is not reused while cached), what the key-values above the floor held
        # (NodeState.stale_content), and the node as a delta carries it from that floor,
        # with its key-values as NodeState.stale_mutations gives them again (one for every
        # state that takes it, where each made its own: 64 bytes a state, most states of
        # a simulation once a key spread).
        self.stale_nodes: dict[
            tuple[int, int, int, int],
            tuple[NodeId, list[tuple[int, str, str, KeyStatus]], StaleNode],
        ] = {}

    def alone(self, node: NodeId) -> tuple[NodeId]:
        """``(node,)``, one tuple for every state of the process."""
        held = self._alone.get(id(node))
        if held is not None and held[0] is node:
            return held
        if len(self._alone) >= self.max_entries:
            self._alone.clear()
        alone = self._alone[id(node)] = (node,)
        return alone

    def same_list(self, items: list[_Item]) -> list[_Item]:
        """A list of the very objects of ``items`` in their order, one for every state of
        the process (never changed in place: a state replaces its list): the wire order's
        nodes and ranks, equal in the states of a simulation once it formed (8 bytes an
        item each, N^2 items)."""
        if not items:
            return items
        key = (len(items), id(items[0]), id(items[-1]))
        held = self._lists.get(key)
        if held is not None and all(map(is_, held, items)):
            return cast("list[_Item]", held)
        if len(self._lists) >= self.max_entries:
            self._lists.clear()
        self._lists[key] = cast("list[object]", items)
        return items

    def ranks(self, ranks: list[int]) -> Sequence[int]:
        """A state's wire order as positions in its node_states (``ranks``), in an array
        of 2 bytes an item (4 past 65,536 nodes): no two states of a simulation hold the
        same (each engine's own node is its first), so they are not shared, and a list
        held a pointer of 8 bytes an item, N^2 in a simulation."""
        return array("H" if len(ranks) <= 65_536 else "I", ranks)

    def positions(self, count: int) -> list[int]:
        """``list(range(count))``, of the same int objects for every state."""
        held = self._positions
        if len(held) < count:
            held.extend(range(len(held), count))
        return held[:count]

    def key_values_of(self, state: NodeState) -> None:
        """Make ``state`` hold the process's mapping of its key-values at its versions,
        where each state held a dict of its own (184 bytes for a few keys, N^2 of them in
        a simulation): the first state at those versions gives it, the others take it.
        Only for states without values marked for deletion (their status times are each
        state's own, and equality does not see them); a mapping that differs in anything,
        the order too (a peer may forge a state at a version), is kept apart."""
        node = state.node
        key = (id(node), state.last_gc_version, state.max_version)
        held = self.key_values.get(key)
        if held is not None and held[0] is node:
            mapping = held[1]
            if mapping is not state.key_values and list(mapping.items()) == list(
                state.key_values.items()
            ):
                state.key_values = mapping  # (its size too: that of the same key-values)
            return
        held_now = state.key_values
        if type(held_now) is SharedKeyValues:
            mapping = held_now
        else:
            mapping = SharedKeyValues(held_now)
            mapping.size, mapping.stale = held_now.size, held_now.stale
        state.key_values = mapping
        if len(self.key_values) >= self.max_entries:
            self.key_values.clear()
        self.key_values[key] = (node, mapping)

    def value(self, kv: KeyValueMutation) -> VersionedValue:
        """``kv`` stored as a set value (no status time: not marked for deletion)."""
        held = self.values.get(id(kv))
        if held is not None and held[0] is kv:
            return held[1]
        value = VersionedValue(kv.value, kv.version)
        if len(self.values) >= self.max_entries:
            self.values.clear()
        self.values[id(kv)] = (kv, value)
        return value

    def stale_node(self, state: NodeState, floor_version: int) -> StaleNode:
        """``state.stale_node(floor_version)`` for a state that keeps none for that floor,
        encoded once for every state of the process
        that holds the same key-values of the node: in a forming cluster each of the N
        states of a node sends it to newcomers, each encoding the same operations. Taken
        only where the state's key-values above the floor are the very ones (compared by
        content, in C: a forged or half-collected copy encodes its own), so the node
        delta, its key-values and bytes are those the state would have made."""
        node = state.node
        key = (id(node), state.last_gc_version, state.max_version, floor_version)
        content = state.stale_content(floor_version)
        held = self.stale_nodes.get(key)
        if held is not None and held[0] is node and held[1] == content:
            stale = state.key_values.stale = held[2]
            return stale
        stale = state.new_stale_node(floor_version)
        if stale[2] is not None:  # kept by the state: whole, its operations within a block
            if len(self.stale_nodes) >= self.max_entries:
                self.stale_nodes.clear()
            self.stale_nodes[key] = (node, content, stale)
        return stale

    def renew(
        self,
        node: NodeId,
        old: NodeDigest,
        heartbeat: int,
        last_gc_version: int,
        max_version: int,
        old_wire: bytes | None,
    ) -> tuple[NodeDigest, bytes | None]:
        """:func:`~gossip_tui.core.codec.renew_digest_entry`, made once per process."""
        key = (id(node), heartbeat, last_gc_version, max_version)
        held = self.entries.get(key)
        if held is not None and held[0] is node:
            forget_digest_entry(old)
            return held[1]
        entry = renew_digest_entry(node, old, heartbeat, last_gc_version, max_version, old_wire)
        if len(self.entries) >= self.max_digest_entries:
            self.entries.clear()
        self.entries[key] = (node, entry)
        return entry


class ClusterState:
    """Every known node's state, and the scuttlebutt rules between them."""

    def __init__(
        self, limits: StateLimits | None = None, max_digest_bytes: int | None = None
    ) -> None:
        self.limits = limits or StateLimits()
        # What a digest of every known node may take (None: no bound). The engine derives
        # it from the datagram size: a digest that outgrows its datagram cannot be sent.
        self.max_digest_bytes = max_digest_bytes
        self.node_states: dict[NodeId, NodeState] = {}
        self.changes: list[StateChange] = []
        # Input refused for a limit ("over_limit", "node_limit", "digest_full",
        # "node_id_too_long"), for the operator. Stale or duplicate deltas are normal in
        # gossip and not counted.
        self.rejected: Counter[str] = Counter()
        # The same refusals one by one, since the engine's last step took them.
        self._refusals: list[str] = []
        self._usage = _Usage(self.changes)
        self._digest_bytes = _DIGEST_HEAD
        self._gc_nodes: OrderedDict[NodeId, int] = OrderedDict()
        # The known nodes by gossip address (generations of one node share it): who sent a
        # message is looked up here rather than searched for in its digest. Tuples, not
        # lists: nearly every address holds one node, and a 1-tuple takes half a list's
        # memory (a 5,000-node simulation holds 25 million of them).
        self._by_addr: dict[SocketAddress, tuple[NodeId, ...]] = {}
        # Each node's last digest entry (see compute_digest), while the state is not shared
        # (see SharedObjects); whether the wire order below holds (False: to be sorted
        # again, the nodes changed).
        self._digest_entries: dict[NodeId, NodeDigest] = {}
        self._wire_sorted = False
        # The order a digest is written in, as parallel lists rather than one list of
        # (node, state) pairs (a pair per node per state, 64 bytes): its nodes, which a
        # received digest's nodes are compared with in C (see aligned_states), its states,
        # and each state's position in node_states, the order a delta's candidates are
        # taken in.
        self._wire_nodes: list[NodeId] = []
        self._wire_states: list[NodeState] = []
        self._wire_ranks: Sequence[int] = []
        # The node list of the last columns digest found aligned with ours, and ours then
        # (see aligned_states).
        self._aligned_with: tuple[Sequence[NodeId], list[NodeId]] | None = None
        # Where this state's digest entries and stored values come from when other states
        # of the process share them (None: made here; see SharedObjects).
        self.shared: SharedObjects | None = None

    @property
    def total_size(self) -> int:
        """Bytes of memory held by the keys and values of all nodes (as estimated)."""
        return self._usage.total

    @property
    def digest_bytes(self) -> int:
        """Encoded size of a digest of every known node."""
        return self._digest_bytes

    def admission_refusal(self, node: NodeId) -> str | None:
        """Why a node not known yet must stay out (the drop reason), or None to admit it."""
        if len(self.node_states) >= self.limits.max_nodes:
            return "node_limit"
        if len(node.node_id.encode()) > self.limits.max_node_id_bytes:
            return "node_id_too_long"
        if (
            self.max_digest_bytes is not None
            and self._digest_bytes + digest_entry_size(node) > self.max_digest_bytes
        ):
            return "digest_full"
        return None

    def __len__(self) -> int:
        return len(self.node_states)

    def nodes(self) -> Iterable[NodeId]:
        return self.node_states.keys()

    def node_state(self, node: NodeId) -> NodeState | None:
        return self.node_states.get(node)

    def learn_alone_nodes(self, nodes: list[NodeId], entry_bytes: int) -> bool:
        """node_state_or_init of each of ``nodes`` in order, at once, for a state of a
        process of shared states (a simulation's pre-form) that holds its own node alone,
        where the caller knows each node to be the one the process met first at its
        address, alone there, and ours none of theirs: each is then found in
        SharedObjects.alone_at and no address entry of the state's own is made.
        ``entry_bytes``: what they take in a digest. False, and nothing done, where the
        state remembers forgotten nodes (node_state_or_init forgets each one it learns)."""
        if self._gc_nodes or self.shared is None:
            return False
        usage = self._usage
        self.node_states.update(
            zip(nodes, map(NodeState, nodes, repeat(self.changes), repeat(usage)), strict=True)
        )
        self._digest_bytes += entry_bytes
        self._wire_sorted = False
        return True

    def count_copied_size(self, grown: int) -> None:
        """``grown`` bytes of key-values came to this state's node states by a copy of
        another state's slots (a simulation's pre-form), not through its own writes: the
        total (total_size, the limits) counts them as its writes would have."""
        self._usage.total += grown

    def node_state_or_init(self, node: NodeId) -> NodeState:
        state = self.node_states.get(node)
        if state is None:
            self._gc_nodes.pop(node, None)
            addr = node.gossip_addr
            at_addr = self.nodes_at(addr)  # (before this node is known)
            state = NodeState(node, self.changes, self._usage)
            self.node_states[node] = state
            shared = self.shared
            if shared is None:
                self._digest_entries[node] = state._entry[0]
            self._wire_sorted = False
            self._digest_bytes += digest_entry_size(node)
            if at_addr:
                self._by_addr[addr] = (*at_addr, node)
            elif shared is None:  # the usual: the node alone at its address
                self._by_addr[addr] = (node,)
            else:
                alone = shared.alone_at.get(addr)
                if alone is None and len(shared.alone_at) < shared.max_entries:
                    alone = shared.alone_at[addr] = shared.alone(node)
                if alone is not None and alone[0] is node:
                    self._by_addr.pop(addr, None)  # found in shared.alone_at
                else:
                    self._by_addr[addr] = shared.alone(node)
        return state

    def nodes_at(self, addr: SocketAddress) -> Sequence[NodeId]:
        """The known nodes whose gossip address is ``addr``, in the order they were learnt."""
        held = self._by_addr.get(addr)
        if held is not None:
            return held
        shared = self.shared
        if shared is not None:
            # A state holding the very node the process met first at the address, alone
            # there, has no entry of its own (see SharedObjects.alone_at).
            alone = shared.alone_at.get(addr)
            if alone is not None:
                state = self.node_states.get(alone[0])
                if state is not None and state.node is alone[0]:
                    return alone
        return ()

    def remove_node(self, node: NodeId) -> None:
        state = self.node_states.pop(node, None)
        if state is not None:
            self._digest_entries.pop(node, None)
            self._wire_sorted = False
            forget_digest_entry(state._entry[0])
            addr = node.gossip_addr
            at_addr = tuple(held for held in self._by_addr.get(addr, (node,)) if held != node)
            alone = None if self.shared is None else self.shared.alone_at.get(addr)
            if not at_addr or (len(at_addr) == 1 and alone is not None and alone[0] is at_addr[0]):
                self._by_addr.pop(addr, None)  # none left, or found in shared.alone_at
            else:
                self._by_addr[addr] = at_addr
            self._usage.total -= state.size
            self._usage.marked.discard(state)
            self._digest_bytes -= digest_entry_size(node)
            self._gc_nodes[node] = state.heartbeat
            self._gc_nodes.move_to_end(node)
            while len(self._gc_nodes) > GC_NODE_MEMORY:
                self._gc_nodes.popitem(last=False)

    def last_heartbeat_if_deleted(self, node: NodeId) -> int | None:
        return self._gc_nodes.get(node)

    def refuse(self, reason: str) -> None:
        """Count a piece of input refused for ``reason``."""
        self.rejected[reason] += 1
        self._refusals.append(reason)

    @property
    def has_refusals(self) -> bool:
        """Whether refusals wait for :meth:`drain_refusals`."""
        return bool(self._refusals)

    def drain_refusals(self) -> tuple[str, ...]:
        if not self._refusals:
            return ()
        refusals = tuple(self._refusals)
        self._refusals.clear()
        return refusals

    def drain_changes(self) -> list[StateChange]:
        changes = self.changes[:]
        self.changes.clear()
        return changes

    def _in_wire_order(self) -> None:
        """Put the wire order lists in the order a digest is written (chitchat's order of
        node ids). Sorted once per change of membership, not per digest."""
        if not self._wire_sorted:
            # Positions in node_states sorted by their node's key: all in C, no Python call
            # per node nor per comparison (a forming cluster learns nodes every message).
            nodes = list(self.node_states)
            keys = list(map(sort_key_of, nodes))
            # (Positions shared by the states of a process: past 256 each is an int object,
            # N^2 of them in a simulation.)
            shared = self.shared
            positions = range(len(nodes)) if shared is None else shared.positions(len(nodes))
            ranks = sorted(positions, key=keys.__getitem__)
            states = list(self.node_states.values())
            wire_nodes = list(map(nodes.__getitem__, ranks))
            self._wire_states = list(map(states.__getitem__, ranks))
            if shared is not None:
                wire_nodes = shared.same_list(wire_nodes)
            self._wire_nodes = wire_nodes
            self._wire_ranks = ranks if shared is None else shared.ranks(ranks)
            self._wire_sorted = True

    @property
    def wire_nodes(self) -> Sequence[NodeId]:
        """The known nodes in wire order: never changed in place, a list of its own once
        the nodes known change (so the same object means the same nodes)."""
        self._in_wire_order()
        return self._wire_nodes

    def aligned_states(self, peer_digests: Mapping[NodeId, NodeDigest]) -> list[NodeState] | None:
        """Our node states position by position with a digest's entries, when it names
        exactly our nodes in wire order (a decoded digest of a peer that knows what we
        know: the usual one); else None. The two are then walked side by side, where
        looking each node up would hash it, a Python call, per entry."""
        self._in_wire_order()
        # A list comparison in C, which finds the same (interned) node ids by identity.
        wire_nodes = self._wire_nodes
        if type(peer_digests) is DigestColumns:
            # Its node list is its layout's, shared by every digest laid out alike and never
            # changed, as ours is until our nodes change: once found aligned, the same two
            # lists are (no compare, nor a Python call to list the digest's nodes).
            nodes = peer_digests.nodes
            held = self._aligned_with
            if held is not None and held[0] is nodes and held[1] is wire_nodes:
                return self._wire_states
            if nodes != wire_nodes:
                return None
            self._aligned_with = (nodes, wire_nodes)
            return self._wire_states
        if len(peer_digests) != len(wire_nodes) or list(peer_digests) != wire_nodes:
            return None
        return self._wire_states

    def take_heartbeats(
        self, digest: Digest, aligned: Sequence[NodeState], me: NodeState | None, now: float
    ) -> tuple[list[NodeId], NodeDigest | None]:
        """Take the heartbeats of ``digest``, whose entries ``aligned`` (see
        :meth:`aligned_states`) are position by position: the nodes whose heartbeat rose
        (for the failure detector), and the digest's entry for ``me`` (not taken).

        In an idle cluster every entry of ours moves here to exactly the peer's (every
        heartbeat rose, nothing else changed): that entry is ours then, the NodeDigest and
        the bytes the codec decoded (``received_entries``), where the next digest made
        each anew and packed it. Not in a state of a shared process (see SharedObjects):
        those take what other states made."""
        columns = digest.nodes
        if type(columns) is DigestColumns:
            risen, seen = self.take_column_heartbeats(columns, aligned, me, now)
            return list(map(columns.nodes.__getitem__, risen)), seen
        rose: list[NodeId] = []
        report = rose.append
        own_view: NodeDigest | None = None
        wires: Iterable[bytes | None] = digest.received_entries or repeat(None, len(aligned))
        if self.shared is not None:
            wires = repeat(None, len(aligned))
        entries = self._digest_entries
        for (node, theirs), state, wire in zip(digest.nodes.items(), aligned, wires, strict=True):
            if state is me:
                own_view = theirs
                continue
            # NodeState.try_set_heartbeat inlined.
            heartbeat = theirs.heartbeat
            held = state.heartbeat
            if not held:
                state.heartbeat = heartbeat  # the first one learnt is not news
            elif heartbeat > held:
                state.heartbeat = heartbeat
                state.last_update = now
                report(node)
                if (
                    wire is not None
                    and theirs.max_version == state.max_version
                    and theirs.last_gc_version == state.last_gc_version
                ):
                    # Our entry is the peer's now: taken, bytes and all (see compute_digest).
                    forget_digest_entry_at(id(state._entry[0]), None)
                    state._entry = (theirs, wire)
                    entries[node] = theirs
        return rose, own_view

    def take_column_heartbeats(
        self, columns: DigestColumns, aligned: Sequence[NodeState], me: NodeState | None, now: float
    ) -> tuple[list[int], NodeDigest | None]:
        """:meth:`take_heartbeats` for a digest read as columns, the risen nodes given by
        their positions in it (the failure detector finds their rows by position: see
        FailureDetector.report_heartbeats_at). Its heartbeats are walked beside our
        states, and only the entries above ours (a quarter of an idle digest) looked at
        further, their NodeDigests made only then. (A loop: map with operator.gt and an
        attrgetter costs three times as much in 3.11.)"""
        risen: list[int] = []
        report = risen.append
        own_view: NodeDigest | None = None
        theirs = columns.heartbeats
        nodes = columns.nodes
        entries = self._digest_entries
        gcs, max_versions = columns.last_gcs, columns.max_versions
        takes_entries = self.shared is None
        # The entries taken are made here, through their slots, with no Python call each
        # (and handed to the columns, which give them out from then on).
        made, data, slices = columns.made, columns.data, columns.slices
        setters = DIGEST_SLOT_SETTERS
        set_heartbeat, set_last_gc, set_max_version = setters or (_unset, _unset, _unset)
        new = object.__new__
        for at, heartbeat, state in zip(range(len(theirs)), theirs, aligned, strict=True):
            held = state.heartbeat
            if heartbeat <= held:
                continue
            if state is me:
                continue  # ours: looked up below, risen or not
            # NodeState.try_set_heartbeat inlined, as in take_heartbeats.
            state.heartbeat = heartbeat
            if not held:
                continue  # the first one learnt is not news
            state.last_update = now
            report(at)
            max_version = max_versions[at]
            last_gc = gcs[at]
            if (
                takes_entries
                and max_version == state.max_version
                and last_gc == state.last_gc_version
            ):
                # Our entry is the peer's now: taken, bytes and all (see compute_digest).
                # Made here, not looked for first: nothing asks the columns for a risen
                # entry before the heartbeats are taken (our own is not taken), and one
                # made already would be replaced by an equal one.
                if setters is None:
                    entry = NodeDigest(heartbeat, last_gc, max_version)
                else:
                    entry = new(NodeDigest)
                    set_heartbeat(entry, heartbeat)
                    set_last_gc(entry, last_gc)
                    set_max_version(entry, max_version)
                made[at] = entry
                forget_digest_entry_at(id(state._entry[0]), None)
                state._entry = (entry, data[slices[at]])
                entries[nodes[at]] = entry
        if me is not None:
            # (Our position looked up by our id, where aligned.index compared states.)
            mine = columns.index.get(me.node)
            if mine is not None and aligned[mine] is me:
                own_view = columns.entry(mine)
        return risen, own_view

    def compute_digest(self, excluded: Iterable[NodeId] = ()) -> Digest:
        skip = set(excluded)
        shared = self.shared
        renew = renew_digest_entry if shared is None else shared.renew
        # SharedObjects.renew's usual case (another state of the process made the entry)
        # inlined: a simulated round renews every node's entry in every state.
        held_entries = None if shared is None else shared.entries
        # Every node's last entry, in the order of node_states (both change together):
        # copied, it is the digest (a dict copy reuses the keys' hashes, where building it
        # again hashes every node), and only the entries that moved are written into it.
        # Not in a state of a shared process: the table is a dict slot a node, N^2 of
        # them in a simulation (~37 bytes each at 1,000 nodes), and its digest is built
        # from the states' entries instead (7% more instructions a simulated round).
        entries = self._digest_entries if shared is None else None
        self._in_wire_order()
        wires: list[bytes | None] = []
        append = wires.append
        # Whether every entry has bytes: only a renewed one may not (an unchanged one has),
        # noted there, where ``None in wires`` compared each of them with None.
        carried = True
        # NodeState's entry refreshed inline: this runs for every node on every message.
        # Only entries whose versions moved (heartbeats, mostly) get a new NodeDigest.
        # (The states alone: a state's node is its key in node_states, the very object, and
        # is read only for an entry that moved, where a zip with the nodes made and
        # unpacked a pair for each.)
        for state in self._wire_states:
            digest, wire = state._entry
            if (
                digest.heartbeat != state.heartbeat
                or digest.max_version != state.max_version
                or digest.last_gc_version != state.last_gc_version
                or wire is None
            ):
                node = state.node
                held = (
                    None
                    if held_entries is None
                    else held_entries.get(
                        (id(node), state.heartbeat, state.last_gc_version, state.max_version)
                    )
                )
                if held is not None and held[0] is node:
                    forget_digest_entry_at(id(digest), None)
                    entry = held[1]
                else:
                    entry = renew(
                        node,
                        digest,
                        state.heartbeat,
                        state.last_gc_version,
                        state.max_version,
                        wire,
                    )
                state._entry = entry
                digest, wire = entry
                if wire is None:
                    carried = False
                if entries is not None:
                    entries[node] = digest  # a value replaced: the order stays
            append(wire)
        if entries is None:  # a shared state's: gathered from the states
            states = self.node_states
            if skip:
                return Digest(
                    {node: state._entry[0] for node, state in states.items() if node not in skip}
                )
            entries = dict(zip(states, map(_first, map(_entry_of, states.values())), strict=True))
        elif skip:
            return Digest({node: nd for node, nd in entries.items() if node not in skip})
        else:
            entries = entries.copy()
        if not carried:  # an entry the wire cannot carry: encoding it will say so
            return Digest(entries)
        return Digest(entries, wire_entries=cast("list[bytes]", wires))

    def apply_delta(self, delta: Delta, now: float, applied: list[NodeDelta] | None = None) -> bool:
        """Apply what applies; True if some node had to be reset. Unknown nodes are ignored:
        nodes are only ever learnt from digests. The node deltas that changed a state are
        appended to ``applied``, when given: the others changed nothing."""
        reset = False
        states = self.node_states
        limits = self.limits
        for node_delta in delta.node_deltas:
            state = states.get(node_delta.node)
            if state is None:
                continue
            held = state.max_version
            if node_delta.max_version <= held and node_delta.last_gc_version <= held:
                # Nothing we do not hold (another peer was first: most nodes of a delta),
                # refused without a call. NodeState.check_delta refuses it the same: its
                # last_gc_version is within our versions, so it needs no reset, and it
                # brings no version past ours.
                continue
            status = state.apply_delta(node_delta, now, limits, self.shared)
            if status is DeltaStatus.OVER_LIMIT:
                self.refuse(status.value)
            reset |= status is DeltaStatus.APPLY_AFTER_RESET
            if applied is not None and (
                status is DeltaStatus.APPLY or status is DeltaStatus.APPLY_AFTER_RESET
            ):
                applied.append(node_delta)
        return reset

    def gc_keys_marked_for_deletion(self, grace_period: float, now: float) -> None:
        # Every round, over every node: the states that cannot hold a marked key-value
        # (most) are passed over here, without a call each.
        marked = self._usage.marked
        if not marked:
            return
        for state in self.node_states.values():
            if state in marked:
                state.gc_keys_marked_for_deletion(grace_period, now)

    def _stale_candidates(
        self, peer_digests: Mapping[NodeId, NodeDigest], skip: set[NodeId], only_listed: bool
    ) -> Iterable[tuple[NodeState, NodeDigest | None]]:
        """Our states that are ahead of the peer's digest (or that it does not name), with
        its entry for them, in the order of node_states (which the delta's random order is
        drawn in, so it must not depend on the path taken)."""
        states: Iterable[tuple[NodeId, NodeState]]
        if only_listed:
            # A partial digest: only the nodes it names are answered.
            known = self.node_states
            states = [(node, known[node]) for node in peer_digests if node in known]
        else:
            aligned = self.aligned_states(peer_digests)
            if aligned is not None and type(peer_digests) is DigestColumns:
                # As below, with no NodeDigest read (nor made) but for the few ahead (in
                # an idle cluster, none).
                theirs = peer_digests.max_versions
                # (Nothing ahead, an idle cluster's usual case, is found without positions.)
                if not any(
                    [
                        state
                        for peer_max, state in zip(theirs, aligned, strict=True)
                        if state.max_version > peer_max
                    ]
                ):
                    return []
                at_ahead = [
                    at
                    for at, peer_max, state in zip(range(len(theirs)), theirs, aligned, strict=True)
                    if state.max_version > peer_max
                ]
                nodes, ranks, entry = peer_digests.nodes, self._wire_ranks, peer_digests.entry
                ahead = [
                    (ranks[at], aligned[at], entry(at))
                    for at in at_ahead
                    if not (skip and nodes[at] in skip)
                ]
                ahead.sort(key=_first)
                return [(state, peer) for _rank, state, peer in ahead]
            if aligned is not None:
                # Side by side, no node looked up; the few ahead are put back in the order
                # of node_states by their rank in it.
                ahead = [
                    (rank, state, peer)
                    for rank, (node, peer), state in zip(
                        self._wire_ranks, peer_digests.items(), aligned, strict=True
                    )
                    if state.max_version > peer.max_version and not (skip and node in skip)
                ]
                ahead.sort(key=_first)
                return [(state, peer) for _rank, state, peer in ahead]
            states = self.node_states.items()
        found: list[tuple[NodeState, NodeDigest | None]] = []
        for node, state in states:
            if skip and node in skip:  # an empty set still hashes the node
                continue
            peer = peer_digests.get(node)
            # The usual case, a peer as far as we are, leaves after one comparison.
            if state.max_version > (peer.max_version if peer is not None else 0):
                found.append((state, peer))
        return found

    def compute_delta(
        self,
        digest: Digest,
        mtu: int,
        excluded: Iterable[NodeId] = (),
        rng: random.Random | None = None,
        *,
        only_listed: bool = False,
    ) -> Delta:
        """What the digest's sender lacks, most useful first, within ``mtu`` encoded bytes.
        A budget too small for anything useful gives an empty delta (one end-of-blocks byte).
        With ``only_listed`` (a partial digest) a node the digest does not name is not in
        the window, rather than unknown to the sender: only the nodes named are answered.
        """
        if mtu < MIN_DELTA_BUDGET:
            return Delta()
        skip = set(excluded)
        peer_digests: Mapping[NodeId, NodeDigest] = digest.nodes
        buckets: dict[tuple[bool, int], list[tuple[NodeState, int]]] = {}
        for state, peer in self._stale_candidates(peer_digests, skip, only_listed):
            # The usual case, a peer as far as we are, left already (see _stale_candidates).
            peer_max = peer.max_version if peer is not None else 0
            peer_gc = peer.last_gc_version if peer is not None else 0
            # We collected tombstones the peer never saw: it must start over from scratch.
            must_reset = peer_gc < state.last_gc_version and peer_max < state.last_gc_version
            from_version = 0 if must_reset else peer_max
            if state.max_version <= from_version:
                continue
            # Ranked by a plain tuple (is_unknown, rank), compared in C. Higher sorts first:
            # nodes the peer does not know (from 0) go first, lowest max_version first among
            # them so small states spread fast; then nodes with most stale records.
            if from_version == 0:
                key = (True, -state.max_version)
            else:
                # NodeState.stale_count's usual case, key-values kept for this very floor
                # (the next peer at it), inlined.
                kept = state.key_values.stale
                stale_count = (
                    len(kept[0].key_values)
                    if kept is not None and kept[0].from_version_excluded == from_version
                    else state.stale_count(from_version)
                )
                key = (False, stale_count)
            buckets.setdefault(key, []).append((state, from_version))

        if not buckets:
            # Nothing the peer lacks (an idle cluster's usual answer): the empty delta a
            # writer finishes with, made once (frozen, so shared).
            return _NOTHING_LACKED
        shuffle = (rng or random).shuffle
        writer = DeltaWriter(mtu)
        add = writer.try_add_stale_node
        shared = self.shared
        # Most useful first; a heap rather than a sort: the budget mostly runs out after the
        # first few buckets (a peer that knows nothing has one per node).
        # (The keys are distinct, so the groups themselves are never compared.)
        heap = [(not is_unknown, -rank, group) for (is_unknown, rank), group in buckets.items()]
        heapq.heapify(heap)
        while heap:
            group = heapq.heappop(heap)[2]
            shuffle(group)
            for state, from_version in group:
                # NodeState.stale_node's usual case, the node kept for this floor, inlined.
                stale = state.key_values.stale
                if (
                    stale is None
                    or stale[0].from_version_excluded != from_version
                    or stale[0].last_gc_version != state.last_gc_version
                ):
                    stale = (
                        state.new_stale_node(from_version)
                        if shared is None
                        else shared.stale_node(state, from_version)
                    )
                if not add(stale):
                    return writer.finish()
        return writer.finish()
