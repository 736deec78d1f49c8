from __future__ import annotations

import copy
import random

from gossip_tui.core.codec import encode_delta
from gossip_tui.core.messages import Delta, Digest, KeyValueMutation, NodeDelta, NodeDigest
from gossip_tui.core.models import KeyStatus, NodeId, SocketAddress
from gossip_tui.core.state import (
    ClusterState,
    DeltaStatus,
    KeyChange,
    NodeState,
    SharedObjects,
    VersionChange,
)


def node(i: int) -> NodeId:
    return NodeId(f"node-{i}", 1, SocketAddress.parse(f"127.0.0.1:{10_000 + i}"))


def test_versions_grow_per_change() -> None:
    state = NodeState(node(1))
    state.set("a", "1")
    state.set("b", "2")
    assert state.max_version == 2
    state.set("a", "1")  # same value: no new version
    assert state.max_version == 2
    state.set("a", "3")
    assert state.key_values["a"].version == 3


def test_delete_empties_value_and_takes_a_version() -> None:
    state = NodeState(node(1))
    state.set("a", "1")
    assert state.delete("a", now=10.0)
    tombstone = state.key_values["a"]
    assert (tombstone.value, tombstone.version, tombstone.status) == ("", 2, KeyStatus.DELETED)
    assert state.get("a") is None
    assert not state.delete("missing", now=10.0)


def test_delete_after_ttl_keeps_value_visible() -> None:
    state = NodeState(node(1))
    state.set("a", "1")
    assert state.delete_after_ttl("a", now=10.0)
    assert state.get("a") == "1"
    assert state.key_values["a"].status is KeyStatus.DELETE_AFTER_TTL
    state.gc_keys_marked_for_deletion(grace_period=5.0, now=14.9)
    assert state.get("a") == "1"
    state.gc_keys_marked_for_deletion(grace_period=5.0, now=15.0)
    assert "a" not in state.key_values
    assert state.last_gc_version == 2


def test_set_with_ttl_is_idempotent() -> None:
    state = NodeState(node(1))
    state.set_with_ttl("lease", "x", now=1.0)
    state.set_with_ttl("lease", "x", now=2.0)
    assert state.max_version == 1


def test_tombstone_gc_raises_last_gc_version() -> None:
    state = NodeState(node(1))
    state.set("a", "1")
    state.set("b", "1")
    state.delete("a", now=0.0)
    state.gc_keys_marked_for_deletion(grace_period=10.0, now=10.0)
    assert "a" not in state.key_values
    assert state.last_gc_version == 3
    assert state.max_version == 3


def test_heartbeat_first_value_is_not_an_update() -> None:
    state = NodeState(node(1))
    assert not state.try_set_heartbeat(5, now=0.0)
    assert state.heartbeat == 5
    assert not state.try_set_heartbeat(5, now=1.0)
    assert state.try_set_heartbeat(6, now=2.0)


def _owner_with_keys(n: int) -> NodeState:
    state = NodeState(node(1))
    for i in range(n):
        state.set(f"k{i}", f"v{i}")
    return state


def test_delta_apply_rules() -> None:
    owner = _owner_with_keys(3)
    replica = NodeState(node(1))
    full = NodeDelta(
        node(1),
        0,
        0,
        tuple(
            KeyValueMutation(k, v.value, v.version, v.status) for k, v in owner.key_values.items()
        ),
        3,
    )
    assert replica.apply_delta(full, now=1.0) is DeltaStatus.APPLY
    assert replica.get("k2") == "v2" and replica.max_version == 3
    # The same delta again brings nothing.
    assert replica.apply_delta(full, now=1.0) is DeltaStatus.REJECT
    # A delta from a version we never reached is from the future.
    future = NodeDelta(node(1), 7, 0, (KeyValueMutation("x", "y", 8),), 8)
    assert replica.apply_delta(future, now=1.0) is DeltaStatus.REJECT
    assert replica.get("x") is None


