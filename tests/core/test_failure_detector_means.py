"""A detector of its own (a node's) shares equal means between the rows of a report, not
through the process's table that detectors sharing their rows use."""

from __future__ import annotations

import ipaddress

import pytest

from gossip_tui.core import failure_detector
from gossip_tui.core.failure_detector import FailureDetector, FailureDetectorConfig
from gossip_tui.core.models import NodeId, SocketAddress

NODES = [
    NodeId(f"n-{i}", 1, SocketAddress(ipaddress.IPv4Address("127.0.0.1"), 12_000 + i))
    for i in range(20)
]


def test_a_lone_detector_shares_a_report_s_equal_means_without_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(failure_detector, "_MEANS", {})
    detector = FailureDetector(FailureDetectorConfig())
    for t in (1.0, 2.0, 3.0):
        detector.report_heartbeats(NODES, t)
    assert failure_detector._MEANS == {}
    means = [detector._mean[detector._rows[node]] for node in NODES]
    assert len({id(mean) for mean in means}) == 1
    # The same means as one report a row gives (the table neither changes a value).
    other = FailureDetector(FailureDetectorConfig())
    for t in (1.0, 2.0, 3.0):
        for node in NODES:
            other.report_heartbeat(node, t)
    assert [other.mean_interval(node) for node in NODES] == means


def test_detectors_sharing_their_rows_share_means_through_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(failure_detector, "_MEANS", {})
    rows: dict[NodeId, int] = {}
    detectors = [FailureDetector(FailureDetectorConfig(), rows=rows) for _ in range(2)]
    for detector in detectors:
        for t in (1.0, 2.0, 3.0):
            for node in NODES:
                detector.report_heartbeat(node, t)
    assert failure_detector._MEANS
    first, second = ([d._mean[rows[node]] for node in NODES] for d in detectors)
    assert all(a is b for a, b in zip(first, second, strict=True))
