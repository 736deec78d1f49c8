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
from collections.abc import Iterable, Iterator
from itertools import compress, repeat
from operator import attrgetter, is_
from typing import TYPE_CHECKING, Any, ClassVar, Self, SupportsIndex, cast

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


class _WindowParameters:
    """A window's fixed parameters, one object per distinct set (every window of a
    detector holds the same three, where a slot each cost 24 bytes per window: a
    5,000-node simulation holds 25 million windows), and the means windows of them
    worked out last, by value. A window whose mean comes out equal to one of those holds
    that float rather than a float object of its own (24 bytes): the windows of a
    detector mostly hold the same few sets of intervals when its peers beat alike (the
    engines of a simulation, a quiet cluster on one clock). Bounded: a node whose peers
    all beat apart pays a lookup per heartbeat, and a table of at most _MEANS_KEPT."""

    __slots__ = ("max_interval", "means", "prior_mean", "window_size")

    def __init__(self, window_size: int, max_interval: float, prior_mean: float) -> None:
        self.window_size = window_size
        self.max_interval = max_interval
        self.prior_mean = prior_mean
        self.means: dict[float, float] = {}

    def key(self) -> tuple[int, float, float]:
        return (self.window_size, self.max_interval, self.prior_mean)


# The subclass of SamplingWindow of each set of parameters (see SamplingWindow.__new__).
_WINDOW_KINDS: dict[tuple[int, float, float], type[SamplingWindow]] = {}
_MEANS_KEPT = 256

if TYPE_CHECKING:
    _Doubles = array[float]
else:
    _Doubles = array


class SamplingWindow(_Doubles):
    """The last heartbeat arrival intervals of one node, with their running sum.

    The window is itself an array of C doubles: empty before the first interval, then
    their sum followed by the ring of intervals, filled up to the window's size and then
    overwritten oldest first. A node holds one window per peer, and a deque with a bound
    takes a 64-slot block (760 bytes) from its first sample on, and each float in it
    another 32 bytes, where a double in an array takes 8; an object that held the array
    took another 96 bytes, where the array's own header carries the few fields (104 bytes
    in all), and the sum as a float object 24 (a 5,000-node simulation holds 25 million
    windows). Nothing outside reads it as a sequence."""

    __slots__ = ("_oldest", "last_heartbeat", "mean")

    # The window's parameters: an attribute of its class, not a slot of its own (8 bytes a
    # window, N^2 windows in a simulation). Each set of parameters has its subclass
    # (see __new__), which adds nothing else.
    _parameters: ClassVar[_WindowParameters]

    def __new__(cls, window_size: int, max_interval: float, prior_interval: float) -> Self:
        key = (window_size, max_interval, prior_interval)
        kind = _WINDOW_KINDS.get(key)
        if kind is None:
            namespace = {"__slots__": (), "_parameters": _WindowParameters(*key)}
            kind = _WINDOW_KINDS[key] = type(cls.__name__, (cls,), namespace)
        # (An array of doubles, whatever the parameters: the array takes its type code.)
        return cast("Self", super().__new__(kind, "d"))

    def __init__(self, window_size: int, max_interval: float, prior_interval: float) -> None:
        # Where the oldest interval is in the ring (after the sum), once it is full (before:
        # at 0).
        self._oldest = 0
        self.last_heartbeat: float | None = None
        # The smoothed mean interval, None before the first interval: kept as the intervals
        # change (only here and in reset), so the detector's loops read it without a call.
        self.mean: float | None = None

    def report_heartbeat(self, now: float) -> float | None:
        """Record a heartbeat at ``now``; the smoothed mean interval after it (:attr:`mean`),
        which the detector needs next: returned rather than asked for, one call per
        heartbeat instead of three."""
        _report_heartbeats_to((self,), now, self._parameters)
        return self.mean

    # A window is an object, not a value: compared and hashed by identity, true however
    # few its samples, as it was before it became an array.
    __eq__ = object.__eq__
    __ne__ = object.__ne__
    __hash__ = object.__hash__  # type: ignore[assignment]

    def __bool__(self) -> bool:
        return True

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        # The array's own would rebuild a bare array: the window's fields go with it.
        return (_rebuilt_window, (self._parameters.key(), self.tolist(), self._fields()))

    def __copy__(self) -> SamplingWindow:
        return _rebuilt_window(self._parameters.key(), self, self._fields())

    def __deepcopy__(self, memo: object) -> SamplingWindow:
        return self.__copy__()  # its fields are numbers: nothing to copy deeper

    def _fields(self) -> tuple[int, float | None, float | None]:
        return (self._oldest, self.last_heartbeat, self.mean)

    def reset(self) -> None:
        # Emptied: an array of 16 or more doubles gives its memory back, as a fresh one did
        # (a smaller one keeps its few bytes).
        del self[:]
        self._oldest = 0
        self.mean = None

    def mean_interval(self) -> float | None:
        """The smoothed mean interval, or None before the first interval."""
        return self.mean

    def phi(self, now: float, pause_per_phi: float = 0.0) -> float | None:
        """chitchat's phi, the mean stretched by ``pause_per_phi`` (see the module doc)."""
        mean = self.mean_interval()
        if mean is None or self.last_heartbeat is None:
            return None
        return (now - self.last_heartbeat) / (mean + pause_per_phi)

    def live_until(self, threshold: float, pause_per_phi: float) -> float:
        """A time before which :meth:`phi` stays at or under ``threshold`` if no heartbeat
        comes (a little early, never late); -inf without a phi."""
        mean = self.mean_interval()
        if mean is None or self.last_heartbeat is None:
            return -math.inf
        tolerated = threshold * (mean + pause_per_phi)
        return self.last_heartbeat + tolerated * (1 - _CROSSING_MARGIN) - _CROSSING_MARGIN_SECONDS