def test_delta_after_gc_requires_reset() -> None:
    replica = NodeState(node(1))
    replica.apply_delta(NodeDelta(node(1), 0, 0, (KeyValueMutation("a", "1", 1),), 1), now=0.0)
    # The owner has since collected tombstones up to version 5: a delta that does not start
    # from scratch is unusable; one that does resets the replica.
    partial = NodeDelta(node(1), 1, 5, (KeyValueMutation("b", "2", 6),), 6)
    assert replica.apply_delta(partial, now=0.0) is DeltaStatus.REJECT
    full = NodeDelta(node(1), 0, 5, (KeyValueMutation("b", "2", 6),), 6)
    assert replica.apply_delta(full, now=0.0) is DeltaStatus.APPLY_AFTER_RESET
    assert replica.get("a") is None
    assert replica.get("b") == "2"
    assert (replica.last_gc_version, replica.max_version) == (5, 6)


def test_collected_tombstones_are_not_reapplied() -> None:
    replica = NodeState(node(1))
    replica.last_gc_version = 4
    delta = NodeDelta(node(1), 0, 4, (KeyValueMutation("old", "", 3, KeyStatus.DELETED),), 5)
    assert replica.apply_delta(delta, now=0.0) is DeltaStatus.APPLY
    assert "old" not in replica.key_values
    assert replica.max_version == 5


def test_max_version_below_its_key_values_is_rejected() -> None:
    replica = NodeState(node(1))
    bad = NodeDelta(node(1), 0, 0, (KeyValueMutation("a", "1", 5),), 3)
    assert replica.apply_delta(bad, now=0.0) is DeltaStatus.REJECT
    assert replica.key_values == {}


def _cluster(*states: tuple[NodeId, int]) -> ClusterState:
    cluster = ClusterState()
    for nid, keys in states:
        state = cluster.node_state_or_init(nid)
        for i in range(keys):
            state.set(f"k{i}", "x" * 10)
    return cluster


def test_delta_sends_unknown_nodes_first_smallest_first() -> None:
    cluster = _cluster((node(1), 5), (node(2), 2), (node(3), 9))
    digest = Digest({node(3): NodeDigest(1, 0, 3)})
    delta = cluster.compute_delta(digest, 65_000, rng=random.Random(1))
    assert [nd.node for nd in delta.node_deltas] == [node(2), node(1), node(3)]
    assert delta.node_deltas[2].from_version_excluded == 3
    assert [kv.version for kv in delta.node_deltas[2].key_values] == [4, 5, 6, 7, 8, 9]


def test_known_nodes_with_most_stale_records_first() -> None:
    cluster = _cluster((node(1), 5), (node(2), 8))
    digest = Digest({node(1): NodeDigest(1, 0, 1), node(2): NodeDigest(1, 0, 6)})
    delta = cluster.compute_delta(digest, 65_000, rng=random.Random(1))
    assert [nd.node for nd in delta.node_deltas] == [node(1), node(2)]


def test_delta_respects_the_budget_and_stays_usable() -> None:
    cluster = ClusterState()
    state = cluster.node_state_or_init(node(1))
    rnd = random.Random(7)
    for i in range(400):
        state.set(f"key-{i}", "".join(rnd.choice("abcdefghij") for _ in range(300)))
    delta = cluster.compute_delta(Digest(), 20_000, rng=random.Random(1))
    encoded = encode_delta(delta)
    assert len(encoded) <= 20_000
    kvs = delta.node_deltas[0].key_values
    assert 0 < len(kvs) < 400
    # Truncation keeps a prefix in version order, so the receiver can apply it.
    assert [kv.version for kv in kvs] == list(range(1, len(kvs) + 1))
    replica = ClusterState()
    replica.node_state_or_init(node(1))
    replica.apply_delta(delta, now=0.0)
    replica_state = replica.node_state(node(1))
    assert replica_state is not None and replica_state.max_version == len(kvs)


def test_empty_collected_state_carries_max_version() -> None:
    cluster = ClusterState()
    state = cluster.node_state_or_init(node(1))
    state.set("a", "1")
    state.delete("a", now=0.0)
    state.gc_keys_marked_for_deletion(1.0, now=5.0)
    delta = cluster.compute_delta(Digest(), 65_000)
    (nd,) = delta.node_deltas
    assert nd.key_values == () and nd.max_version == 2 and nd.last_gc_version == 2


