"""The readings drawn from the digests peers send (gossip_tui.core.agreement): how far our
own keys have travelled, and which nodes hold which view of the membership.

Apart from the table and the summaries they read, which a running node keeps up from its
first round: these are built when the dashboard or the API first asks for a reading, so
a node's start does without them. gossip_tui.core.agreement still exports every name.

Pure: time is a parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from .agreement import PeerReport, ViewSummary
from .fields_repr import fields_repr
from .models import KeyStatus, NodeId, VersionedValue

__all__ = [
    "AgreementReading",
    "KeyPropagation",
    "PropagationReading",
    "ViewGroup",
    "ViewMember",
    "ViewSource",
    "read_agreement",
    "read_propagation",
]


# ---------------------------------------------------------------------- propagation


@attrs.frozen
class KeyPropagation:
    """How far one of our keys has travelled among the live peers."""

    __repr__ = fields_repr

    key: str
    version: int
    status: KeyStatus
    # Live peers that hold this version (or a later one).
    holders: tuple[NodeId, ...]
    # Live peers that do not, with the max version of ours they reported (None: no report
    # from them yet).
    laggards: tuple[tuple[NodeId, int | None], ...]

    @property
    def held_by(self) -> int:
        return len(self.holders)

    @property
    def live_peers(self) -> int:
        return len(self.holders) + len(self.laggards)


@attrs.frozen
class PropagationReading:
    __repr__ = fields_repr
    self_node: NodeId
    taken_at: float
    live_peers: tuple[NodeId, ...]
    keys: tuple[KeyPropagation, ...]


def read_propagation(
    self_id: NodeId,
    key_values: Mapping[str, VersionedValue],
    live_peers: Iterable[NodeId],
    reports: Mapping[NodeId, PeerReport],
    now: float,
) -> PropagationReading:
    """Each of our keys with the live peers holding its version: a peer holds it when the
    max version of ours its last digest reported, for our current identity, reaches it
    (versions arrive in order, so it holds every one below too)."""
    peers = tuple(sorted(node for node in live_peers if node != self_id))
    held: dict[NodeId, int | None] = {}
    for peer in peers:
        report = reports.get(peer)
        if report is None:
            held[peer] = None
        else:
            held[peer] = report.max_version if report.about == self_id else 0
    keys = []
    for key in sorted(key_values):
        value = key_values[key]
        holders = tuple(p for p in peers if (held[p] or 0) >= value.version)
        laggards = tuple((p, held[p]) for p in peers if (held[p] or 0) < value.version)
        keys.append(KeyPropagation(key, value.version, value.status, holders, laggards))
    return PropagationReading(self_id, now, peers, tuple(keys))


# ---------------------------------------------------------------------- agreement


class ViewSource:
    """Where a node's view was read from."""

    PUBLISHED = "published"  # its VIEW_KEY (a gossip-tui node)
    DIGEST = "digest"  # the nodes its last digest listed (a chitchat peer)
    UNKNOWN = "unknown"  # neither yet


@attrs.frozen
class ViewMember:
    __repr__ = fields_repr
    node: NodeId
    # False for a node we hold dead: its view is the last we heard of.
    live: bool
    source: str


@attrs.frozen
class ViewGroup:
    """Nodes that hold the same view; ``summary`` None for those whose view is unknown."""

    __repr__ = fields_repr

    summary: ViewSummary | None
    members: tuple[ViewMember, ...]
    includes_self: bool

    @property
    def live_members(self) -> int:
        return sum(1 for member in self.members if member.live)


@attrs.frozen
class AgreementReading:
    __repr__ = fields_repr
    self_node: NodeId
    taken_at: float
    # This node's group first, then the larger groups.
    groups: tuple[ViewGroup, ...]

    @property
    def agreed(self) -> bool:
        """Whether every node with a known view holds the same one."""
        return sum(1 for group in self.groups if group.summary is not None) <= 1


def read_agreement(
    self_id: NodeId,
    nodes: Iterable[tuple[NodeId, bool]],
    published: Mapping[NodeId, str | None],
    digest_views: Mapping[NodeId, ViewSummary],
    own_view: ViewSummary,
    now: float,
) -> AgreementReading:
    """Group ``nodes`` (each with whether it is live) by the view they hold: the summary
    a node published, else (a chitchat peer) the one of its last digest. This node counts
    with what it published, as its peers see it, or its present view before that."""
    by_view: dict[ViewSummary | None, list[ViewMember]] = {}
    for node, live in nodes:
        summary = ViewSummary.parse(published.get(node))
        source = ViewSource.PUBLISHED
        if summary is None and node == self_id:
            summary = own_view
        if summary is None:
            summary = digest_views.get(node)
            source = ViewSource.DIGEST if summary is not None else ViewSource.UNKNOWN
        by_view.setdefault(summary, []).append(ViewMember(node, live, source))
    groups = [
        ViewGroup(
            summary,
            tuple(sorted(members, key=lambda m: m.node)),
            any(m.node == self_id for m in members),
        )
        for summary, members in by_view.items()
    ]
    groups.sort(
        key=lambda g: (
            not g.includes_self,
            g.summary is None,
            -g.live_members,
            -len(g.members),
            g.summary.hash if g.summary is not None else "",
        )
    )
    return AgreementReading(self_id, now, tuple(groups))
