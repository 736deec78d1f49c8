"""Heartbeats reported by position in a digest's layout (FailureDetector.report_heartbeats_at),
as the engine reports a digest read as columns: the same windows, verdicts and steady time
as reported by node, however the rows change between two reports."""

import math

from gossip_tui.core.failure_detector import FailureDetector, FailureDetectorConfig
from gossip_tui.core.models import NodeId, SocketAddress


def _nodes(count: int) -> list[NodeId]:
    return [
        NodeId(f"node-{i}", 1, SocketAddress.parse(f"127.0.0.1:{10_000 + i}")) for i in range(count)
    ]


def _readings(detector: FailureDetector, nodes: list[NodeId], now: float) -> list[object]:
    return [
        [detector.mean_interval(node) for node in nodes],
        [detector.phi(node, now) for node in nodes],
        sorted(map(str, detector.live_nodes())),
        detector.steady_until,
    ]


def test_reports_by_position_read_as_reports_by_node() -> None:
    layout = _nodes(6)
    by_node = FailureDetector(FailureDetectorConfig())
    by_position = FailureDetector(FailureDetectorConfig())
    now = 0.0
    for step in range(40):
        now += 0.5 + (step * 37 % 11) / 20
        risen = [at for at in range(len(layout)) if (step + at) % 3 != 0]
        if step == 25:
            # A death between two reports: the rows' live flags change.
            for detector in (by_node, by_position):
                detector.declare_dead(layout[2], now)
        by_node.report_heartbeats([layout[at] for at in risen], now)
        by_position.report_heartbeats_at(layout, risen, now)
        if step % 7 == 6:
            for detector in (by_node, by_position):
                detector.update_liveness_of(layout, now + 0.25)
                detector.settle()
        assert _readings(by_position, layout, now + 0.5) == _readings(by_node, layout, now + 0.5)


def _live_layout(count: int) -> tuple[FailureDetector, list[NodeId]]:
    """A detector whose ``count`` nodes beat three times and were judged live, then reported
    by position (so that it holds their rows, all live)."""
    layout = _nodes(count)
    detector = FailureDetector(FailureDetectorConfig())
    for now in (0.0, 1.0, 2.0):
        detector.report_heartbeats(layout, now)
    detector.update_liveness_of(layout, 2.5)
    detector.settle()
    detector.report_heartbeats_at(layout, list(range(count)), 3.0)
    assert detector.steady_until > 3.0
    return detector, layout


def test_a_node_no_longer_live_reported_by_position_asks_for_a_sweep() -> None:
    detector, layout = _live_layout(2)
    detector.declare_dead(layout[1], 3.5)
    detector.update_liveness_of(layout, 3.6)
    detector.settle()
    assert detector.steady_until > 3.6
    detector.report_heartbeats_at(layout, [0], 3.8)  # (the live one: its rows held)
    assert detector.steady_until > 3.8
    detector.report_heartbeats_at(layout, [1], 4.0)
    # Only a sweep brings it back: one is due at once, as for a report by node.
    assert detector.steady_until == -math.inf


def test_a_forgotten_node_s_row_given_to_another_is_not_reported_into() -> None:
    # The layout's rows are held between reports: once a node is forgotten and its row
    # given to a newcomer, a heartbeat of the forgotten node by position must not land
    # in the newcomer's window.
    detector, (gone, kept) = _live_layout(2)
    newcomer = _nodes(3)[2]
    detector.forget(gone)
    for now in (3.0, 4.0):
        detector.report_heartbeats([newcomer], now)
    assert detector.mean_interval(newcomer) == (1.0 + 25.0) / (1 + 5)
    detector.report_heartbeats_at([gone, kept], [0], 4.5)
    assert detector.mean_interval(newcomer) == (1.0 + 25.0) / (1 + 5)
    assert detector.mean_interval(gone) is None  # learnt afresh: no interval yet
