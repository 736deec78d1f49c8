"""Partial digests: gossip-tui's way past the size of a single datagram.

chitchat puts a digest of every node it knows into each Syn and SynAck. In version 0 that
is about 45-80 bytes per node, so past roughly a thousand nodes a Syn no longer fits in
one UDP datagram; version 1 compresses the digest and pushes the limit out by the
compression ratio, but not away. Past it nothing can be sent at all.

Between gossip-tui peers a digest can be *partial*: a window of the full digest, with a
marker entry that tells the receiver so. A receiver of a partial digest reads an absent
node as "not in this window", never as "unknown to the sender", so it only answers for
the nodes listed. What a window holds, most useful first:

* the sender itself, so its own changes spread as fast as with a full digest;
* nodes the sender is behind on (a peer's partial digest showed a newer version): naming
  them is how it asks for them;
* nodes whose state the sender saw change in the last few rounds: naming them tells
  peers that are behind to ask;
* then a rotating slice of every other node, so that over a few rounds the whole digest
  goes around and nothing is left behind for good.

Only peers that published the capability key (``CAPS_KEY`` holding ``PARTIAL_DIGEST``)
ever receive a partial digest; chitchat carries that key as any other and never sees a
partial digest. A node publishes the key once its own digest passes half a datagram, so
small clusters (and every existing deployment) see no new key, and the capability is
known everywhere well before the first full digest stops fitting.

The marker is an ordinary digest entry, so the wire format is chitchat's, version 0 or 1,
unchanged: a node id no real node can have (port 0), whose heartbeat field carries the
number of nodes the sender knows.
"""

from __future__ import annotations

import ipaddress
from array import array
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from itertools import compress, repeat
from operator import and_, ge, lt, ne
from typing import cast

from .codec import (
    MAX_DATAGRAM_SIZE,
    MAX_STR_LEN,
    PROTOCOL_V0,
    PROTOCOL_V1,
    digest_size,
    node_id_size,
)
from .messages import Digest, NodeDigest
from .models import NodeId, SocketAddress

CAPS_KEY = "__gossip_tui.caps"
PARTIAL_DIGEST = "partial-digest"

# Port 0 on the network address of loopback: nothing listens there, and nothing is sent
# there even by a peer that would take it for a node.
PARTIAL_MARKER = NodeId(
    "__gossip_tui.partial_digest", 0, SocketAddress(ipaddress.IPv4Address("127.0.0.0"), 0)
)

# How long (in the sender's rounds) a node that changed is named in every window.
RECENT_ROUNDS = 8
# Named nodes (self, behind, recent) take at most this share of a window: the rotation
# must keep moving even while a whole cluster changes at once.
PRIORITY_SHARE = 0.5

# Magic, version, type.
HEADER_LEN = 4


def advertises_partial_digests(caps: str | None) -> bool:
    return caps is not None and PARTIAL_DIGEST in caps.split(",")


def syn_digest_budget(max_datagram_size: int, cluster_id: str) -> int:
    """Bytes a Syn's digest may take: the datagram less the header and the cluster id."""
    return max_datagram_size - HEADER_LEN - 2 - min(len(cluster_id.encode()), MAX_STR_LEN)


def synack_window_budget(max_datagram_size: int) -> int:
    """Bytes a partial SynAck digest may take: half the datagram, the rest is the delta."""
    return (max_datagram_size - HEADER_LEN) // 2


def strip_marker(digest: Digest) -> tuple[Digest, bool]:
    """The digest without its marker, and whether it had one (it is partial)."""
    if PARTIAL_MARKER not in digest.nodes:
        return digest, False
    nodes = dict(digest.nodes)
    del nodes[PARTIAL_MARKER]
    return Digest(nodes), True


