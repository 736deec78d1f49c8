import copy
import pickle

import pytest

from gossip_tui.core.failure_detector import FailureDetector, FailureDetectorConfig
from gossip_tui.core.models import NodeId, SocketAddress

NODE = NodeId("node-1", 1, SocketAddress.parse("127.0.0.1:10001"))

#: chitchat's rule exactly: no acceptable pause.
CHITCHAT = FailureDetectorConfig(acceptable_pause=0.0)


def _window(size: int) -> FailureDetector:
    """A detector of one node's window (``size`` intervals, max 10 s, prior 5 s), with
    chitchat's phi (no pause)."""
    return FailureDetector(FailureDetectorConfig(sampling_window_size=size, acceptable_pause=0.0))


def test_defaults_match_chitchat() -> None:
    config = FailureDetectorConfig()
    assert config.phi_threshold == 8.0
    assert config.sampling_window_size == 1000
    assert config.max_interval == 10.0
    assert config.initial_interval == 5.0
    assert config.dead_node_grace_period == 86_400.0
    # Ours, not chitchat's: the silence an operator accepts before phi starts to count.
    assert config.acceptable_pause == 3.0


def test_phi_needs_one_interval() -> None:
    window = _window(1000)
    assert window.phi(NODE, 0.0) is None
    window.report_heartbeat(NODE, 0.0)
    assert window.phi(NODE, 1.0) is None
    window.report_heartbeat(NODE, 1.0)
    # mean = (1 + 5 * 5) / (1 + 5) = 26/6; phi = elapsed / mean.
    assert window.phi(NODE, 3.0) == 2.0 / (26 / 6)


def test_intervals_above_max_are_ignored() -> None:
    window = _window(1000)
    window.report_heartbeat(NODE, 0.0)
    window.report_heartbeat(NODE, 11.0)  # a long silence: not a sample
    assert window.phi(NODE, 12.0) is None
    window.report_heartbeat(NODE, 12.0)
    assert window.phi(NODE, 12.0) == 0.0


def test_window_is_bounded() -> None:
    window = _window(3)
    t = 0.0
    window.report_heartbeat(NODE, t)
    for interval in (9.0, 9.0, 9.0, 1.0, 1.0, 1.0):
        t += interval
        window.report_heartbeat(NODE, t)
    # Only the last three intervals (1 s each) count.
    assert window.phi(NODE, t + 1.0) == 1.0 / ((3.0 + 25.0) / 8)


def test_live_then_dead_then_collected() -> None:
    config = FailureDetectorConfig(dead_node_grace_period=100.0, acceptable_pause=0.0)
    detector = FailureDetector(config)
    for t in range(5):
        detector.report_heartbeat(NODE, float(t))
    detector.update_node_liveness(NODE, 4.5)
    assert list(detector.live_nodes()) == [NODE]
    # mean interval = (4 + 25) / 9; phi > 8 once elapsed > 8 * mean.
    mean = 29 / 9
    detector.update_node_liveness(NODE, 4.0 + 8 * mean - 0.01)
    assert detector.is_live(NODE)
    died_at = 4.0 + 8 * mean + 0.01
    detector.update_node_liveness(NODE, died_at)
    assert not detector.is_live(NODE)
    assert detector.time_of_death(NODE) == died_at
    assert detector.scheduled_for_deletion_nodes(died_at + 50.0) == set()
    assert detector.scheduled_for_deletion_nodes(died_at + 50.1) == {NODE}
    assert detector.garbage_collect(died_at + 99.9) == []
    assert detector.garbage_collect(died_at + 100.0) == [NODE]
    assert list(detector.dead_nodes()) == []


def test_a_node_without_phi_counts_as_dead() -> None:
    detector = FailureDetector(CHITCHAT)
    detector.report_heartbeat(NODE, 0.0)
    detector.update_node_liveness(NODE, 0.1)
    assert list(detector.dead_nodes()) == [NODE]


def test_death_resets_the_window() -> None:
    detector = FailureDetector(FailureDetectorConfig(phi_threshold=1.0, acceptable_pause=0.0))
    for t in range(3):
        detector.report_heartbeat(NODE, float(t))
    detector.update_node_liveness(NODE, 100.0)
    assert not detector.is_live(NODE)
    # One heartbeat after death is not enough: the old intervals are gone.
    detector.report_heartbeat(NODE, 101.0)
    detector.update_node_liveness(NODE, 101.0)
    assert not detector.is_live(NODE)
    detector.report_heartbeat(NODE, 102.0)
    detector.update_node_liveness(NODE, 102.0)
    assert detector.is_live(NODE)


