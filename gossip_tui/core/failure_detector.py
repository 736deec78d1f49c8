"""chitchat's phi-accrual failure detector.

chitchat's "phi" is not the textbook ``-log10(1 - F(t))``: it is the time since the last
heartbeat divided by the mean heartbeat interval, where the mean is smoothed towards a
prior (``initial_interval``, weight 5) so that a node with few samples is not flapping.
A node is live while phi <= threshold. A node needs two reported heartbeats (one
interval) before it has a phi at all; until then it counts as dead.

Time is always passed in (seconds on a monotonic clock), never read.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import attrs

from .models import NodeId

_PRIOR_WEIGHT = 5.0


@attrs.frozen
class FailureDetectorConfig:
    """chitchat's defaults: threshold 8, window 1000, max interval 10 s, prior 5 s, grace 24 h."""

    phi_threshold: float = 8.0
    sampling_window_size: int = 1_000
    max_interval: float = 10.0
    initial_interval: float = 5.0
    dead_node_grace_period: float = 24 * 60 * 60.0


class SamplingWindow:
    """The last heartbeat arrival intervals of one node, with their running sum."""

    __slots__ = ("_intervals", "_max_interval", "_prior_mean", "_sum", "last_heartbeat")

    def __init__(self, window_size: int, max_interval: float, prior_interval: float) -> None:
        self._intervals: deque[float] = deque(maxlen=window_size)
        self._sum = 0.0
        self._max_interval = max_interval
        self._prior_mean = prior_interval
        self.last_heartbeat: float | None = None

    def report_heartbeat(self, now: float) -> None:
        if self.last_heartbeat is not None:
            interval = now - self.last_heartbeat
            # A long silence is not a sample of the normal rhythm: keep it out of the mean.
            if interval <= self._max_interval:
                if len(self._intervals) == self._intervals.maxlen:
                    self._sum -= self._intervals[0]
                self._intervals.append(interval)
                self._sum += interval
        self.last_heartbeat = now

    def reset(self) -> None:
        self._intervals.clear()
        self._sum = 0.0

    def phi(self, now: float) -> float | None:
        if not self._intervals or self.last_heartbeat is None:
            return None
        count = len(self._intervals)
        mean = (self._sum + _PRIOR_WEIGHT * self._prior_mean) / (count + _PRIOR_WEIGHT)
        return (now - self.last_heartbeat) / mean


class FailureDetector:
    """Decides which peers are live, which are dead, and when a dead one may be forgotten."""

    def __init__(self, config: FailureDetectorConfig) -> None:
        self.config = config
        self._samples: dict[NodeId, SamplingWindow] = {}
        self._live: set[NodeId] = set()
        self._dead: dict[NodeId, float] = {}  # node -> time it was declared dead

    def _window(self, node: NodeId) -> SamplingWindow:
        window = self._samples.get(node)
        if window is None:
            window = SamplingWindow(
                self.config.sampling_window_size,
                self.config.max_interval,
                self.config.initial_interval,
            )
            self._samples[node] = window
        return window

    def report_heartbeat(self, node: NodeId, now: float) -> None:
        self._window(node).report_heartbeat(now)

    def phi(self, node: NodeId, now: float) -> float | None:
        window = self._samples.get(node)
        return None if window is None else window.phi(now)

    def update_node_liveness(self, node: NodeId, now: float) -> None:
        phi = self.phi(node, now)
        if phi is not None and phi <= self.config.phi_threshold:
            self._live.add(node)
            self._dead.pop(node, None)
            return
        self._live.discard(node)
        self._dead.setdefault(node, now)
        # Forget the old rhythm: a node that comes back starts a fresh window, so it must
        # show a new interval before it counts as live again.
        window = self._samples.get(node)
        if window is not None:
            window.reset()

    def declare_dead(self, node: NodeId, now: float) -> None:
        """Dead now, whatever phi says (a node that announced it is leaving)."""
        self._live.discard(node)
        self._dead.setdefault(node, now)
        window = self._samples.get(node)
        if window is not None:
            window.reset()

    def garbage_collect(self, now: float) -> list[NodeId]:
        """Remove and return the dead nodes whose grace period is over."""
        grace = self.config.dead_node_grace_period
        expired = [node for node, died in self._dead.items() if now >= died + grace]
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
        half = self.config.dead_node_grace_period / 2
        return {node for node, died in self._dead.items() if died + half < now}

    def forget(self, node: NodeId) -> None:
        self._samples.pop(node, None)
        self._live.discard(node)
        self._dead.pop(node, None)