def _report_heartbeats_to(
    windows: Iterable[SamplingWindow], now: float, parameters: _WindowParameters
) -> None:
    """Record a heartbeat at ``now`` in each of ``windows``, all of ``parameters``: the one
    loop that updates windows, for a single report and for a received digest's batch (one
    pass, where a call per heartbeat cost twice the instructions the update itself does).
    The parameters are given, not read from each window: a detector's windows all have
    its own (see FailureDetector._new_window)."""
    window_size, max_interval = parameters.window_size, parameters.max_interval
    # (The same product each time: hoisted, the same double.)
    prior_part = _PRIOR_WEIGHT * parameters.prior_mean
    means = parameters.means
    for window in windows:
        last = window.last_heartbeat
        window.last_heartbeat = now
        if last is None:
            continue
        interval = now - last
        # A long silence is not a sample of the normal rhythm: keep it out of the mean.
        if interval <= max_interval and window_size > 0:
            # (The sum is added to and taken from in the order of the samples, as a
            # float of its own was: the same doubles.)
            count = len(window) - 1
            if count < 0:  # the first interval: it is the sum, too
                window.append(interval)
                window.append(interval)
                total = interval
                count = 1
            elif count < window_size:
                window.append(interval)
                total = window[0] + interval
                window[0] = total
                count += 1
            else:
                at = window._oldest + 1
                total = window[0] - window[at]
                window[at] = interval
                window._oldest = at % window_size
                total += interval
                window[0] = total
            mean = (total + prior_part) / (count + _PRIOR_WEIGHT)
            # (Not a zero: 0.0 and -0.0 are equal, and differ as divisors.)
            if mean:
                held = means.get(mean)
                if held is not None:
                    mean = held
                else:
                    if len(means) >= _MEANS_KEPT:
                        means.clear()
                    means[mean] = mean
            window.mean = mean