def _steady(detector: FailureDetector, every: float, count: int) -> float:
    """``count`` heartbeats ``every`` seconds apart; returns the time of the last one."""
    t = 0.0
    for _ in range(count):
        detector.report_heartbeat(NODE, t)
        t += every
    return t - every


def test_the_acceptable_pause_is_added_to_what_phi_tolerates() -> None:
    # Heartbeats every 0.2 s for 200 s: the mean is near 0.2 s, phi 8 at about 1.6 s.
    chitchat = FailureDetector(CHITCHAT)
    ours = FailureDetector(FailureDetectorConfig())
    last = _steady(chitchat, 0.2, 1000)
    assert _steady(ours, 0.2, 1000) == last
    window = _window(1000)
    for i in range(1000):
        window.report_heartbeat(NODE, i * 0.2)
    mean = window.mean_interval(NODE)
    assert mean is not None
    dies_chitchat = last + 8 * mean
    dies_ours = dies_chitchat + 3.0
    for detector in (chitchat, ours):
        detector.update_node_liveness(NODE, last + 0.1)
        assert detector.is_live(NODE)
    # A 3 s silence kills under chitchat's rule and is survived with the pause.
    chitchat.update_node_liveness(NODE, last + 3.0)
    ours.update_node_liveness(NODE, last + 3.0)
    assert not chitchat.is_live(NODE)
    assert ours.is_live(NODE)
    assert dies_chitchat < last + 3.0
    ours.update_node_liveness(NODE, dies_ours - 0.01)
    assert ours.is_live(NODE)
    ours.update_node_liveness(NODE, dies_ours + 0.01)
    assert not ours.is_live(NODE)


def test_phi_with_a_pause_rises_from_zero_and_crosses_the_threshold_at_the_deadline() -> None:
    detector = FailureDetector(FailureDetectorConfig(phi_threshold=8.0, acceptable_pause=4.0))
    last = _steady(detector, 1.0, 11)  # 10 intervals of 1 s: mean = (10 + 25) / 15
    mean = 35 / 15
    assert detector.phi(NODE, last) == 0.0
    deadline = last + 8 * mean + 4.0
    phi_at_deadline = detector.phi(NODE, deadline)
    assert phi_at_deadline == pytest.approx(8.0)
    halfway = detector.phi(NODE, last + (deadline - last) / 2)
    assert halfway == pytest.approx(4.0)