def fits(digest: Digest, protocol_version: int, budget: int) -> bool:
    """Whether ``digest`` encodes within ``budget`` bytes in ``protocol_version``."""
    if protocol_version == PROTOCOL_V1:
        # The V0 size is a cheap sum; a V1 digest is at most a few bytes larger than it
        # (block headers of incompressible data), so only compress when it is close.
        v0 = digest_size(digest, PROTOCOL_V0)
        if v0 + 3 * (v0 // 16_384 + 1) + 1 <= budget:
            return True
    return digest_size(digest, protocol_version) <= budget


def v0_syn_capacity(
    node_ids: Sequence[NodeId], cluster_id: str, max_datagram_size: int = MAX_DATAGRAM_SIZE
) -> int:
    """How many of ``node_ids`` (the first ones) a version-0 Syn can carry within one
    datagram: every entry is the node id (name, generation, address) and three u64s."""
    room = syn_digest_budget(max_datagram_size, cluster_id) - 2
    for count, node in enumerate(node_ids):
        room -= node_id_size(node) + 24
        if room < 0:
            return count
    return len(node_ids)


def full_digest_capacity(digest: Digest, protocol_version: int, budget: int) -> int:
    """How many nodes a full digest like ``digest`` (same kind of ids, same compression)
    can carry within ``budget`` bytes. Exact for version 0 with ids of the average size;
    for version 1 it scales the compressed size of ``digest`` linearly, an estimate."""
    count = len(digest.nodes)
    if count == 0:
        return budget // 64  # nothing to measure: a generous placeholder
    size = digest_size(digest, protocol_version)
    overhead = 2 if protocol_version == PROTOCOL_V0 else 1
    per_node = max(size - overhead, 1) / count
    return max(int((budget - overhead) // per_node), 0)


class WindowPlanner:
    """Builds partial digests for one node: what to name first, and where the rotation is."""

    def __init__(self, start: int = 0) -> None:
        self._cursor = start
        self._pending = start

    @property
    def cursor(self) -> int:
        return self._cursor

    def build(
        self,
        full: Digest,
        priority: Iterable[NodeId],
        protocol_version: int,
        budget: int,
    ) -> Digest:
        """A partial digest of ``full`` within ``budget`` bytes: the marker, then the
        ``priority`` nodes (in that order, at most ``PRIORITY_SHARE`` of the window), then
        nodes from the rotation cursor on; the cursor moves past those."""
        nodes = full.nodes
        order = sorted(nodes, key=NodeId.sort_key)
        marker = NodeDigest(len(nodes), 0, 0)
        count = self._capacity(full, order, protocol_version, budget)
        while True:
            window = self._window(nodes, order, priority, marker, count)
            if count <= 1 or fits(window, protocol_version, budget):
                break
            count = max(1, int(count * 0.9))
        # The window is final: the next one goes on after it.
        self._cursor = self._pending
        return window

    def _capacity(
        self, full: Digest, order: Sequence[NodeId], protocol_version: int, budget: int
    ) -> int:
        """Entries a window should hold: exact for version 0, from the compression ratio
        of the full digest for version 1 (then checked, and shrunk until it fits)."""
        room = budget - 2 - node_id_size(PARTIAL_MARKER) - 24
        if protocol_version == PROTOCOL_V0:
            count = 0
            for node in order:
                room -= node_id_size(node) + 24
                if room < 0:
                    break
                count += 1
            return count + 1
        return full_digest_capacity(full, protocol_version, int(room * 0.97)) + 1

    def _window(
        self,
        nodes: Mapping[NodeId, NodeDigest],
        order: Sequence[NodeId],
        priority: Iterable[NodeId],
        marker: NodeDigest,
        count: int,
    ) -> Digest:
        window: dict[NodeId, NodeDigest] = {PARTIAL_MARKER: marker}
        named = max(1, int(count * PRIORITY_SHARE))
        for node in priority:
            if len(window) > named:
                break
            entry = nodes.get(node)
            if entry is not None:
                window[node] = entry
        total = len(order)
        start = self._cursor % total if total else 0
        step = 0
        while len(window) < count and step < total:
            node = order[(start + step) % total]
            window.setdefault(node, nodes[node])
            step += 1
        # A window that does not fit is rebuilt smaller from the same start, so the
        # cursor only moves (in build) once the window is final.
        self._pending = start + step
        return Digest(window)


class NodeNumbers:
    """A numbering of nodes shared by the engines of one process (a simulation's: N
    engines of the same N nodes), for bookkeeping kept in columns indexed by it rather
    than in a dict per engine (a slot each, ~37 bytes, N^2 of them). Numbers are never
    taken back: only for a process whose nodes are bounded."""

    __slots__ = ("nodes", "of")

    def __init__(self) -> None:
        self.of: dict[NodeId, int] = {}
        self.nodes: list[NodeId] = []

    def number(self, node: NodeId) -> int:
        number = self.of.get(node)
        if number is None:
            number = self.of[node] = len(self.nodes)
            self.nodes.append(node)
        return number


# The round of a node not noted (or forgotten) in ChangeRounds' columns (of 32-bit
# ints: rounds and places past 2**31 raise, they do not wrap).
_UNNOTED = -(2**31)


class ChangeRounds:
    """The round each node's state last changed, for the windows' recent nodes: kept as a
    dict of node -> round keeps them (a node noted again keeps its place, one forgotten
    and noted again goes last), and given latest first, ties in that order.

    With ``numbers`` (see NodeNumbers) the rounds and places are two 4-byte columns: a
    simulation's engines note every node as it forms, and only forget one once their
    own digest no longer fits (the windows read these), which at a thousand nodes is
    never: a dict slot each was N^2 of ~37 bytes."""

    __slots__ = ("_by_node", "_noted", "_numbers", "_places", "_rounds")

    def __init__(self, numbers: NodeNumbers | None = None) -> None:
        self._numbers = numbers
        self._by_node: dict[NodeId, int] = {}
        self._rounds = array("i")
        self._places = array("i")
        self._noted = 0  # places given out

    def note(self, node: NodeId, round_: int) -> None:
        numbers = self._numbers
        if numbers is None:
            self._by_node[node] = round_
            return
        number = numbers.number(node)
        rounds = self._rounds
        if number >= len(rounds):
            missing = number + 1 - len(rounds)
            rounds.extend(repeat(_UNNOTED, missing))
            self._places.extend(repeat(0, missing))
        if rounds[number] == _UNNOTED:
            self._places[number] = self._noted
            self._noted += 1
        rounds[number] = round_

    def note_all(self, nodes: list[NodeId], round_: int) -> None:
        """``note`` each of ``nodes`` (distinct) in order, at ``round_``: at once into a
        record that holds none yet, its columns made whole, when every node has its number
        already (a pre-formed simulation's copied engines: see Simulation.preform)."""
        numbering = self._numbers
        if numbering is not None and not self._noted and not self._rounds and nodes:
            numbers = list(map(numbering.of.get, nodes))
            if None not in numbers and len(set(numbers)) == len(numbers):
                known = cast("list[int]", numbers)
                size = max(known) + 1
                rounds, places = array("i", [_UNNOTED]) * size, array("i", [0]) * size
                for place, number in enumerate(known):
                    rounds[number] = round_
                    places[number] = place
                self._rounds, self._places, self._noted = rounds, places, len(known)
                return
        for node in nodes:
            self.note(node, round_)

    def discard(self, node: NodeId) -> None:
        numbers = self._numbers
        if numbers is None:
            self._by_node.pop(node, None)
            return
        number = numbers.of.get(node)
        if number is not None and number < len(self._rounds):
            self._rounds[number] = _UNNOTED

    def recent(self, oldest: int, known: Container[NodeId]) -> list[NodeId]:
        """Forget the nodes that changed before round ``oldest`` or are not ``known``;
        the others, latest change first."""
        numbers = self._numbers
        if numbers is None:
            by_node = self._by_node
            for node, changed in list(by_node.items()):
                if changed < oldest or node not in known:
                    del by_node[node]
            return sorted(by_node, key=by_node.__getitem__, reverse=True)
        rounds, places, nodes = self._rounds, self._places, numbers.nodes
        # Picked in C: the few noted since ``oldest``, and those noted before, forgotten.
        stale = map(and_, map(lt, rounds, repeat(oldest)), map(ne, rounds, repeat(_UNNOTED)))
        for number in list(compress(range(len(rounds)), stale)):
            rounds[number] = _UNNOTED
        kept = []
        for number in list(compress(range(len(rounds)), map(ge, rounds, repeat(oldest)))):
            if nodes[number] in known:
                kept.append((-rounds[number], places[number], nodes[number]))
            else:
                rounds[number] = _UNNOTED
        kept.sort()  # (places are distinct: the nodes are never compared)
        return [node for _round, _place, node in kept]


class CapsPeers:
    """The peers that published the capability, by address: at each address the node
    whose state showed it when a delta last named one of that address's nodes.

    With ``numbers`` (see NodeNumbers) a mark per node in a column, and an address's
    node found among the nodes known there, ``nodes_at`` (a mark outlives only a node
    forgotten by hand, whose state a delta must bring the key back to before it counts,
    and that delta marks it again): a dict slot per peer was N^2 of ~37 bytes in a
    simulation."""

    __slots__ = ("_by_addr", "_marks", "_nodes_at", "_numbers")

    def __init__(
        self,
        numbers: NodeNumbers | None = None,
        nodes_at: Callable[[SocketAddress], Iterable[NodeId]] = lambda _addr: (),
    ) -> None:
        self._numbers = numbers
        self._nodes_at = nodes_at
        self._by_addr: dict[SocketAddress, NodeId] = {}
        self._marks = bytearray()

    def note(self, node: NodeId) -> None:
        """``node`` showed the capability."""
        numbers = self._numbers
        if numbers is None:
            self._by_addr[node.gossip_addr] = node
            return
        marks = self._marks
        for other in self._nodes_at(node.gossip_addr):
            number = numbers.of.get(other)
            if number is not None and number < len(marks):
                marks[number] = 0
        number = numbers.number(node)
        if number >= len(marks):
            marks.extend(bytes(number + 1 - len(marks)))
        marks[number] = 1

    def note_all(self, nodes: list[NodeId], alone: bool) -> None:
        """``note`` each of ``nodes`` in order: at once into a record that holds none yet
        when each node is ``alone`` at its address among the nodes known (its mark is then
        its own) and has its number already (see ChangeRounds.note_all)."""
        numbering = self._numbers
        if alone and numbering is not None and not self._marks and nodes:
            numbers = list(map(numbering.of.get, nodes))
            if None not in numbers:
                known = cast("list[int]", numbers)
                marks = bytearray(max(known) + 1)
                for number in known:
                    marks[number] = 1
                self._marks = marks
                return
        for node in nodes:
            self.note(node)

    def discard(self, node: NodeId) -> None:
        """``node`` is gone: its address has no such peer, unless another node took it."""
        numbers = self._numbers
        if numbers is None:
            if self._by_addr.get(node.gossip_addr) == node:
                del self._by_addr[node.gossip_addr]
            return
        number = numbers.of.get(node)
        if number is not None and number < len(self._marks):
            self._marks[number] = 0

    def at(self, addr: SocketAddress) -> NodeId | None:
        """The peer at ``addr``, if any."""
        numbers = self._numbers
        if numbers is None:
            return self._by_addr.get(addr)
        marks = self._marks
        for node in self._nodes_at(addr):
            number = numbers.of.get(node)
            if number is not None and number < len(marks) and marks[number]:
                return node
        return None