def _rebuilt_window(
    parameters: tuple[int, float, float],
    intervals: Iterable[float],
    fields: tuple[int, float | None, float | None],
) -> SamplingWindow:
    window = SamplingWindow(*parameters)
    window.extend(intervals)
    window._oldest, window.last_heartbeat, window.mean = fields
    return window


_mean_of = attrgetter("mean")


class FailureDetector:
    """Decides which peers are live, which are dead, and when a dead one may be forgotten."""

    def __init__(self, config: FailureDetectorConfig) -> None:
        self.config = config
        # Spread over the threshold, the pause delays the crossing by exactly itself.
        self._pause_per_phi = config.acceptable_pause / config.phi_threshold
        # The parameters of each window the detector makes (its config's): handed to the
        # batch loop once, where it asked each window for its own.
        self._window_parameters = type(self._new_window())._parameters
        self._samples: dict[NodeId, SamplingWindow] = {}
        # The live nodes, as the keys of a dict (their values unused): a set of them took
        # twice a dict's memory at some sizes (a set grows fourfold: 55 bytes a node at
        # 600 nodes, 52 at 10,000, against 31 and 30), and a simulation holds one per
        # engine (N^2 entries). Every reader makes a set of them or sorts them: the order
        # tells nothing.
        self._live: dict[NodeId, None] = {}
        self._dead: dict[NodeId, float] = {}  # node -> time it was declared dead
        # No judgement of update_node_liveness or garbage_collect differs from the present
        # one before this time (it may be early, never late): a runtime need not sweep
        # before it. -inf until settle() first runs, and whenever something happened that
        # only a sweep judges (a heartbeat of a node not live, a death declared, a node
        # forgotten).
        self._steady_until = -math.inf
        # The last batch of every_live nodes reported (see report_heartbeats), their windows,
        # and the _membership it held at: bumped whenever a node is judged, dies, gets or
        # loses a window, so a batch of the same nodes at the same count may reuse both.
        self._membership = 0
        self._batch: list[NodeId] = []
        self._batch_windows: list[Any] = []
        self._batch_membership = -1

    def _new_window(self) -> SamplingWindow:
        # Every window of the detector is of its config: report_heartbeats hands the
        # batch loop the parameters once, for all of them.
        return SamplingWindow(
            self.config.sampling_window_size,
            self.config.max_interval,
            self.config.initial_interval,
        )

    def report_heartbeat(self, node: NodeId, now: float) -> None:
        self.report_heartbeats((node,), now)

    def report_heartbeats(self, nodes: Iterable[NodeId], now: float) -> None:
        """Report a heartbeat of each of ``nodes`` at ``now``: a received digest's risen
        heartbeats in one call, where a call per heartbeat cost a chain of five (window,
        interval, crossing, mean), for every node on every message of a forming cluster."""
        samples = self._samples
        reported = nodes if isinstance(nodes, list) else list(nodes)
        steady_until = self._steady_until
        # (Windows, or None where a node has none yet; no cast: a Python call.)
        windows: list[Any]
        if self._batch_membership == self._membership and reported == self._batch:
            # The nodes of the last batch (the usual one: an idle cluster's digests all
            # rise alike), compared by identity in C: their windows, all live, where
            # looking them up and asking their liveness hashed each node twice.
            every_live = True
            windows = self._batch_windows
        else:
            # (A live node has a window: only a node dead or forgotten loses it.)
            every_live = all(map(self._live.__contains__, reported))
            # Looked up in C (a node id hashes in C).
            windows = list(map(samples.get, reported))
            if every_live:
                self._batch, self._batch_windows = list(reported), windows
                self._batch_membership = self._membership
        if not every_live:
            self._membership += 1
            # A node not live may come alive at the next sweep. A new node gets its
            # window here, in order (a node named twice gets one). (Never ``None in``: that
            # compares windows, a call each.)
            steady_until = -math.inf
            for at in compress(range(len(windows)), map(is_, windows, repeat(None))):
                node = reported[at]
                window = samples.get(node)
                if window is None:
                    window = samples[node] = self._new_window()
                windows[at] = window
        _report_heartbeats_to(windows, now, self._window_parameters)
        if every_live and windows:
            # The lowest mean gives the earliest crossing (it grows with the mean, rounding
            # and all), worked out once. A live node without a mean (there is none) would
            # leave it to the next sweep: min compares a None it meets, and fails.
            try:
                lowest_mean = min(map(_mean_of, windows))
            except TypeError:
                lowest_mean = None
            if lowest_mean is None:
                steady_until = -math.inf
            else:
                # SamplingWindow.live_until, inlined: the last heartbeat is now.
                threshold, pause_per_phi = self.config.phi_threshold, self._pause_per_phi
                tolerated = threshold * (lowest_mean + pause_per_phi)
                until = now + tolerated * (1 - _CROSSING_MARGIN) - _CROSSING_MARGIN_SECONDS
                if until < steady_until:
                    steady_until = until
        self._steady_until = steady_until

    @property
    def steady_until(self) -> float:
        """Before this time, judging every node again changes no verdict (see settle)."""
        return self._steady_until

    def settle(self) -> None:
        """Recompute :attr:`steady_until` once every node was judged (a sweep): the
        earliest moment a live node's phi may cross the threshold or a dead node's grace
        period ends."""
        threshold, pause_per_phi = self.config.phi_threshold, self._pause_per_phi
        samples = self._samples
        until = math.inf
        # SamplingWindow.live_until inlined: this runs over every live node after a sweep.
        # (A live node has a mean: its window is only emptied when it dies.)
        for node in self._live:
            window = samples[node]
            last, mean = window.last_heartbeat, window.mean
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

    def phi(self, node: NodeId, now: float) -> float | None:
        window = self._samples.get(node)
        return None if window is None else window.phi(now, self._pause_per_phi)

    def update_node_liveness(self, node: NodeId, now: float) -> None:
        self.update_liveness_of((node,), now)

    def update_liveness_of(self, nodes: Iterable[NodeId], now: float) -> None:
        """Judge each of ``nodes`` by its phi at ``now``: a sweep's nodes in one call, the
        phi worked out here (SamplingWindow.phi inlined), where a call per node cost three."""
        samples = self._samples
        live, dead = self._live, self._dead
        threshold, pause_per_phi = self.config.phi_threshold, self._pause_per_phi
        self._membership += 1
        for node in nodes:
            window = samples.get(node)
            if window is not None:
                last, mean = window.last_heartbeat, window.mean
                if (
                    last is not None
                    and mean is not None
                    and (now - last) / (mean + pause_per_phi) <= threshold
                ):
                    live[node] = None
                    dead.pop(node, None)
                    continue
            live.pop(node, None)
            dead.setdefault(node, now)
            # Forget the old rhythm: a node that comes back starts a fresh window, so it
            # must show a new interval before it counts as live again.
            if window is not None:
                window.reset()

    def declare_dead(self, node: NodeId, now: float) -> None:
        """Dead now, whatever phi says (a node that announced it is leaving)."""
        self._steady_until = -math.inf
        self._membership += 1
        self._live.pop(node, None)
        self._dead.setdefault(node, now)
        window = self._samples.get(node)
        if window is not None:
            window.reset()

    def garbage_collect(self, now: float) -> list[NodeId]:
        """Remove and return the dead nodes whose grace period is over."""
        grace = self.config.dead_node_grace_period
        expired = [node for node, died in self._dead.items() if now >= died + grace]
        if expired:
            self._membership += 1
        for node in expired:
            del self._dead[node]
            self._samples.pop(node, None)
        return expired

    def live_nodes(self) -> Iterator[NodeId]:
        return iter(self._live)

    def dead_nodes(self) -> Iterator[NodeId]:
        return iter(self._dead)

    def is_live(self, node: NodeId) -> bool:
        return node in self._live

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
        self._samples.pop(node, None)
        self._live.pop(node, None)
        self._dead.pop(node, None)
