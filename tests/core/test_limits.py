"""Bounded resources: a flood of nodes or huge states cannot grow memory without end."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gossip_tui.core.engine import GossipEngine
from gossip_tui.core.messages import Delta, Digest, KeyValueMutation, NodeDelta, NodeDigest, Syn
from gossip_tui.core.models import NodeId, SocketAddress
from gossip_tui.core.state import (
    ClusterState,
    DeltaStatus,
    NodeState,
    StateLimits,
    key_value_cost,
)


def node(i: int) -> NodeId:
    return NodeId(f"n{i}", 1, SocketAddress.parse(f"127.0.0.1:{1000 + i}"))


def test_digest_flood_is_capped() -> None:
    engine = GossipEngine(node(0), "c", now=0.0, limits=StateLimits(max_nodes=5))
    flood = Digest({node(i): NodeDigest(1, 0, 0) for i in range(1, 50_001)})
    engine.handle_message(Syn("c", flood), 1.0)
    assert len(engine.state) == 5
    assert engine.state.rejected["node_limit"] == 50_000 - 4


def test_oversized_node_delta_is_dropped_whole() -> None:
    cluster = ClusterState(StateLimits(max_node_state_bytes=1_000))
    cluster.node_state_or_init(node(1))
    big = NodeDelta(
        node(1), 0, 0, tuple(KeyValueMutation(f"k{i}", "x" * 100, i + 1) for i in range(20)), 20
    )
    cluster.apply_delta(Delta((big,)), now=0.0)
    state = cluster.node_state(node(1))
    assert state is not None
    assert state.key_values == {} and state.max_version == 0
    assert cluster.rejected[DeltaStatus.OVER_LIMIT.value] == 1
    small = NodeDelta(node(1), 0, 0, (KeyValueMutation("k", "v", 1),), 1)
    cluster.apply_delta(Delta((small,)), now=0.0)
    assert state.get("k") == "v"


def test_total_state_limit_spans_nodes() -> None:
    entry = key_value_cost("k", "x" * 120)
    cluster = ClusterState(StateLimits(max_total_state_bytes=2 * entry + entry // 2))
    for i in (1, 2, 3):
        cluster.node_state_or_init(node(i))
        delta = NodeDelta(node(i), 0, 0, (KeyValueMutation("k", "x" * 120, 1),), 1)
        cluster.apply_delta(Delta((delta,)), now=0.0)
    held = [s.get("k") is not None for s in cluster.node_states.values()]
    assert held == [True, True, False]
    cluster.remove_node(node(1))
    assert cluster.total_size == entry


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["set", "ttl", "delete", "delete_after_ttl", "gc"]),
            st.sampled_from(["a", "bb", "ccc"]),
            st.text(max_size=20),
        ),
        max_size=40,
    )
)
def test_size_accounting_matches_contents(ops: list[tuple[str, str, str]]) -> None:
    cluster = ClusterState()
    state = cluster.node_state_or_init(node(1))
    now = 0.0
    for op, key, value in ops:
        now += 1.0
        if op == "set":
            state.set(key, value)
        elif op == "ttl":
            state.set_with_ttl(key, value, now)
        elif op == "delete":
            state.delete(key, now)
        elif op == "delete_after_ttl":
            state.delete_after_ttl(key, now)
        else:
            state.gc_keys_marked_for_deletion(3.0, now)
        expected = sum(key_value_cost(k, v.value) for k, v in state.key_values.items())
        assert state.size == expected == cluster.total_size


def test_reset_releases_size() -> None:
    usage_cluster = ClusterState()
    replica: NodeState = usage_cluster.node_state_or_init(node(1))
    first = NodeDelta(node(1), 0, 0, (KeyValueMutation("a", "x" * 50, 1),), 1)
    replica.apply_delta(first, now=0.0)
    after_gc = NodeDelta(node(1), 0, 9, (KeyValueMutation("b", "y", 10),), 10)
    assert replica.apply_delta(after_gc, now=0.0) is DeltaStatus.APPLY_AFTER_RESET
    assert replica.size == key_value_cost("b", "y") == usage_cluster.total_size
