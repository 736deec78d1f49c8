"""Cluster-wide readings taken from what peers already send: how far our own keys have
travelled, and which nodes agree on the membership.

No new traffic: every Syn and SynAck carries its sender's digest, which lists the max
version the sender holds of every node, ours included, and which nodes it knows. The
engine says which digest a message carried (:class:`SeenDigest` on the receive step); a
:class:`PeerViews` table, fed by the runtime with the address the message came from,
keeps the last of them per peer.

Agreement follows ringpop's checksums: each gossip-tui node publishes a summary of the
live set it sees (:data:`VIEW_KEY`, a short hash and a count), which chitchat peers carry
like any other key. Nodes without it (chitchat peers) are judged from the node ids their
last digest listed. :class:`ViewPublisher` decides when the summary is worth a new version.

One concern, though over 400 lines: readings of the digests peers send (the per-peer
table, the view summary and the groups drawn from both), which the dashboard's
propagation and agreement views and the HTTP API show.

Pure: time is a parameter.
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .fields_repr import fields_repr
from .messages import Digest
from .models import NodeId, SocketAddress

if TYPE_CHECKING:
    from .readings import (
        AgreementReading,
        KeyPropagation,
        PropagationReading,
        ViewGroup,
        ViewMember,
        ViewSource,
        read_agreement,
        read_propagation,
    )

__all__ = [
    "MAX_PEER_VIEWS",
    "VIEW_KEY",
    "VIEW_MAX_DELAY_ROUNDS",
    "VIEW_SETTLE_ROUNDS",
    "AgreementReading",
    "KeyPropagation",
    "PeerReport",
    "PeerViews",
    "PropagationReading",
    "SeenDigest",
    "ViewGroup",
    "ViewMember",
    "ViewPublisher",
    "ViewSource",
    "ViewSummary",
    "is_view_summary",
    "read_agreement",
    "read_propagation",
    "sender_of",
    "summarize",
]

# The summary of the live set a gossip-tui node sees, as "<8 hex digits>:<count>".
VIEW_KEY = "__gossip_tui.view"

# The publishing rule: a new summary is published once the live set has held still for
# VIEW_SETTLE_ROUNDS rounds (a converging cluster changes it every round: no key churn
# then), or once it has differed from the published one for VIEW_MAX_DELAY_ROUNDS rounds
# (a cluster that never settles still shows its drift).
VIEW_SETTLE_ROUNDS = 3
VIEW_MAX_DELAY_ROUNDS = 20

# The most peers the table keeps between two prunes: a flood of digests from made-up
# senders must not grow memory without end (the state bounds the nodes it learns).
MAX_PEER_VIEWS = 10_000

_MASK = 2**64 - 1

# A published summary: 8 lower-case hex digits, a colon, a count of up to 9 decimal digits
# (``\d``: the digits ``int`` reads, "٣" too, but not "²", which str.isdigit lets through
# and ``int`` refuses).
_SUMMARY_TEXT = re.compile(r"([0-9a-f]{8}):(\d{1,9})")


def is_view_summary(text: str | None) -> bool:
    """Whether ``text`` is a published summary (:meth:`ViewSummary.parse` would read one):
    asked for every message, without building the summary."""
    return text is not None and _SUMMARY_TEXT.fullmatch(text) is not None


# Each node's token, computed once: a digest of hundreds of nodes arrives several times a
# second, and a dict lookup is what a summary can afford per node. Keyed by the identity
# of the NodeId (the codec hands out one object per node id), with the node itself: a
# summary is then summed in C, without a call of NodeId.__hash__ (Python) per node, and the
# entry keeps its node alive, so that no other object has its id while it is cached.
# Cleared when it grows past the bound (made-up node ids must not grow it without end).
_TOKENS: dict[int, tuple[NodeId, int]] = {}
_MAX_TOKENS = 65_536
_token_of = operator.itemgetter(1)


def _token(node: NodeId) -> int:
    # The same on every machine and run (Python's hash() is salted per process), so that
    # summaries published by different nodes can be compared.
    text = f"{node.node_id}\x00{node.generation}\x00{node.gossip_addr}".encode()
    token = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")
    if len(_TOKENS) >= _MAX_TOKENS:
        _TOKENS.clear()
    _TOKENS[id(node)] = (node, token)
    return token


@attrs.frozen
class ViewSummary:
    """A set of nodes in a few bytes: a hash that does not depend on order, and its size."""

    __repr__ = fields_repr

    hash: str
    count: int

    def encode(self) -> str:
        return f"{self.hash}:{self.count}"

    @classmethod
    def parse(cls, text: str | None) -> ViewSummary | None:
        """The summary in a published value; None for anything else (the value is a peer's
        and may be anything, "deadbeef:²" too, which must not raise)."""
        match = None if text is None else _SUMMARY_TEXT.fullmatch(text)
        if match is None:
            return None
        return cls(match[1], int(match[2]))


def summarize(nodes: Collection[NodeId]) -> ViewSummary:
    """The summary of a set of nodes: a sum of per-node hashes, so it costs one pass and
    no sort (a digest of hundreds of nodes arrives several times a second)."""
    tokens = _TOKENS
    try:
        total = sum(map(_token_of, map(tokens.__getitem__, map(id, nodes))))
    except KeyError:  # some node seen for the first time
        total = sum(
            _token_of(tokens[id(node)]) if id(node) in tokens else _token(node) for node in nodes
        )
    total &= _MASK
    return ViewSummary(f"{(total >> 32) ^ (total & 0xFFFFFFFF):08x}", len(nodes))


class ViewPublisher:
    """Decides, once per round, whether to publish a new summary of our live set (see
    VIEW_SETTLE_ROUNDS for the rule)."""

    def __init__(self) -> None:
        self.published: str | None = None
        self._candidate: str | None = None
        self._candidate_since = 0
        self._differs_since: int | None = None

    def next_value(self, live: Collection[NodeId], round_number: int) -> str | None:
        """The value to publish this round (then counted as published), or None."""
        # Summarized every round, where a copy of the set was kept to see whether it
        # changed (a pass in C either way, and a copy per engine of its live set is N^2
        # entries in a simulation): only a new summary is news, as before, since the
        # summary of the set last summarized is the candidate.
        return self.next_value_of(summarize(live).encode(), round_number)

    def next_value_of(self, candidate: str, round_number: int) -> str | None:
        """:meth:`next_value` of a live set whose summary, encoded, is ``candidate``."""
        if candidate != self._candidate:
            self._candidate, self._candidate_since = candidate, round_number
        if self._candidate == self.published:
            self._differs_since = None
            return None
        if self._differs_since is None:
            self._differs_since = round_number
        settled = round_number - self._candidate_since >= VIEW_SETTLE_ROUNDS
        overdue = round_number - self._differs_since >= VIEW_MAX_DELAY_ROUNDS
        if not (settled or overdue):
            return None
        self.published, self._differs_since = self._candidate, None
        return self.published

    def settle_on(self, candidate: str, round_number: int) -> str:
        """Count ``candidate`` as the summary published at ``round_number`` after holding
        still for VIEW_SETTLE_ROUNDS: the value to publish now. For a node that starts as
        after a long quiet spell (a simulation's pre-formed cluster), whose view is news
        to nobody: :meth:`next_value_of` publishes nothing until the live set changes."""
        self._candidate = self.published = candidate
        self._candidate_since = round_number - VIEW_SETTLE_ROUNDS
        self._differs_since = None
        return candidate


# ---------------------------------------------------------------------- what peers report


@attrs.frozen
class SeenDigest:
    """The digest a received message carried (partial marker removed)."""

    __repr__ = fields_repr

    digest: Digest
    # A window of the sender's digest (partial-digest extension): nodes it leaves out
    # say nothing, so it tells neither the sender's view nor, when we are left out, ours.
    partial: bool = False
    # The nodes it lists that the receiving state did not hold after the message (refused,
    # forgotten, former identities of ours): with the state's nodes by address, they let
    # the sender be found without a pass over the digest (see PeerViews.note).
    unadmitted: tuple[NodeId, ...] = attrs.field(default=(), eq=False)


@attrs.frozen
class PeerReport:
    """What a peer's last digest said of us."""

    __repr__ = fields_repr

    # Our identity it reported on: after a new generation of ours, older reports are
    # about someone else.
    about: NodeId
    # The highest version of our keys it holds (0: it holds none).
    max_version: int
    last_gc_version: int
    at: float


def sender_of(digest: Digest, source: SocketAddress, self_id: NodeId) -> NodeId | None:
    """The node that sent ``digest`` from ``source``: a digest lists its sender too, at its
    gossip address. A SynAck comes from the address we sent the Syn to (its gossip address
    even behind a proxy); a Syn from the sender's socket, which is that address unless the
    sender advertises another. The newest generation wins (a restarted peer is listed with
    its old generations at the same address). None when no listed node is at ``source``."""
    found: NodeId | None = None
    port = source.port
    for node in digest.nodes:
        addr = node.gossip_addr
        # The port first: an int comparison rules out nearly every node cheaply.
        at_source = addr.port == port and addr == source and node != self_id
        if at_source and (found is None or node.generation > found.generation):
            found = node
    return found


def _sender_among(
    seen: SeenDigest, source: SocketAddress, known: Sequence[NodeId]
) -> NodeId | None:
    """:func:`sender_of` from the nodes ``known`` at ``source`` (the receiving state's,
    which holds every node of the digest but ``seen.unadmitted``), without a pass over the
    digest. None when that does not settle it: no node at ``source``, or several of the
    newest generation (the digest's order decides those). ``source`` is not our own
    address, so none of these nodes is us."""
    listed = seen.digest.nodes
    if len(known) == 1 and not seen.unadmitted:  # the common case: one node at the address
        only = known[0]
        return only if only in listed else None
    found = [node for node in known if node in listed]
    if seen.unadmitted:  # disjoint from ``known``: the state does not hold them
        found += [node for node in seen.unadmitted if node.gossip_addr == source]
    if len(found) < 2:
        return found[0] if found else None
    newest = max(node.generation for node in found)
    top = [node for node in found if node.generation == newest]
    return top[0] if len(top) == 1 else None


class PeerViews:
    """The last report of each peer about us, and the summary of the nodes its last full
    digest listed. Fed by the runtime; entries of nodes gone are pruned with :meth:`keep`."""

    def __init__(self, max_peers: int = MAX_PEER_VIEWS) -> None:
        self._max_peers = max_peers
        # Each peer's last report as a plain tuple, PeerReport's fields in order: noted for
        # nearly every datagram, read only when someone looks (see ``reports``).
        self._reports: dict[NodeId, tuple[NodeId, int, int, float]] = {}
        self.digest_views: dict[NodeId, ViewSummary] = {}

    @property
    def reports(self) -> dict[NodeId, PeerReport]:
        """The last report of each peer about us (a copy, built for the reader)."""
        return {node: PeerReport(*row) for node, row in self._reports.items()}

    def note(
        self,
        seen: SeenDigest,
        source: SocketAddress,
        self_id: NodeId,
        now: float,
        publishes_view: Callable[[NodeId], bool] | None = None,
        known_at: Callable[[SocketAddress], Sequence[NodeId]] | None = None,
    ) -> NodeId | None:
        """Take what ``seen`` says; the sender it was attributed to, or None.

        ``publishes_view`` tells the senders whose view is read from their VIEW_KEY: the
        nodes their digest lists are then not summarized (it costs a pass over the digest,
        for every message). ``known_at`` (the receiving state's nodes at an address, once
        it took the message) finds the sender without a pass over the digest; without it,
        or when it does not settle it, :func:`sender_of` walks the digest."""
        sender = None
        # A message from our own address may list former identities of ours, which the
        # state dropped during the step and ``unadmitted`` does not name: walk for those.
        # (The port first: an int comparison settles nearly every source.)
        own_addr = self_id.gossip_addr
        if known_at is not None and (source.port != own_addr.port or source != own_addr):
            sender = _sender_among(seen, source, known_at(source))
        if sender is None:
            sender = sender_of(seen.digest, source, self_id)
        if sender is None:
            return None
        reports = self._reports
        if len(reports) >= self._max_peers and sender not in reports:
            return None
        own = seen.digest.nodes.get(self_id)
        if own is not None:
            reports[sender] = (self_id, own.max_version, own.last_gc_version, now)
        elif not seen.partial:
            # A full digest without us: the sender holds nothing of ours (yet).
            reports[sender] = (self_id, 0, 0, now)
        if publishes_view is not None and publishes_view(sender):
            if self.digest_views:  # empty unless chitchat peers are about: no lookup then
                self.digest_views.pop(sender, None)
        elif not seen.partial:
            self.digest_views[sender] = summarize(seen.digest.nodes.keys())
        return sender

    def __len__(self) -> int:
        """How many peers the table holds something of (at most)."""
        return max(len(self._reports), len(self.digest_views))

    def forget(self, node: NodeId) -> None:
        self._reports.pop(node, None)
        self.digest_views.pop(node, None)

    def keep(self, known: Collection[NodeId]) -> None:
        """Drop every peer not in ``known`` (removed, forgotten, or never admitted)."""
        for node in [node for node in self._reports if node not in known]:
            del self._reports[node]
        for node in [node for node in self.digest_views if node not in known]:
            del self.digest_views[node]


# What the dashboard and the API read (gossip_tui.core.readings): built when first asked
# for, as a node's start never reads them.
_READINGS = frozenset(
    {
        "AgreementReading",
        "KeyPropagation",
        "PropagationReading",
        "ViewGroup",
        "ViewMember",
        "ViewSource",
        "read_agreement",
        "read_propagation",
    }
)


def __getattr__(name: str) -> Any:
    if name in _READINGS:
        from . import readings

        return getattr(readings, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
