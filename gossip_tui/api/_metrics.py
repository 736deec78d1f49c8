"""``GET /metrics``: the node's counters and the cluster's health in Prometheus text format."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from gossip_tui.core.generations import superseded_in
from gossip_tui.core.models import ClusterSnapshot, Liveness, NodeId, NodeSnapshot
from gossip_tui.node import NodeStats

from ._counts import NodeCounts

CONTENT_TYPE = "text/plain; version=0.0.4"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{name}="{_escape(value)}"' for name, value in pairs)
    return "{" + inner + "}" if inner else ""


def _node_labels(node: NodeId) -> str:
    # The node id only: a label per generation (or per address) would add series at every
    # restart of a peer, without bound.
    return _labels((("node_id", node.node_id),))


def _one_per_node_id(snapshot: ClusterSnapshot) -> list[NodeSnapshot]:
    """One generation per node id, so that each series has one sample: the live one, else
    the one heard from last (not the highest: anyone can gossip a made-up generation)."""
    chosen: dict[str, NodeSnapshot] = {}

    def rank(node: NodeSnapshot) -> tuple[bool, float, int]:
        heard = node.last_update if node.last_update is not None else float("-inf")
        return (node.liveness in (Liveness.SELF, Liveness.LIVE), heard, node.node.generation)

    for node in snapshot.nodes:
        known = chosen.get(node.node.node_id)
        if known is None or rank(known) < rank(node):
            chosen[node.node.node_id] = node
    return [chosen[name] for name in sorted(chosen)]


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: str = "") -> None:
        self.lines.append(f"{name}{labels} {_number(value)}")

    def metric(self, name: str, kind: str, help_text: str, value: float) -> None:
        self.family(name, kind, help_text)
        self.sample(name, value)


def render_metrics(snapshot: ClusterSnapshot, stats: NodeStats) -> str:
    out = _Writer()
    prefix = "gossip_tui_"
    counters = (
        ("datagrams_received_total", "Datagrams received.", stats.datagrams_in),
        ("datagrams_sent_total", "Datagrams sent.", stats.datagrams_out),
        ("bytes_received_total", "Bytes received in datagrams.", stats.bytes_in),
        ("bytes_sent_total", "Bytes sent in datagrams.", stats.bytes_out),
        ("send_errors_total", "Datagrams that could not be sent.", stats.send_errors),
        ("gossip_rounds_total", "Gossip rounds run.", stats.rounds),
        (
            "events_dropped_total",
            "Events lost by subscribers that fell behind.",
            stats.events_dropped,
        ),
        (
            "heartbeat_outruns_total",
            "Times a peer reported our heartbeat ahead of ours and we jumped past it.",
            stats.heartbeat_outruns,
        ),
        (
            "small_replies_total",
            "Replies held small: their address had not yet shown that it receives.",
            stats.small_replies,
        ),
    )
    for name, help_text, value in counters:
        out.metric(prefix + name, "counter", help_text, value)

    out.family(prefix + "dropped_total", "counter", "Input dropped, by reason.")
    for reason in sorted({"malformed", *stats.dropped}):
        out.sample(prefix + "dropped_total", stats.dropped[reason], _labels([("reason", reason)]))

    out.family(
        prefix + "self_repairs_total",
        "counter",
        "Times a peer showed our own state with values we never wrote and we republished "
        "it, by reason.",
    )
    for reason in sorted(stats.self_repairs):
        out.sample(
            prefix + "self_repairs_total", stats.self_repairs[reason], _labels([("reason", reason)])
        )
    out.family(
        prefix + "internal_errors_total",
        "counter",
        "Exceptions a task of the node caught and survived (each one is a bug), by task.",
    )
    for task in sorted(stats.internal_errors):
        out.sample(
            prefix + "internal_errors_total", stats.internal_errors[task], _labels([("task", task)])
        )

    out.metric(
        prefix + "gossip_round_duration_seconds",
        "gauge",
        "How long the last gossip round took.",
        stats.last_round_duration,
    )
    # Older generations of a node live again are the same node: not counted apart.
    folded = superseded_in(snapshot.nodes)
    by_liveness = {liveness: 0 for liveness in Liveness}
    for node in snapshot.nodes:
        if node.node not in folded:
            by_liveness[node.liveness] += 1
    counts = NodeCounts.of(snapshot)
    out.metric(prefix + "live_nodes", "gauge", "Live nodes, this one included.", counts.live)
    out.metric(
        prefix + "dead_nodes",
        "gauge",
        "Dead nodes (not left ones), scheduled for deletion included; restarts folded.",
        counts.dead,
    )
    out.metric(prefix + "left_nodes", "gauge", "Nodes that announced their departure.", counts.left)
    out.metric(
        prefix + "known_nodes",
        "gauge",
        "Nodes in the cluster state, every generation.",
        len(snapshot.nodes),
    )
    out.family(prefix + "nodes", "gauge", "Known nodes by liveness; restarts folded.")
    for liveness, count in by_liveness.items():
        out.sample(prefix + "nodes", count, _labels([("liveness", liveness.value)]))

    per_node: tuple[tuple[str, str, Callable[[NodeSnapshot], float | None]], ...] = (
        ("phi", "Suspicion of each peer (live while below the threshold).", lambda n: n.phi),
        ("heartbeat", "Last heartbeat seen of each node.", lambda n: n.heartbeat),
        ("max_version", "Max version of each node's key-values.", lambda n: n.max_version),
    )
    for name, help_text, read in per_node:
        out.family(prefix + name, "gauge", help_text)
        for node in _one_per_node_id(snapshot):
            reading = read(node)
            if reading is not None:
                out.sample(prefix + name, reading, _node_labels(node.node))
    return "\n".join(out.lines) + "\n"
