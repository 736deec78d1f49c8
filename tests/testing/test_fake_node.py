"""gossip_tui.testing's fake node keeps the node's rules, so tests over it mean something."""

from __future__ import annotations

import pytest
import trio

from gossip_tui.core.models import KeyStatus, Liveness, VersionedValue
from gossip_tui.node import KeyChanged, KeyValueTooLarge, NodeUpdated
from gossip_tui.testing import FakeCluster, FakeNodeConfig


def test_an_unchanged_value_takes_no_new_version_and_makes_no_event() -> None:
    cluster = FakeCluster(clock=lambda: 5.0)
    writer = cluster.add_node(FakeNodeConfig(node_id="writer"))
    reader = cluster.add_node(FakeNodeConfig(node_id="reader"))
    events = reader.subscribe()
    writer.set("color", "blue")
    writer.set("color", "blue")
    writer.set_with_ttl("lease", "held")
    writer.set_with_ttl("lease", "held")
    assert writer.member.key_values == {
        "color": VersionedValue("blue", 1),
        "lease": VersionedValue("held", 2, KeyStatus.DELETE_AFTER_TTL),
    }
    got = []
    while True:
        try:
            got.append(events.receive_nowait())
        except trio.WouldBlock:
            break
    assert got == [
        KeyChanged(writer.self_id, "color", "blue", 1),
        NodeUpdated(writer.self_id, 1),
        KeyChanged(writer.self_id, "lease", "held", 2, KeyStatus.DELETE_AFTER_TTL),
        NodeUpdated(writer.self_id, 2),
    ]
    # Every accepted call is recorded, news or not.
    assert writer.calls == [("set", "color", "blue")] * 2 + [("set_with_ttl", "lease", "held")] * 2


def test_a_refused_write_changes_nothing_and_is_not_recorded() -> None:
    node = FakeCluster().add_node(FakeNodeConfig(max_key_value_bytes=10))
    with pytest.raises(KeyValueTooLarge):
        node.set("k", "v" * 10)
    with pytest.raises(ValueError, match="empty"):
        node.set_with_ttl("", "v")
    node.set("k", "v" * 9)
    assert node.calls == [("set", "k", "v" * 9)]
    assert node.member.max_version == 1


def test_one_node_is_read_as_this_handle_sees_it() -> None:
    cluster = FakeCluster(clock=lambda: 5.0)
    node = cluster.add_node(FakeNodeConfig(node_id="me", seeds=("127.0.0.1:2", "127.0.0.1:1")))
    node.set("role", "indexer")
    peer = cluster.add_peer("peer", "127.0.0.1:7001", keys={"a": "1"}, liveness=Liveness.DEAD)

    own = node.node_snapshot(node.self_id)
    assert own is not None and own.liveness is Liveness.SELF and own.phi is None
    assert own.visible_items() == {"role": "indexer"}
    seen = node.node_snapshot(peer)
    assert seen is not None and seen.liveness is Liveness.DEAD and seen.max_version == 1
    cluster.remove(peer)
    assert node.node_snapshot(peer) is None
    assert node.nodes_read == [node.self_id, peer, peer]
    assert node.snapshots_taken == 0  # reading one node is not a poll of everything

    snapshot = node.snapshot()
    assert [str(a) for a in snapshot.seed_addrs] == ["127.0.0.1:1", "127.0.0.1:2"]
    assert snapshot.taken_at == 5.0 and node.snapshots_taken == 1