@pytest.mark.parametrize(
    "options", [{"acceptable_pause": -1.0}, {"phi_threshold": 0.0}, {"phi_threshold": -2.0}]
)
def test_config_refuses_nonsense(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FailureDetectorConfig(**options)


def test_window_keeps_the_last_samples_however_often_it_wraps() -> None:
    # The window is a ring overwritten oldest first: after any number of samples, and
    # after a death (which empties it), the mean is that of the last ``size`` intervals.
    size = 3
    window = _window(size)
    t = 0.0
    window.report_heartbeat(NODE, t)
    intervals = [1.0, 2.0, 4.0, 8.0, 0.5, 0.25, 3.0, 6.0]
    for count, interval in enumerate(intervals, start=1):
        t += interval
        window.report_heartbeat(NODE, t)
        last = intervals[max(0, count - size) : count]
        assert window.mean_interval(NODE) == (sum(last) + 25.0) / (len(last) + 5)
    window.declare_dead(NODE, t)
    assert window.mean_interval(NODE) is None
    window.report_heartbeat(NODE, t + 2.0)
    assert window.mean_interval(NODE) == (2.0 + 25.0) / 6


def _nodes(count: int) -> list[NodeId]:
    return [
        NodeId(f"node-{i}", 1, SocketAddress.parse(f"127.0.0.1:{10_000 + i}")) for i in range(count)
    ]


@pytest.mark.parametrize("size", [1, 3, 4, 5, 9, 1000])
def test_the_windows_of_many_nodes_keep_their_own_intervals_as_the_ring_widens(size: int) -> None:
    # Nodes beating at different rhythms, one detector: each node's mean is that of its
    # own last ``size`` intervals, summed in their order, however the rows' slots grew.
    nodes = _nodes(7)
    detector = _window(size)
    heard: dict[NodeId, list[float]] = {node: [] for node in nodes}
    last = dict.fromkeys(nodes, 0.0)
    detector.report_heartbeats(nodes, 0.0)
    for step in range(1, 40):
        beating = [node for i, node in enumerate(nodes) if step % (i + 1) == 0]
        now = step * 0.5
        detector.report_heartbeats(beating, now)
        for node in beating:
            heard[node].append(now - last[node])
            last[node] = now
    for node in nodes:
        assert detector.mean_interval(node) == _expected_mean(heard[node], size)


def _expected_mean(intervals: list[float], size: int) -> float:
    """The smoothed mean of a window of ``size`` over ``intervals``, its running sum a float
    of its own: the newest added, the oldest taken away once the window is full, in the
    order of the samples (prior 5 s, weight 5)."""
    total = 0.0
    for count, interval in enumerate(intervals):
        if count >= size:
            total = total - intervals[count - size] + interval
        else:
            total = interval if count == 0 else total + interval
    kept = min(size, len(intervals))
    return (total + 25.0) / (kept + 5)


@pytest.mark.parametrize("size", [3, 1000])
def test_the_means_stay_exact_once_the_intervals_outnumber_the_ring_s_codes(size: int) -> None:
    # The ring holds the first 256 distinct intervals as codes, then doubles: the means,
    # before and after that switch, are those of each node's own last intervals.
    nodes = _nodes(3)
    detector = _window(size)
    heard: dict[NodeId, list[float]] = {node: [] for node in nodes}
    last = dict.fromkeys(nodes, 0.0)
    detector.report_heartbeats(nodes, 0.0)
    now = 0.0
    for step in range(1, 400):
        now += 0.25 + (step * 7919 % 997) / 1000  # 400 distinct intervals, out of order
        beating = nodes[: 1 + step % 3]
        detector.report_heartbeats(beating, now)
        for node in beating:
            heard[node].append(now - last[node])
            last[node] = now
        if step in (100, 399):
            for node in nodes:
                assert detector.mean_interval(node) == _expected_mean(heard[node], size)


def test_a_forgotten_node_s_row_goes_to_the_next_new_node_which_starts_afresh() -> None:
    old, new = _nodes(2)
    detector = _window(1000)
    for t in (0.0, 1.0, 2.0):
        detector.report_heartbeat(old, t)
    detector.update_node_liveness(old, 2.0)
    detector.declare_dead(old, 3.0)
    detector.forget(old)
    assert detector.phi(old, 3.0) is None and not detector.is_live(old)
    detector.report_heartbeat(new, 4.0)
    assert detector.phi(new, 4.0) is None  # no interval of the old node's
    detector.report_heartbeat(new, 6.0)
    assert detector.mean_interval(new) == (2.0 + 25.0) / 6
    assert len(detector._nodes) == 1  # the freed row, reused
    detector.update_node_liveness(new, 6.0)
    assert list(detector.live_nodes()) == [new]


def test_a_copied_or_unpickled_detector_judges_as_the_original() -> None:
    nodes = _nodes(5)
    detector = _window(3)
    for t in range(6):
        detector.report_heartbeats(nodes, float(t))
    detector.update_liveness_of(nodes, 5.0)
    for other in (copy.deepcopy(detector), pickle.loads(pickle.dumps(detector))):
        assert set(other.live_nodes()) == set(nodes)
        assert [other.phi(n, 7.0) for n in nodes] == [detector.phi(n, 7.0) for n in nodes]
        other.report_heartbeats(nodes, 6.5)
        assert detector.phi(nodes[0], 6.5) != 0.0  # the original is not the copy


def test_detectors_numbering_their_nodes_as_one_judge_as_detectors_of_their_own() -> None:
    # A simulation's detectors share one numbering of the nodes (one dict, not one each):
    # each still knows only the nodes it heard of, and forgets, collects and learns back
    # as a detector of its own does, whatever the others heard.
    nodes = _nodes(6)
    config = FailureDetectorConfig(sampling_window_size=4, dead_node_grace_period=10.0)
    rows: dict[NodeId, int] = {}
    shared = [FailureDetector(config, rows=rows) for _ in range(2)]
    alone = [FailureDetector(config) for _ in range(2)]
    for step in range(40):
        now = step * 0.5
        for which in range(2):
            # Each hears its own changing set of nodes, in its own order.
            heard = [n for i, n in enumerate(nodes) if (i + step // (7 + which)) % 3 != which]
            if which:
                heard.reverse()
            for detector in (shared[which], alone[which]):
                detector.report_heartbeats(heard, now)
                if step % 5 == 4:
                    detector.update_liveness_of(nodes, now)
                    detector.garbage_collect(now)
                if step == 23:
                    detector.declare_dead(nodes[which], now)
                    detector.forget(nodes[2 + which])
            mine, theirs = shared[which], alone[which]
            assert set(mine.live_nodes()) == set(theirs.live_nodes())
            assert set(mine.dead_nodes()) == set(theirs.dead_nodes())
            for node in nodes:
                assert mine.phi(node, now + 0.1) == theirs.phi(node, now + 0.1)
                assert mine.is_live(node) == theirs.is_live(node)
                assert mine.time_of_death(node) == theirs.time_of_death(node)
    assert len(rows) == len(nodes)
