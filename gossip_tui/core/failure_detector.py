"""chitchat's phi-accrual failure detector.

chitchat's "phi" is not the textbook ``-log10(1 - F(t))``: it is the time since the last
heartbeat divided by the mean heartbeat interval, where the mean is smoothed towards a
prior (``initial_interval``, weight 5) so that a node with few samples is not flapping.
A node is live while phi <= threshold. A node needs two reported heartbeats (one
interval) before it has a phi at all; until then it counts as dead.

One addition, ``acceptable_pause``: a peer's heartbeat reaches us several times per round,
so once the prior has washed out the mean interval is a fraction of a round and chitchat's
rule alone declares a node dead after about two seconds of silence at 0.5 s rounds -- a
GC pause, a VM steal or a SIGSTOP kills it. As in Akka's and Cassandra's detectors, the
silence an operator accepts is added to what phi tolerates: a node is dead once its
silence exceeds ``threshold * mean + acceptable_pause``. phi is computed as
``silence / (mean + acceptable_pause / threshold)`` so that it still crosses the threshold
at that moment and still rises smoothly from 0. With ``acceptable_pause=0`` the rule is
chitchat's exactly. Liveness is each node's own judgement and never travels on the wire,
so chitchat peers cannot tell the difference.

Time is always passed in (seconds on a monotonic clock), never read.

One concern, though over 400 lines: judging liveness from heartbeat arrivals (the windows
of intervals, the one loop that updates them, and the detector that reads them).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import compress, repeat
from operator import is_, itemgetter
from typing import Any, cast

import attrs

from .fields_repr import fields_repr
from .models import NodeId
from .validators import non_negative

_PRIOR_WEIGHT = 5.0
# How far short of the exact moment a live node's phi crosses the threshold its deadline
# is put (relative, then in seconds): well above the float error of the division that
# gives phi and of a monotonic clock's reading, so that a node is never deemed steady at a
# time its phi already exceeds the threshold.
_CROSSING_MARGIN = 1e-9
_CROSSING_MARGIN_SECONDS = 1e-6


@attrs.frozen
class FailureDetectorConfig:
    """chitchat's defaults (threshold 8, window 1000, max interval 10 s, prior 5 s, grace
    24 h), plus a 3 s acceptable pause, which chitchat does not have (0 turns it off)."""

    __repr__ = fields_repr

    phi_threshold: float = attrs.field(default=8.0, validator=attrs.validators.gt(0))
    sampling_window_size: int = 1_000
    max_interval: float = 10.0
    initial_interval: float = 5.0
    dead_node_grace_period: float = attrs.field(default=24 * 60 * 60.0, validator=non_negative)
    acceptable_pause: float = attrs.field(default=3.0, validator=non_negative)


# The int objects of row numbers, shared by every detector of the process: a row number
# past 256 is an int object of its own (28 bytes), and a simulation's N detectors each
# number the same N nodes.
_ROW_NUMBERS: list[int] = []

# A fresh window's ring holds this many intervals a row (at most the window's size); it
# grows by doubling (see FailureDetector._widen).
_FIRST_STRIDE = 4

# How many distinct intervals a detector's ring holds as one-byte codes (a bytearray)
# before it holds doubles (8 bytes each): a simulation's detectors see ~4 distinct
# intervals (its clock moves in whole steps), a real node's as many as its readings.
_CODES_KEPT = 256
# The code table's key of -0.0, which equals 0.0 as a float key, and differs from it as
# a term of the sum (-0.0 - 0.0 is -0.0, -0.0 - -0.0 is 0.0).
_NEGATIVE_ZERO = "-0.0"


# The means rows worked out last, by value, for every detector of the process that shares
# its rows (a simulation's): a row whose mean comes out equal to one of those holds that
# float rather than a float object of its own (24 bytes): the rows of a detector mostly
# hold the same few sets of intervals when its peers beat alike.
# Bounded: a detector whose peers all beat apart pays a lookup per heartbeat, and a table
# of at most _MEANS_KEPT.
_MEANS: dict[float, float] = {}
_MEANS_KEPT = 256


def _picked(rows: list[int]) -> Callable[[Sequence[Any]], Sequence[Any]]:
    """What takes the items at ``rows`` (at least one) of a column, as a sequence."""
    if len(rows) == 1:
        at = rows[0]
        return lambda column: (column[at],)
    return cast("Callable[[Sequence[Any]], Sequence[Any]]", itemgetter(*rows))


def _row_number(row: int) -> int:
    numbers = _ROW_NUMBERS
    while len(numbers) <= row:
        numbers.extend(range(len(numbers), 2 * len(numbers) + 64))
    return numbers[row]


class FailureDetector:
    """Decides which peers are live, which are dead, and when a dead one may be forgotten.

    A node's heartbeat window is a row of columns, not an object: a simulation of N nodes
    holds N^2 of them (10^8 at 10,000), where a window object took 104 bytes, its dict
    slot ~31 and the live set's ~31. A node heard from has a row number (``_rows``); the
    columns hold, at that number, its last heartbeat, the sum and the smoothed mean of its
    intervals, its fill, whether it is live, and its ring of intervals (``_stride`` slots
    a row in one array, each interval a one-byte code into the detector's table of the
    distinct intervals it saw, or a double once it saw more than _CODES_KEPT: the
    same doubles either way). The fill is the count of intervals while under the window's
    size, then the window's size plus the position of the oldest interval once the ring
    is full and overwritten oldest first. A row freed by forget or garbage_collect is
    reused for the next new node.

    The columns the heartbeat loop reads and writes on every heartbeat (the last
    heartbeat, the mean, the fill) are lists: an item of an array of doubles is read
    into a float object and written through argument parsing, ~300 instructions more
    than a list's item. Their floats are shared: the ``now`` of one report for all its
    nodes, equal means one float (``_MEANS``); the fill is a small int (cached) while a
    window holds under 257 intervals."""

    def __init__(
        self, config: FailureDetectorConfig, rows: dict[NodeId, int] | None = None
    ) -> None:
        self.config = config
        # Spread over the threshold, the pause delays the crossing by exactly itself.
        self._pause_per_phi = config.acceptable_pause / config.phi_threshold
        # Each node's row: the detector's own, or ``rows``, a numbering of nodes shared by
        # the detectors of a process (a simulation's: N detectors of the same N nodes,
        # where a dict each cost ~31 bytes a node). A shared number is a row here only
        # once this detector gave it out (_given); rows are then not reused. The shared
        # numbering is the order of its keys (numbers are given as its length).
        self._rows: dict[NodeId, int] = {} if rows is None else rows
        self._shared_rows = rows is not None
        # 1 for a row given out (not free), in row order.
        self._given = bytearray()
        # Each row's node (None while free), in row order, when the rows are our own:
        # live_nodes walks it beside the live flags, in C. (Shared rows: the keys of the
        # numbering, one list for all detectors, where a list each cost 8 bytes a node.)
        self._nodes: list[NodeId | None] = []
        self._free_rows: list[int] = []
        self._last: list[float | None] = []  # None before a first heartbeat
        self._mean: list[float | None] = []  # None before a first interval
        self._fill: list[int] = []
        self._sum = array("d")
        # 1 for a live node (every live node has a row: only a dead or forgotten node
        # loses it). The order of the live nodes tells nothing: every reader makes a set
        # of them or sorts them.
        self._live = bytearray()
        # Rows of at most the window's size, as many slots as the fullest row needs (the
        # rows of a detector fill alike: its peers beat at one rhythm).
        self._stride = min(_FIRST_STRIDE, max(config.sampling_window_size, 0))
        self._ring: bytearray | array[float] = bytearray()
        # The ring's code of each distinct interval and the interval of each code (None
        # once the ring holds doubles).
        self._codes: dict[float | str, int] | None = {}
        self._intervals: list[float] = []
        self._dead: dict[NodeId, float] = {}  # node -> time it was declared dead
        # No judgement of update_node_liveness or garbage_collect differs from the present
        # one before this time (it may be early, never late): a runtime need not sweep
        # before it. -inf until settle() first runs, and whenever something happened that
        # only a sweep judges (a heartbeat of a node not live, a death declared, a node
        # forgotten).
        self._steady_until = -math.inf
        # The last batch of every_live nodes reported (see report_heartbeats), their rows,
        # and the _membership it held at: bumped whenever a node is judged, dies, gets or
        # loses a row, so a batch of the same nodes at the same count may reuse both.
        self._membership = 0
        self._batch: list[NodeId] = []
        self._batch_rows: list[int] = []
        self._batch_membership = -1
        # The node list of the last layout reported by position (report_heartbeats_at),
        # the _membership then, and the row of each of its nodes (None: no row, or not
        # live).
        self._layout_rows: tuple[Sequence[NodeId], int, list[int | None]] | None = None

    def _new_row(self, node: NodeId) -> int:
        if self._shared_rows:
            rows = self._rows
            row = rows.get(node)
            if row is None:
                row = rows[node] = _row_number(len(rows))
            self._cover(row + 1)
        elif self._free_rows:
            row = self._free_rows.pop()
        else:
            row = _row_number(len(self._live))
            self._cover(row + 1)
        self._given[row] = 1
        self._last[row] = self._mean[row] = None
        self._fill[row] = 0
        if not self._shared_rows:
            self._nodes[row] = node
            self._rows[node] = row
        return row

    def _cover(self, count: int) -> None:
        """Make the columns ``count`` rows long (new rows free)."""
        missing = count - len(self._live)
        if missing <= 0:
            return
        if not self._shared_rows:
            self._nodes.extend(repeat(None, missing))
        self._given.extend(bytes(missing))
        self._last.extend(repeat(None, missing))
        self._mean.extend(repeat(None, missing))
        self._fill.extend(repeat(0, missing))
        self._sum.extend(repeat(0.0, missing))
        self._live.extend(bytes(missing))
        if self._codes is None:
            cast("array[float]", self._ring).extend(repeat(0.0, self._stride * missing))
        else:
            self._ring.extend(bytes(self._stride * missing))

    def _row_of(self, node: NodeId) -> int | None:
        """``node``'s row here, or None."""
        row = self._rows.get(node)
        if (
            row is not None
            and self._shared_rows
            and (row >= len(self._given) or not self._given[row])
        ):
            return None
        return row

    def _free_row(self, node: NodeId) -> None:
        row = self._row_of(node) if self._shared_rows else self._rows.pop(node, None)
        if row is not None:
            self._given[row] = 0
            self._live[row] = 0
            self._last[row] = self._mean[row] = None  # (see update_liveness_of)
            if not self._shared_rows:
                self._nodes[row] = None
                self._free_rows.append(row)

    def _widen(self) -> None:
        """Double the ring's slots a row (up to the window's size): a row is full."""
        stride, rows = self._stride, len(self._live)
        wider = min(2 * stride, self.config.sampling_window_size)
        old: Any = self._ring
        ring: Any
        if self._codes is None:
            ring = array("d", bytes(8 * wider * rows))
        else:
            ring = bytearray(wider * rows)
        for row in range(rows):
            ring[row * wider : row * wider + stride] = old[row * stride : row * stride + stride]
        self._ring, self._stride = ring, wider

    def _code(self, interval: float) -> float | int:
        """What the ring holds for ``interval``: its code, new if need be, or the interval
        itself once the ring holds doubles (from now on: past _CODES_KEPT distinct)."""
        codes = self._codes
        if codes is None:
            return interval
        key: float | str = interval
        if not interval and math.copysign(1.0, interval) < 0:
            key = _NEGATIVE_ZERO
        code = codes.get(key)
        if code is not None:
            return code
        if len(codes) < _CODES_KEPT:
            code = codes[key] = len(self._intervals)
            self._intervals.append(interval)
            return code
        self._ring = array("d", map(self._intervals.__getitem__, cast("bytearray", self._ring)))
        self._codes = None
        return interval

    def report_heartbeat(self, node: NodeId, now: float) -> None:
        self.report_heartbeats((node,), now)

    def report_heartbeats(self, nodes: Iterable[NodeId], now: float) -> None:
        """Report a heartbeat of each of ``nodes`` at ``now``: a received digest's risen
        heartbeats in one call, where a call per heartbeat cost a chain of five (window,
        interval, crossing, mean), for every node on every message of a forming cluster."""
        rows_of = self._rows
        reported = nodes if isinstance(nodes, list) else list(nodes)
        steady_until = self._steady_until
        # (Rows, or None where a node has none yet.)
        rows: list[Any]
        if self._batch_membership == self._membership and reported == self._batch:
            # The nodes of the last batch (the usual one: an idle cluster's digests all
            # rise alike), compared by identity in C: their rows, all live, where
            # looking them up and asking their liveness hashed each node twice.
            every_live = True
            rows = self._batch_rows
        else:
            # Looked up in C (a node id hashes in C).
            rows = list(map(rows_of.get, reported))
            if self._shared_rows:
                # None where this detector gave out no row (every shared number a row
                # here, free or not): checked in C, the usual case (every node known).
                self._cover(len(rows_of))
                given = self._given
                if None in rows or not all(map(given.__getitem__, rows)):
                    rows = [None if row is None or not given[row] else row for row in rows]
            # (A live node has a row.) The flags picked in one C call, where the
            # bytearray's __getitem__ through map built an argument tuple a row.
            every_live = None not in rows and (not rows or all(_picked(rows)(self._live)))
            if every_live:
                self._batch, self._batch_rows = list(reported), rows
                self._batch_membership = self._membership
        if not every_live:
            self._membership += 1
            # A node not live may come alive at the next sweep. A new node gets its
            # row here, in order (a node named twice gets one).
            steady_until = -math.inf
            for at in compress(range(len(rows)), map(is_, rows, repeat(None))):
                node = reported[at]
                row = self._row_of(node)
                rows[at] = self._new_row(node) if row is None else row
        self._report_rows(rows, now)
        if every_live and rows:
            steady_until = self._crossing_after(rows, now, steady_until)
        self._steady_until = steady_until

    def report_heartbeats_at(
        self, layout: Sequence[NodeId], positions: list[int], now: float
    ) -> None:
        """:meth:`report_heartbeats` of ``layout[at]`` for each of ``positions``: a digest
        read as columns names its risen nodes by their position in its layout, a node list
        that every digest laid out alike shares and nobody changes. The rows of the
        layout's nodes, all live, are looked up once per layout and _membership (rows and
        live flags change only with it), where each report hashed each of its nodes."""
        held = self._layout_rows
        if held is None or held[0] is not layout or held[1] != self._membership:
            self.report_heartbeats(list(map(layout.__getitem__, positions)), now)
            if not self._shared_rows and self._batch_membership == self._membership:
                # Every node reported was live and the rows did not change (a steady
                # cluster's report, once a sweep since): the layout's rows looked up for
                # the next reports. Not while nodes come and go (a forming cluster's
                # every report changes the rows), nor on a simulation's shared rows.
                live = self._live
                rows_at = [
                    None if row is None or not live[row] else row
                    for row in map(self._rows.get, layout)
                ]
                self._layout_rows = (layout, self._membership, rows_at)
            return
        rows = cast("list[int]", list(map(held[2].__getitem__, positions)))
        if None in rows:  # a node not live, or with no row: the careful way
            self.report_heartbeats(list(map(layout.__getitem__, positions)), now)
            return
        self._report_rows(rows, now)
        if rows:
            self._steady_until = self._crossing_after(rows, now, self._steady_until)

    def _crossing_after(self, rows: list[int], now: float, steady_until: float) -> float:
        """``steady_until``, or earlier where one of ``rows`` (live, just reported) may
        cross the threshold first."""
        # The lowest mean gives the earliest crossing (it grows with the mean, rounding
        # and all), worked out once. (A live node has a mean.)
        live_means = cast("list[float]", self._mean)
        lowest_mean = min(_picked(rows)(live_means))
        threshold, pause_per_phi = self.config.phi_threshold, self._pause_per_phi
        tolerated = threshold * (lowest_mean + pause_per_phi)
        until = now + tolerated * (1 - _CROSSING_MARGIN) - _CROSSING_MARGIN_SECONDS
        return until if until < steady_until else steady_until

    def _report_rows(self, rows: Iterable[int], now: float) -> None:
        """Record a heartbeat at ``now`` in each of ``rows``: the one loop that updates
        windows, for a single report and for a received digest's batch (one pass, where
        a call per heartbeat cost twice the instructions the update itself does)."""
        config = self.config
        window_size = config.sampling_window_size
        # The longest interval kept as a sample, and none without a window: one comparison
        # a row, where two tested the interval and then the window's size.
        longest_kept = config.max_interval if window_size > 0 else -math.inf
        # (The same product each time: hoisted, the same double.)
        prior_part = _PRIOR_WEIGHT * config.initial_interval
        last_of, sum_of, mean_of, fill_of = self._last, self._sum, self._mean, self._fill
        # (Any: codes in a bytearray or doubles in an array, by whether codes is None.)
        ring: Any = self._ring
        stride = self._stride
        codes, intervals = self._codes, self._intervals
        # (A detector of its own, a node's: its rows' means are rarely equal but for rows of
        # one report, so it shares a mean with the row before only, where the table cost
        # a lookup and an insert a row.)
        means = _MEANS if self._shared_rows else None
        previous_mean = 0.0
        # The last heartbeat seen last and its interval and slot: the rows of a report
        # mostly last beat at one report (one float), so the interval is worked out and
        # looked up once for all of them.
        previous_last: object = None
        interval = 0.0
        slot: float | int | None = None
        for row in rows:
            last = last_of[row]
            last_of[row] = now
            if last is None:
                continue
            if last is not previous_last:
                previous_last = last
                interval = now - last
                if codes is None:
                    slot = interval
                else:
                    # (A zero is looked up by its sign too, in _code: see _NEGATIVE_ZERO.)
                    slot = codes.get(interval) if interval else None
                    if slot is None:
                        slot = self._code(interval)
                        ring, codes = self._ring, self._codes
            # A long silence is not a sample of the normal rhythm: keep it out of the mean.
            if interval <= longest_kept:
                # (The sum is added to and taken from in the order of the samples, as a
                # float of its own was: the same doubles.)
                fill = fill_of[row]
                if fill < window_size:
                    if fill == stride:
                        self._widen()
                        ring, stride = self._ring, self._stride
                    ring[row * stride + fill] = slot
                    total = sum_of[row] + interval if fill else interval
                    fill += 1
                    count = fill
                else:
                    at = row * stride + fill - window_size
                    oldest = ring[at]
                    total = sum_of[row] - (oldest if codes is None else intervals[oldest])
                    ring[at] = slot
                    total += interval
                    fill += 1
                    if fill == 2 * window_size:
                        fill = window_size
                    count = window_size
                sum_of[row] = total
                fill_of[row] = fill
                mean = (total + prior_part) / (count + _PRIOR_WEIGHT)
                # (Not a zero: 0.0 and -0.0 are equal, and differ as divisors.)
                if means is None:
                    if mean and mean == previous_mean:
                        mean = previous_mean
                    else:
                        previous_mean = mean
                elif mean:
                    held = means.get(mean)
                    if held is not None:
                        mean = held
                    else:
                        if len(means) >= _MEANS_KEPT:
                            means.clear()
                        means[mean] = mean
                mean_of[row] = mean

    @property
    def liveness_version(self) -> int:
        """A number that changes whenever the live or the dead nodes may have (a sweep, a
        death, a node forgotten or collected, a row given out)."""
        return self._membership

    @property
    def steady_until(self) -> float:
        """Before this time, judging every node again changes no verdict (see settle)."""
        return self._steady_until

    def settle(self) -> None:
        """Recompute :attr:`steady_until` once every node was judged (a sweep): the
        earliest moment a live node's phi may cross the threshold or a dead node's grace
        period ends."""
        threshold, pause_per_phi = self.config.phi_threshold, self._pause_per_phi
        last_of, mean_of = self._last, self._mean
        until = math.inf
        # This runs over every live node after a sweep. (A live node has a mean: its
        # window is only emptied when it dies.)
        for row in compress(range(len(self._live)), self._live):
            last, mean = last_of[row], mean_of[row]
            if last is None or mean is None:
                until = -math.inf
                break
            tolerated = threshold * (mean + pause_per_phi)
            crossing = last + tolerated * (1 - _CROSSING_MARGIN) - _CROSSING_MARGIN_SECONDS
            if crossing < until:
                until = crossing
        if self._dead:
            until = min(until, min(self._dead.values()) + self.config.dead_node_grace_period)
        self._steady_until = until

    def mean_interval(self, node: NodeId) -> float | None:
        """The smoothed mean interval of ``node``, or None before its first interval."""
        row = self._row_of(node)
        return None if row is None else self._mean[row]

    def phi(self, node: NodeId, now: float) -> float | None:
        """chitchat's phi, the mean stretched by the acceptable pause (see the module doc)."""
        row = self._row_of(node)
        if row is None:
            return None
        last, mean = self._last[row], self._mean[row]
        if last is None or mean is None:
            return None
        return (now - last) / (mean + self._pause_per_phi)

    def update_node_liveness(self, node: NodeId, now: float) -> None:
        self.update_liveness_of((node,), now)

    def update_liveness_of(self, nodes: Iterable[NodeId], now: float) -> None:
        """Judge each of ``nodes`` by its phi at ``now``: a sweep's nodes in one call, the
        phi worked out here (phi inlined), where a call per node cost three."""
        rows_of = self._rows
        live, dead = self._live, self._dead
        last_of, mean_of = self._last, self._mean
        threshold, pause_per_phi = self.config.phi_threshold, self._pause_per_phi
        if self._shared_rows:
            # Every shared number a row here: one this detector did not give out (or
            # freed) has no last heartbeat, so its node is judged dead, as a node
            # without a row is (its row stays free).
            self._cover(len(rows_of))
        self._membership += 1
        for node in nodes:
            row = rows_of.get(node)
            if row is None:
                dead.setdefault(node, now)
                continue
            last, mean = last_of[row], mean_of[row]
            if (
                last is not None
                and mean is not None
                and (now - last) / (mean + pause_per_phi) <= threshold
            ):
                live[row] = 1
                dead.pop(node, None)
                continue
            live[row] = 0
            dead.setdefault(node, now)
            # Forget the old rhythm: a node that comes back starts a fresh window, so it
            # must show a new interval before it counts as live again.
            self._reset(row)

    def declare_dead(self, node: NodeId, now: float) -> None:
        """Dead now, whatever phi says (a node that announced it is leaving)."""
        self._steady_until = -math.inf
        self._membership += 1
        self._dead.setdefault(node, now)
        row = self._row_of(node)
        if row is not None:
            self._live[row] = 0
            self._reset(row)

    def _reset(self, row: int) -> None:
        # The window emptied (the last heartbeat kept).
        self._mean[row] = None
        self._fill[row] = 0

    def garbage_collect(self, now: float) -> list[NodeId]:
        """Remove and return the dead nodes whose grace period is over."""
        grace = self.config.dead_node_grace_period
        expired = [node for node, died in self._dead.items() if now >= died + grace]
        if expired:
            self._membership += 1
        for node in expired:
            del self._dead[node]
            self._free_row(node)
        return expired

    def live_nodes(self) -> Iterator[NodeId]:
        # (A free row is never live: no None.)
        nodes = list(self._rows) if self._shared_rows else self._nodes
        return cast("Iterator[NodeId]", compress(nodes, self._live))

    def dead_nodes(self) -> Iterator[NodeId]:
        return iter(self._dead)

    def is_live(self, node: NodeId) -> bool:
        # (A row this detector did not give out, or freed, is not live: no _row_of call.)
        row = self._rows.get(node)
        live = self._live
        return row is not None and row < len(live) and bool(live[row])

    def time_of_death(self, node: NodeId) -> float | None:
        return self._dead.get(node)

    def scheduled_for_deletion_nodes(self, now: float) -> set[NodeId]:
        """Dead nodes past half their grace period: no longer gossiped about."""
        # is_scheduled_for_deletion's test, inlined: every message asks this, and while a
        # cluster forms most nodes are dead (learnt, not yet heard beating).
        half = self.config.dead_node_grace_period / 2
        return {node for node, died in self._dead.items() if died + half < now}

    def is_scheduled_for_deletion(self, node: NodeId, now: float) -> bool:
        """Dead for more than half the grace period (and not yet collected)."""
        died = self._dead.get(node)
        return died is not None and died + self.config.dead_node_grace_period / 2 < now

    def forget(self, node: NodeId) -> None:
        self._steady_until = -math.inf
        self._membership += 1
        self._free_row(node)
        self._dead.pop(node, None)