def test_peer_behind_gc_gets_a_reset_delta() -> None:
    cluster = ClusterState()
    state = cluster.node_state_or_init(node(1))
    for i in range(4):
        state.set(f"k{i}", "v")
    state.delete("k0", now=0.0)
    state.gc_keys_marked_for_deletion(1.0, now=5.0)  # last_gc_version = 5
    digest = Digest({node(1): NodeDigest(1, 0, 2)})
    (nd,) = cluster.compute_delta(digest, 65_000).node_deltas
    assert nd.from_version_excluded == 0
    assert sorted(kv.key for kv in nd.key_values) == ["k1", "k2", "k3"]


def test_excluded_and_unknown_nodes() -> None:
    cluster = _cluster((node(1), 1), (node(2), 1))
    delta = cluster.compute_delta(Digest(), 65_000, excluded=[node(2)])
    assert [nd.node for nd in delta.node_deltas] == [node(1)]
    # A delta about a node the receiver never saw in a digest is ignored.
    other = ClusterState()
    other.apply_delta(delta, now=0.0)
    assert list(other.nodes()) == []


def test_changes_are_recorded() -> None:
    cluster = ClusterState()
    state = cluster.node_state_or_init(node(1))
    state.set("a", "1")
    state.delete("a", now=0.0)
    changes = cluster.drain_changes()
    assert [type(c) for c in changes] == [KeyChange, VersionChange, KeyChange, VersionChange]
    first = changes[0]
    assert isinstance(first, KeyChange) and first.value is not None
    assert first.value.value == "1"
    assert cluster.drain_changes() == []


def test_gc_node_memory_blocks_stale_resurrection() -> None:
    cluster = _cluster((node(1), 1))
    cluster.node_state_or_init(node(1)).heartbeat = 40
    cluster.remove_node(node(1))
    assert cluster.last_heartbeat_if_deleted(node(1)) == 40
    cluster.node_state_or_init(node(1))
    assert cluster.last_heartbeat_if_deleted(node(1)) is None


def test_delta_equality_ignores_cached_bytes() -> None:
    cluster = _cluster((node(1), 2))
    delta = cluster.compute_delta(Digest(), 65_000)
    assert delta.encoded is not None
    assert Delta(delta.node_deltas) == delta


def test_states_sharing_their_lone_nodes_by_address_find_what_a_state_alone_finds() -> None:
    # The states of a simulation find a node alone at its address in one table of the
    # process (SharedObjects.alone_at) rather than an index each: whatever generations
    # of a node they learn and forget, in whatever order, nodes_at is what it is in a
    # state with an index of its own.
    addrs = [SocketAddress.parse(f"127.0.0.1:{20_000 + i}") for i in range(3)]
    nodes = [NodeId(f"n{i}", gen, addr) for i, addr in enumerate(addrs) for gen in (1, 2, 3)]
    shared = SharedObjects(max_entries=2)  # room for two addresses' lone nodes
    pairs = [(ClusterState(), ClusterState()) for _ in range(3)]
    for state, _alone in pairs:
        state.shared = shared
    rng = random.Random(7)
    found_in_shared = 0
    for _step in range(300):
        state, alone = rng.choice(pairs)
        node = rng.choice(nodes)
        if rng.random() < 0.3:
            node = copy.copy(node)  # equal, not the same object
        if node in alone.node_states and rng.random() < 0.5:
            state.remove_node(node)
            alone.remove_node(node)
        else:
            state.node_state_or_init(node)
            alone.node_state_or_init(node)
        for addr in addrs:
            # The very node objects each state was given.
            assert list(map(id, state.nodes_at(addr))) == list(map(id, alone.nodes_at(addr)))
        found_in_shared += len(alone._by_addr) - len(state._by_addr)
    assert len(shared.alone_at) == 2
    assert found_in_shared > 10  # (not an index entry of their own)
