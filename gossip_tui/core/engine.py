"""A gossip node's brain, with no I/O: messages in, messages out, time passed in.

The runtime (gossip_tui.node) drives it: it calls :meth:`GossipEngine.start_round` every
gossip interval and sends a Syn to each address of the returned :class:`RoundStep`, hands
every datagram to :func:`gossip_tui.core.receive.receive_datagram` (which decodes it and
calls :meth:`GossipEngine.handle_message`) and sends back the reply of the
:class:`ReceiveStep`, then calls :meth:`GossipEngine.update_liveness` after each round.

Each of the three returns a frozen step that says what happened in it: the state changes,
the input refused and why, the repairs of our own state, the liveness changes. The runtime
acts on those (events, counters, logs) and never compares the engine before and after.

One concern over ~600 lines: the protocol state machine of a node (messages, rounds,
sweeps, and the repairs of our own state), with the small pure helpers it needs.

One concern, though over 400 lines: the protocol's decisions (what to send, what to
accept, what to repair); the codec, state, failure detector and digest windows are their
own modules.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from .agreement import VIEW_KEY, SeenDigest, ViewPublisher, summarize
from .codec import (
    MAX_DATAGRAM_SIZE,
    MAX_DELTA_STREAM,
    PROTOCOL_V0,
    U64_MAX,
    DeltaWriter,
    EncodeError,
    digest_size,
    encode_digest,
    node_id_size,
)
from .digest_window import (
    CAPS_KEY,
    PARTIAL_DIGEST,
    RECENT_ROUNDS,
    CapsPeers,
    ChangeRounds,
    NodeNumbers,
    WindowPlanner,
    advertises_partial_digests,
    fits,
    full_digest_capacity,
    strip_marker,
    syn_digest_budget,
    synack_window_budget,
)
from .errors import GossipTuiError
from .failure_detector import FailureDetector, FailureDetectorConfig
from .fields_repr import fields_repr
from .generations import superseded
from .messages import (
    Ack,
    BadCluster,
    Delta,
    Digest,
    DigestColumns,
    Message,
    NodeDelta,
    NodeDigest,
    Syn,
    SynAck,
)
from .models import (
    ClusterSnapshot,
    KeyStatus,
    Liveness,
    NodeId,
    NodeSnapshot,
    SocketAddress,
    sort_key_of,
)
from .state import ClusterState, NodeState, StateChange, StateLimits, digest_entry_size

# A node about to leave sets this key; gossip-tui peers then count it as gone at once.
# chitchat peers see an ordinary key, and a node that simply dies.
LEAVING_KEY = "__gossip_tui.leaving"

# Peers picked at random per round.
GOSSIP_COUNT = 3
# Header bytes of a SynAck / Ack datagram (magic, version, type). chitchat budgets one
# byte here and can overshoot the datagram limit by three; we budget exactly.
_HEADER_LEN = 4

# How far a peer's report may move our own heartbeat or versions. Past it (a forged value
# near the u64 edge, a time bomb a few thousand beats short of it) following the report
# would leave us no room to count on, so we take a new generation instead. Half the u64
# range: no honest node gets there, and a node below it never overflows.
HEADROOM_CEILING = 2**63

# Reasons of GossipEngine.self_repairs.
REPAIR_STATE_AHEAD = "state_ahead"  # a peer's view of our versions ahead: republished
REPAIR_HEARTBEAT_AT_EDGE = "heartbeat_at_edge"  # outrunning it would leave no room
REPAIR_VERSIONS_AT_EDGE = "versions_at_edge"  # republishing would leave no room
REPAIR_GENERATIONS_EXHAUSTED = "generations_exhausted"  # our generation is u64 max already

# Room kept beside our digest in a SynAck for its delta. The digest of a full cluster may
# take the rest: a node's own keys travel in full-size Acks (no digest beside them) when
# it starts an exchange, so this only has to keep SynAcks useful, about a hundred small
# key-values. chitchat reserves nothing; its digest outgrows the datagram past ~1,000 nodes.
SYNACK_DELTA_RESERVE = 4096


def max_digest_bytes(cluster_id: str, max_datagram_size: int = MAX_DATAGRAM_SIZE) -> int:
    """The most our digest may take so that both messages carrying it fit a datagram:
    a Syn (beside the cluster id) and a SynAck (beside a delta of at least the reserve)."""
    syn_tail = 2 + len(cluster_id.encode())
    return max_datagram_size - _HEADER_LEN - max(syn_tail, SYNACK_DELTA_RESERVE)


def _digest_bound(cluster_id: str, max_datagram_size: int, protocol_version: int) -> int:
    """The uncompressed digest size past which a node learns no more nodes. In version 1
    the digest is compressed (4.7-6.6x on the ids measured, scripts/bench/compression.py),
    so the version-0 bound would stop a node at a sixth of what its Syn carries (759
    chitchat-test ids instead of ~5,000); the bound is then what a gossip-tui peer decodes
    of one stream, and a digest that compresses too poorly shows as a Syn too large."""
    if protocol_version == PROTOCOL_V0:
        return max_digest_bytes(cluster_id, max_datagram_size)
    return MAX_DELTA_STREAM


def fits_in_one_delta(
    node: NodeId, key: str, value: str, max_datagram_size: int = MAX_DATAGRAM_SIZE
) -> bool:
    """Whether ``node``'s key-value can travel at all: alone in the delta of an Ack (the
    roomiest message, with no digest beside it), at the largest version. A key-value
    that fails this would never leave the node."""
    writer = DeltaWriter(max_datagram_size - _HEADER_LEN)
    try:
        return writer.try_add_node(node, 0, 0) and writer.try_add_kv(
            key, value, U64_MAX, KeyStatus.SET
        )
    except EncodeError:  # a key or value longer than the wire's length fields
        return False


class NodeIsLive(GossipTuiError, ValueError):
    """Only a dead or left node can be forgotten: a live one would be learnt again at once."""


@attrs.frozen
class LivenessChanges:
    """What one liveness sweep changed."""

    __repr__ = fields_repr

    joined: tuple[NodeId, ...] = ()
    died: tuple[NodeId, ...] = ()
    removed: tuple[NodeId, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.joined or self.died or self.removed)


@attrs.frozen
class LivenessReading:
    """How one node looks from here right now, without its key-values: what a dashboard
    refreshes every tick (keys it learns from events, and reads per node when needed)."""

    __repr__ = fields_repr

    node: NodeId
    liveness: Liveness
    heartbeat: int
    # Lets a reader that follows key events tell whether it missed some.
    max_version: int
    phi: float | None
    last_update: float | None


@attrs.frozen
class LivenessReadings:
    """Every known node's :class:`LivenessReading`, taken at ``taken_at``."""

    __repr__ = fields_repr

    taken_at: float
    nodes: tuple[LivenessReading, ...]


@attrs.frozen
class GossipTargets:
    """Whom to send a Syn this round."""

    __repr__ = fields_repr

    peers: tuple[SocketAddress, ...]
    dead: SocketAddress | None
    seed: SocketAddress | None

    def all(self) -> list[SocketAddress]:
        targets = list(self.peers)
        if self.dead is not None:
            targets.append(self.dead)
        if self.seed is not None:
            targets.append(self.seed)
        return targets


@attrs.frozen
class Step:
    """What one engine step did, beside its result: what the runtime turns into events,
    counters and log lines."""

    __repr__ = fields_repr

    # The state's change records, in order (local writes made before the step included).
    changes: tuple[StateChange, ...] = ()
    # One reason per refused piece of input ("over_limit", "self_delta", "node_limit"...).
    refusals: tuple[str, ...] = ()
    # Times a peer reported our heartbeat ahead of ours and we jumped past it.
    heartbeat_outruns: int = 0
    # One reason per repair of our own state (REPAIR_*).
    self_repairs: tuple[str, ...] = ()
    # Peers whose leaving marker arrived in this step: they left gracefully.
    departures: tuple[NodeId, ...] = ()


@attrs.frozen
class ReceiveStep(Step):
    """:meth:`GossipEngine.handle_message`: the reply to send back, if any."""

    __repr__ = fields_repr

    reply: Message | None = None
    # The digest the message carried (a Syn's or SynAck's): what its sender holds of each
    # node, us included (see gossip_tui.core.agreement).
    seen_digest: SeenDigest | None = None


@attrs.frozen
class RoundStep(Step):
    """:meth:`GossipEngine.start_round`: whom to send a Syn."""

    __repr__ = fields_repr

    targets: GossipTargets = GossipTargets((), None, None)


@attrs.frozen
class SweepStep(Step):
    """:meth:`GossipEngine.update_liveness`: who became live, dead, or was forgotten."""

    __repr__ = fields_repr

    liveness: LivenessChanges = LivenessChanges()


_S = TypeVar("_S", bound=Step)

# The step of a message that did nothing and gets no reply.
_NOTHING_RECEIVED = ReceiveStep()


def _sent_digest_size(digest: Digest, protocol_version: int) -> int:
    """The size of a digest about to be sent: encoded now (once; the encoding is kept on the
    digest and sent as is), which costs less than counting it and encoding it later."""
    if len(digest.nodes) > 0xFFFF:
        return digest_size(digest, protocol_version)  # never sendable in V0: only counted
    return len(encode_digest(digest, protocol_version))


def _in_order(addrs: Iterable[SocketAddress]) -> list[SocketAddress]:
    # The order of SocketAddress.__lt__, compared as C tuples: a round sorts every peer, and
    # a Python __lt__ per comparison cost more than the rest of the round's choice.
    return sorted(addrs, key=sort_key_of)


def select_gossip_targets(
    rng: random.Random,
    peers: set[SocketAddress],
    live: set[SocketAddress],
    dead: set[SocketAddress],
    seeds: set[SocketAddress],
    answering: Callable[[SocketAddress], bool] | None = None,
    *,
    pool_in_order: Sequence[SocketAddress] | None = None,
) -> GossipTargets:
    """chitchat's choice: up to 3 random live peers (any peer while none is live), maybe a
    dead node, maybe a seed (so that a cluster split along its seeds heals).

    ``answering`` tells which addresses have answered us. Anyone can make up nodes that
    look live (a digest with rising heartbeats for made-up ids at unreachable addresses);
    a thousand of them would leave a real peer one chance in a few hundred per round and
    stall replication until they are declared dead. So when no pick has ever answered, one
    of the three is swapped for a live peer that has. In a healthy cluster every live peer
    answers, and the choice is chitchat's.

    ``pool_in_order``: the pool (``live``, or ``peers`` while none is live) sorted as
    ``_in_order`` sorts it, when the caller holds it already."""
    pool = live if live else peers
    ordered = _in_order(pool) if pool_in_order is None else pool_in_order
    chosen = tuple(rng.sample(ordered, min(GOSSIP_COUNT, len(pool))))
    if answering is not None and chosen and not any(answering(a) for a in chosen):
        proven = _in_order(a for a in live if answering(a))
        if proven:
            chosen = (*chosen[:-1], rng.choice(proven))
    dead_pick: SocketAddress | None = None
    if dead and len(dead) / (len(live) + 1) > rng.random():
        dead_pick = rng.choice(_in_order(dead))
    seed_pick: SocketAddress | None = None
    has_seed = any(addr in seeds for addr in chosen)
    if seeds and (not has_seed or len(live) < len(seeds)):
        known = len(live) + len(dead)
        probability = len(seeds) / known if known else 1.0
        if not live or rng.random() <= probability:
            seed_pick = rng.choice(_in_order(seeds))
    return GossipTargets(chosen, dead_pick, seed_pick)


class GossipEngine:
    """The protocol state machine of one node."""

    def __init__(
        self,
        self_id: NodeId,
        cluster_id: str,
        *,
        now: float,
        failure_detector: FailureDetectorConfig | None = None,
        marked_for_deletion_grace_period: float = 3600.0,
        initial_key_values: Mapping[str, str] | None = None,
        seed_addrs: Iterable[SocketAddress] = (),
        rng: random.Random | None = None,
        limits: StateLimits | None = None,
        max_datagram_size: int = MAX_DATAGRAM_SIZE,
        protocol_version: int = PROTOCOL_V0,
        partial_digests: bool = False,
        node_numbers: NodeNumbers | None = None,
    ) -> None:
        self.self_id = self_id
        self.cluster_id = cluster_id
        # A node that only sends full digests never learns more nodes than one digest
        # carries (a flood of made-up ids would otherwise push every Syn past the datagram
        # limit). With the partial-digest extension (gossip-tui clusters only) peers that
        # publish the capability take windows of it, and only the node-count bound holds.
        self.state = ClusterState(
            limits,
            None
            if partial_digests
            else _digest_bound(cluster_id, max_datagram_size, protocol_version),
        )
        # Smaller than the UDP limit when the transport wraps datagrams (encryption).
        self.max_datagram_size = max_datagram_size
        # The version of the Syns we send; replies always go in the version of the Syn.
        self.protocol_version = protocol_version
        self.detector = FailureDetector(failure_detector or FailureDetectorConfig())
        self.marked_for_deletion_grace_period = marked_for_deletion_grace_period
        self.seed_addrs: set[SocketAddress] = set(seed_addrs)
        self.rng = rng or random.Random()
        self.left: set[NodeId] = set()
        # Times a peer reported our own heartbeat ahead of ours (see _outrun_heartbeat).
        self.outrun_heartbeats = 0
        # Times a peer's view of our own state was one we never wrote, and we put the truth
        # back (see _repair_own_view), by reason.
        self.self_repairs: Counter[str] = Counter()
        # Our identities before a new generation: peers still echo them, and they must not
        # come back to us as a peer.
        self.former_ids: set[NodeId] = set()
        # Live peers declared dead since the last sweep (they left): with the detector's
        # live set they are the live set of the last sweep, which the next one compares
        # with. No copy of that set is kept: a simulation of N engines held N^2 entries.
        self._died_since_sweep: list[NodeId] = []
        # What the last sweep judged: a node learnt or a departure marker come or gone since
        # is news to the next sweep (see liveness_steady_until). -1: no sweep yet.
        self._nodes_at_last_sweep = -1
        self._left_at_last_sweep: frozenset[NodeId] = frozenset()
        # The partial-digest extension (see digest_window): whether this node takes part,
        # the peers that published the capability (by address, as targets are picked),
        # nodes a peer showed us to be behind on (-> the version seen), nodes whose state
        # we saw change (-> the round), and the rotation of our windows. ``node_numbers``:
        # the numbering the engines of a process share, for the peers and changes kept in
        # columns rather than dicts (see NodeNumbers).
        self.partial_digests = partial_digests
        self._caps_peers = CapsPeers(node_numbers, self.state.nodes_at)
        self._behind: dict[NodeId, int] = {}
        self._changed_at = ChangeRounds(node_numbers)
        self._rounds = 0
        self._windows: WindowPlanner | None = None
        self._round_syns: tuple[float, Syn, Syn | None] | None = None
        # The summary of the live set _publish_view made last, and what it made it of.
        self._live_summary: tuple[FailureDetector, int, NodeId, str] | None = None
        # What _round_pools made last, and what it made it of.
        self._pools: (
            tuple[
                tuple[Sequence[NodeId], FailureDetector, int, NodeId],
                tuple[
                    set[SocketAddress], set[SocketAddress], set[SocketAddress], list[SocketAddress]
                ],
            ]
            | None
        ) = None
        # SynAcks not sent because our own digest left no room in a datagram.
        self.oversize_digests = 0
        # What the step under way did, beside the state's own records (see _finish).
        self._step_outruns = 0
        self._step_repairs: list[str] = []
        self._step_departures: list[NodeId] = []
        self._step_digest: SeenDigest | None = None
        # When to publish the summary of our live set (VIEW_KEY).
        self._view = ViewPublisher()
        me = self.self_state
        # Live from the start, so a peer's first Syn gets an answer with our state.
        me.heartbeat = 1
        me.last_update = now
        for key, value in (initial_key_values or {}).items():
            me.set(key, value)

    # ------------------------------------------------------------------ the local node

    @property
    def self_state(self) -> NodeState:
        return self.state.node_state_or_init(self.self_id)

    def _tick_heartbeat(self, now: float) -> None:
        me = self.self_state
        # Saturates rather than overflow the wire field; the ceiling keeps us far below it.
        heartbeat = me.heartbeat + 1
        me.heartbeat = heartbeat if heartbeat < U64_MAX else U64_MAX
        me.last_update = now

    def _take_new_generation(self, reason: str, now: float) -> None:
        """Become a new incarnation: same name and address, the next generation, our keys
        at fresh versions from 1 and a heartbeat from 1. Peers learn it as a new node and
        let the old one die; nothing they hold about the old one binds the new one."""
        old_id = self.self_id
        if old_id.generation >= U64_MAX:
            self._repaired(REPAIR_GENERATIONS_EXHAUSTED)
            return
        items = self.self_state.stale_key_values(0)  # all of them, oldest first
        self.state.remove_node(old_id)
        self.former_ids.add(old_id)
        self.self_id = NodeId(old_id.node_id, old_id.generation + 1, old_id.gossip_addr)
        me = self.self_state
        me.republish(items, 0, announce=True)
        me.heartbeat = 1
        me.last_update = now
        self._repaired(reason)

    def _repair_own_view(self, seen: NodeDigest, now: float) -> None:
        """A peer's digest showed our own state. Only we write it, so versions or a
        heartbeat above ours were forged (or come from an incarnation of ours with the same
        generation). Left alone, they would stick: peers keep the highest, and a frozen
        max_version hides every later write of ours. Put our truth back, as memberlist
        refutes a suspicion with a higher incarnation."""
        me = self.self_state
        if seen.max_version > me.max_version or seen.last_gc_version > me.last_gc_version:
            # A last_gc_version above every version the peer holds for us makes it (chitchat
            # too) reset its copy and take our keys afresh, numbered above it.
            floor = max(seen.max_version, seen.last_gc_version, me.max_version) + 1
            if floor + len(me.key_values) >= HEADROOM_CEILING:
                self._take_new_generation(REPAIR_VERSIONS_AT_EDGE, now)
                return
            me.republish(me.stale_key_values(0), floor, announce=False)
            self._repaired(REPAIR_STATE_AHEAD)
        if seen.heartbeat > me.heartbeat:
            self._outrun_heartbeat(seen.heartbeat, now)

    # ------------------------------------------------------------------ messages

    def _excluded(self, now: float) -> set[NodeId]:
        return self.detector.scheduled_for_deletion_nodes(now)

    def create_syn(self, now: float, target: SocketAddress | None = None) -> Syn:
        """The Syn to send (to ``target``, when given): a full digest, unless it does not
        fit in a datagram and ``target`` takes partial digests. Per target, the Syns of
        one round (same ``now``) are built once."""
        if target is None:
            return self._full_syn(now)
        cached = self._round_syns
        if cached is None or cached[0] != now:
            full = self._full_syn(now)
            budget = syn_digest_budget(self.max_datagram_size, self.cluster_id)
            partial = None
            if self.partial_digests and not fits(full.digest, self.protocol_version, budget):
                window = self._partial_digest(full.digest, self.protocol_version, budget)
                partial = Syn(self.cluster_id, window, protocol_version=self.protocol_version)
            cached = self._round_syns = (now, full, partial)
        _, full, partial = cached
        if partial is not None and self._takes_partial_digests(target):
            return partial
        # A chitchat peer only ever gets what it can decode: the full digest, even when
        # it is too large to send (then the transport refuses it, as it always did).
        return full

    def end_round_syns(self) -> None:
        """Let go of the Syns built for the round's targets (see create_syn): their digests
        hold an entry per known node until the next round, which a simulation of N engines
        pays N^2 times. The round's targets must all have been sent theirs: another one of
        the same round would be built anew, from the state as it then is."""
        self._round_syns = None

    def _full_syn(self, now: float) -> Syn:
        return Syn(
            self.cluster_id,
            self.state.compute_digest(self._excluded(now)),
            protocol_version=self.protocol_version,
        )

    # ------------------------------------------------------------------ partial digests

    def _takes_partial_digests(self, target: SocketAddress) -> bool:
        node = self._caps_peers.at(target)
        state = None if node is None else self.state.node_state(node)
        return state is not None and advertises_partial_digests(state.get(CAPS_KEY))

    def _partial_digest(self, full: Digest, protocol_version: int, budget: int) -> Digest:
        if self._windows is None:
            # Drawn only now, so that clusters that never need windows keep their random
            # sequence; a random start keeps the windows of different nodes apart.
            self._windows = WindowPlanner(self.rng.randrange(2**31))
        states = self.state.node_states
        for node, seen in list(self._behind.items()):
            state = states.get(node)
            if state is None or state.max_version >= seen:
                del self._behind[node]
        recent = self._changed_at.recent(self._rounds - RECENT_ROUNDS, states)
        priority = [self.self_id, *self._behind, *recent]
        return self._windows.build(full, priority, protocol_version, budget)

    def _note_behind(self, digest: Digest) -> None:
        """A partial digest names nodes its sender thinks worth naming: those where it is
        ahead of us we name in turn, which is how we ask for them."""
        states = self.state.node_states
        for node, node_digest in digest.nodes.items():
            state = states.get(node)
            if (
                state is not None
                and node != self.self_id
                and node_digest.max_version > state.max_version
            ):
                self._behind[node] = node_digest.max_version

    def _note_changes(self, delta: Delta, before: Mapping[NodeId, int]) -> None:
        states = self.state.node_states
        for node_delta in delta.node_deltas:
            state = states.get(node_delta.node)
            if state is None:
                continue
            if state.max_version > before.get(node_delta.node, 0):
                self._changed_at.note(node_delta.node, self._rounds)
            if advertises_partial_digests(state.get(CAPS_KEY)):
                self._caps_peers.note(node_delta.node)

    def note_copied_changes(
        self, changed: list[NodeId], capable: list[NodeId], capable_alone: bool
    ) -> None:
        """What _note_changes notes of a delta, for node states that came by a copy of
        another engine's (a simulation's pre-form): the peers whose state ``changed``
        this round, and those whose state shows the capability (``capable_alone``: each
        alone at its address among the nodes known; see CapsPeers.note_all)."""
        self._changed_at.note_all(changed, self._rounds)
        self._caps_peers.note_all(capable, capable_alone)

    @property
    def rounds_started(self) -> int:
        """The gossip rounds this engine has started."""
        return self._rounds

    def publish_capabilities(self) -> None:
        """Publish the partial-digest capability once our digest passes half a datagram
        (sized from our own entry): it then reaches every peer long before a full digest
        stops fitting, and small clusters never see the key."""
        if not self.partial_digests or self.self_state.get(CAPS_KEY) is not None:
            return
        entry = node_id_size(self.self_id) + 24
        if len(self.state) * entry > self.max_datagram_size // 2:
            self.self_state.set(CAPS_KEY, PARTIAL_DIGEST)

    def _publish_view(self) -> None:
        # The live set's summary made again only once it may have changed (see
        # _round_pools), where every round hashed and summarized every live node.
        detector, me = self.detector, self.self_id
        held = self._live_summary
        if (
            held is None
            or held[0] is not detector
            or held[1] != detector.liveness_version
            or held[2] is not me
        ):
            live = {me, *detector.live_nodes()}
            held = self._live_summary = (
                detector,
                detector.liveness_version,
                me,
                summarize(live).encode(),
            )
        value = self._view.next_value_of(held[3], self._rounds)
        if value is not None:
            self.self_state.set(VIEW_KEY, value)

    def publish_settled_view(self, live: Collection[NodeId]) -> None:
        """Publish the summary of ``live`` (us among them) as our view, settled: as after a
        quiet spell in which it was published and held still (see
        ViewPublisher.settle_on). A simulation pre-forms its cluster so, where each node
        otherwise publishes its view a few rounds in, all at once, and every peer applies
        every node's: N^2 key updates in a simulation of N engines."""
        self.self_state.set(VIEW_KEY, self._view.settle_on(summarize(live).encode(), self._rounds))

    def digest_capacity(
        self, target: SocketAddress | None = None, protocol_version: int | None = None
    ) -> int | None:
        """How many nodes our digest can carry to ``target`` in one Syn: None when there
        is no limit (the peer takes partial digests), else what a full digest holds in
        ``protocol_version`` (ours by default) -- exact in version 0, an estimate from
        the present compression ratio in version 1. A bound on how many nodes to learn
        should ask this. Costs an encoding of the digest in version 1."""
        if target is not None and self.partial_digests and self._takes_partial_digests(target):
            return None
        version = self.protocol_version if protocol_version is None else protocol_version
        budget = syn_digest_budget(self.max_datagram_size, self.cluster_id)
        return full_digest_capacity(self.state.compute_digest(), version, budget)

    def _report_heartbeats(self, digest: Digest, now: float) -> None:
        # Every message carries a digest of every node: this loop is the hot path of an idle
        # cluster. Known peers take the inline branch; the rest go the careful way.
        states = self.state.node_states
        me = states.get(self.self_id)
        # The nodes whose heartbeat rose, reported to the detector in one call at the end.
        rose: list[NodeId] = []
        report = rose.append
        own_view: NodeDigest | None = None
        unadmitted: list[NodeId] = []
        nodes = digest.nodes
        # A digest that names exactly our nodes in wire order (the usual one) is walked
        # beside our states by the state itself; any other looks each node up (hashing
        # it: a Python call).
        aligned = self.state.aligned_states(nodes)
        if aligned is not None and type(nodes) is DigestColumns:
            # Read as columns (every steady digest): the risen nodes by position, which the
            # detector finds rows for without hashing a node.
            risen, own_view = self.state.take_column_heartbeats(nodes, aligned, me, now)
            if risen:
                self.detector.report_heartbeats_at(nodes.nodes, risen, now)
        elif aligned is not None:
            rose, own_view = self.state.take_heartbeats(digest, aligned, me, now)
        else:
            for (node, node_digest), state in zip(
                nodes.items(), map(states.get, nodes), strict=True
            ):
                if state is None:
                    self._report_heartbeat(node, node_digest.heartbeat, now)
                    if node not in states:
                        unadmitted.append(node)
                elif state is not me:
                    # As ClusterState.take_heartbeats (NodeState.try_set_heartbeat inlined).
                    heartbeat = node_digest.heartbeat
                    held = state.heartbeat
                    if not held:
                        state.heartbeat = heartbeat  # the first one learnt is not news
                    elif heartbeat > held:
                        state.heartbeat = heartbeat
                        state.last_update = now
                        report(node)
                else:
                    own_view = node_digest
        if rose:
            self.detector.report_heartbeats(rose, now)
        seen = self._step_digest
        if unadmitted and seen is not None and seen.digest is digest:
            self._step_digest = attrs.evolve(seen, unadmitted=tuple(unadmitted))
        # After the loop: a repair may change our identity.
        if own_view is not None:
            self._repair_own_view(own_view, now)

    def _outrun_heartbeat(self, reported: int, now: float) -> None:
        """A peer says our heartbeat is ahead of what it is. Only we beat, so that value
        came from a corrupted or forged datagram (or an incarnation of ours with the same
        generation); peers keep the highest heartbeat they saw, so ours would look stale
        to all of them from now on. Jump past it: our beats count again. Near the u64
        edge, jumping would leave no room to beat: take a new generation instead. (chitchat
        has no such rule; to a chitchat peer this is just a higher heartbeat.)"""
        if reported >= HEADROOM_CEILING:
            self._take_new_generation(REPAIR_HEARTBEAT_AT_EDGE, now)
            return
        self.self_state.heartbeat = reported + 1
        self.outrun_heartbeats += 1
        self._step_outruns += 1

    def _report_heartbeat(self, node: NodeId, heartbeat: int, now: float) -> None:
        if node == self.self_id or node in self.former_ids:
            return
        forgotten_at = self.state.last_heartbeat_if_deleted(node)
        if forgotten_at is None or forgotten_at < heartbeat:
            if node not in self.state.node_states:
                # A flood of made-up nodes (or one with a huge name) must neither grow our
                # memory without end nor push our digest out of its datagram.
                refusal = self.state.admission_refusal(node)
                if refusal is not None:
                    self.state.refuse(refusal)
                    return
            state = self.state.node_state_or_init(node)
            if state.discovered_at is None:
                state.discovered_at = now
        else:
            # A node we garbage-collected, still echoed by a peer with an old heartbeat:
            # do not bring it back.
            existing = self.state.node_state(node)
            if existing is None:
                return
            state = existing
        if state.try_set_heartbeat(heartbeat, now):
            self.detector.report_heartbeat(node, now)

    def _repaired(self, reason: str) -> None:
        self.self_repairs[reason] += 1
        self._step_repairs.append(reason)

    def _recorded_any(self) -> bool:
        """Whether this step recorded anything that _finish would hand out (most steps of
        an idle cluster record nothing and skip it)."""
        return bool(
            self.state.changes
            or self.state.has_refusals
            or self._step_outruns
            or self._step_repairs
            or self._step_departures
        )

    def _finish(self, kind: type[_S], **result: Any) -> _S:
        """The step just done, as ``kind`` with ``result``; the records start over."""
        # Most steps (an idle cluster's) record nothing: no copies for them.
        changes = self.state.changes
        step = kind(
            changes=tuple(changes) if changes else (),
            refusals=self.state.drain_refusals(),
            heartbeat_outruns=self._step_outruns,
            self_repairs=tuple(self._step_repairs) if self._step_repairs else (),
            departures=tuple(self._step_departures) if self._step_departures else (),
            **result,
        )
        changes.clear()
        self._step_outruns = 0
        self._step_repairs.clear()
        self._step_departures.clear()
        return step

    def handle_message(
        self, message: Message, now: float, *, reply_budget: int | None = None
    ) -> ReceiveStep:
        """Process one message from a peer: the step holds the reply to send back, if any.

        ``reply_budget`` caps the encoded reply (the runtime passes one while it does not
        know that the sender's address receives what we send: a spoofed datagram must not
        draw a large reply towards a victim). A Syn then gets a SynAck whose digest and
        delta are cut to it: our own node first, so the peer learns us. A chitchat peer
        answers with an Ack holding what the cut digest seems to lack, which we hold
        already and ignore; the next exchange is whole."""
        if isinstance(message, Ack):
            # Half of an idle cluster's messages, most with an empty delta: handled first,
            # with no reply nor digest to deal with.
            self._tick_heartbeat(now)
            if message.delta.node_deltas:  # an empty one changes nothing
                self._apply_delta(message.delta, now)
            if not self._recorded_any():
                # Nothing recorded: the one empty step (frozen, so shared).
                return _NOTHING_RECEIVED
            return self._finish(ReceiveStep)
        reply = self._reply_to(message, now, reply_budget)
        seen, self._step_digest = self._step_digest, None
        if not self._recorded_any():
            # Nothing recorded (an idle exchange): the step is its reply and digest alone.
            return ReceiveStep(reply=reply, seen_digest=seen)
        return self._finish(ReceiveStep, reply=reply, seen_digest=seen)

    def _reply_to(self, message: Message, now: float, reply_budget: int | None) -> Message | None:
        limit = self.max_datagram_size
        if reply_budget is not None:
            limit = min(limit, reply_budget)
        self._tick_heartbeat(now)
        # A reply goes in the version the peer spoke: it has shown it can read that one.
        version = message.protocol_version
        if isinstance(message, Syn):
            if message.cluster_id != self.cluster_id:
                return BadCluster(protocol_version=version)
            digest, partial = self._read_digest(message.digest)
            self._report_heartbeats(digest, now)
            excluded = self._excluded(now)
            own_digest = self.state.compute_digest(excluded)
            if partial:
                # The peer takes partial digests (it sent one): keep half the datagram for
                # the delta.
                window = synack_window_budget(self.max_datagram_size)
                if not fits(own_digest, version, window):
                    own_digest = self._partial_digest(own_digest, version, window)
            cut = limit < self.max_datagram_size
            if (
                cut
                and version == PROTOCOL_V0
                and not partial
                and len(own_digest.nodes) == len(self.state)
            ):
                # A digest of every node, about to be cut: its size is the one the state
                # keeps, and an encoding of it would be thrown away.
                own_size = self.state.digest_bytes
            else:
                own_size = _sent_digest_size(own_digest, version)
            room = self.max_datagram_size - _HEADER_LEN - own_size
            if room < 1:
                # Our digest leaves no room even for an empty delta (its one end byte): no
                # SynAck can be built (nor sent). Short of that, the delta is empty.
                self.oversize_digests += 1
                return None
            if cut and (version != PROTOCOL_V0 or own_size > (limit - _HEADER_LEN) // 2):
                # (A version-0 digest within the half is what the cut would keep, node for
                # node: sent as it is, with the encoding the state keeps for it.)
                own_digest = self._digest_within(own_digest, (limit - _HEADER_LEN) // 2)
                own_size = _sent_digest_size(own_digest, version)
            budget = limit - _HEADER_LEN - own_size
            delta = self.state.compute_delta(
                digest, budget, excluded, self.rng, only_listed=partial
            )
            return SynAck(own_digest, delta, protocol_version=version)
        if isinstance(message, SynAck):
            digest, partial = self._read_digest(message.digest)
            self._report_heartbeats(digest, now)
            self._apply_delta(message.delta, now)
            excluded = self._excluded(now)
            delta = self.state.compute_delta(
                digest,
                limit - _HEADER_LEN,
                excluded,
                self.rng,
                only_listed=partial,
            )
            return Ack(delta, protocol_version=version)
        return None  # BadCluster: the peer refused us; nothing to answer (an Ack: above).

    def _digest_within(self, digest: Digest, size: int) -> Digest:
        """Our own node, then as many others as fit in ``size`` encoded bytes."""
        nodes = dict(digest.nodes)
        kept: dict[NodeId, NodeDigest] = {}
        own = nodes.pop(self.self_id, None)
        if own is not None:
            kept[self.self_id] = own
        used = digest_size(Digest(kept))
        for node, node_digest in nodes.items():
            used += digest_entry_size(node)  # what it adds to a version-0 digest
            if used > size:
                break
            kept[node] = node_digest
        return Digest(kept)

    def _read_digest(self, digest: Digest) -> tuple[Digest, bool]:
        """A received digest without the partial marker, and whether it was partial."""
        # The marker is never a node (port 0), whether or not we take part.
        digest, partial = strip_marker(digest)
        self._step_digest = SeenDigest(digest, partial)
        if not self.partial_digests:
            return digest, False
        if partial:
            self._note_behind(digest)
        return digest, partial

    def _apply_delta(self, delta: Delta, now: float) -> None:
        me = self.self_id
        my_name = me.node_id
        for nd in delta.node_deltas:
            # (The names compared first: NodeId's __eq__ is Python, a str's is not.)
            if nd.node.node_id == my_name and nd.node == me:
                # Only we write our own state. chitchat would apply a "newer" version of it
                # from a peer (a corrupted datagram, a forged one, a stale incarnation); we
                # refuse.
                self.state.refuse("self_delta")
                delta = Delta(tuple(nd for nd in delta.node_deltas if nd.node != me))
                break
        states = self.state.node_states
        before = (
            {
                nd.node: state.max_version
                for nd in delta.node_deltas
                if (state := states.get(nd.node)) is not None
            }
            if self.partial_digests
            else {}
        )
        applied: list[NodeDelta] = []
        self.state.apply_delta(delta, now, applied)
        if self.partial_digests:
            self._note_changes(delta, before)
        # A node whose delta changed nothing is as it was when last looked at, which was
        # when its state last changed: only a node that left can have lost its marker
        # since (collected as a tombstone or past its TTL), so it is looked at again.
        for node_delta in delta.node_deltas if self.left else applied:
            node = node_delta.node
            state = states.get(node)
            if state is None:
                continue
            if state.get(LEAVING_KEY) is not None:
                if node not in self.left:
                    self.left.add(node)
                    if self.detector.is_live(node):
                        self._died_since_sweep.append(node)
                    self.detector.declare_dead(node, now)
                    self._step_departures.append(node)
            elif node in self.left:
                # A marker its owner never set (forged) is gone once the owner republished
                # its state: judge the node by its heartbeats again.
                self.left.discard(node)

    def announce_leave(self) -> None:
        """Mark this node as leaving; gossip it before going away."""
        self.self_state.set(LEAVING_KEY, "1")

    # ------------------------------------------------------------------ rounds

    def start_round(
        self, now: float, *, answering: Callable[[SocketAddress], bool] | None = None
    ) -> RoundStep:
        """Begin a gossip round: pick targets, beat, collect old tombstones.

        ``answering`` (the runtime's knowledge of which addresses answered us) guards the
        choice of peers against made-up live nodes; see :func:`select_gossip_targets`."""
        me = self.self_id
        peers, live, dead, pool_in_order = self._round_pools()
        seeds = {a for a in self.seed_addrs if a != me.gossip_addr}
        targets = select_gossip_targets(
            self.rng, peers, live, dead, seeds, answering, pool_in_order=pool_in_order
        )
        own = self.self_state
        if own.max_version >= HEADROOM_CEILING or own.heartbeat >= HEADROOM_CEILING:
            # Unreachable by honest counting; a last line before the u64 edge.
            reason = REPAIR_VERSIONS_AT_EDGE
            if own.heartbeat >= HEADROOM_CEILING:
                reason = REPAIR_HEARTBEAT_AT_EDGE
            self._take_new_generation(reason, now)
        self._tick_heartbeat(now)
        self._rounds += 1
        self.publish_capabilities()
        self._publish_view()
        self.state.gc_keys_marked_for_deletion(self.marked_for_deletion_grace_period, now)
        return self._finish(RoundStep, targets=targets)

    def _round_pools(
        self,
    ) -> tuple[set[SocketAddress], set[SocketAddress], set[SocketAddress], list[SocketAddress]]:
        """The addresses of our peers, the live ones and the dead ones, and the pool a
        round picks from in order: made again only once the nodes known, the live or dead
        ones or our own id changed (a sweep's worth of rounds, in a settled cluster, where
        each round hashed and sorted every peer). Held by an engine alone in its state's
        process only."""
        me = self.self_id
        detector = self.detector
        nodes = self.state.wire_nodes
        key = (nodes, detector, detector.liveness_version, me)
        held = self._pools
        if (
            held is not None
            and held[0][0] is nodes
            and held[0][1] is detector
            and held[0][2] == key[2]
            and held[0][3] is me
        ):
            return held[1]
        # Set differences, not a test per node: NodeId's __ne__ is Python, these are C.
        peers = {n.gossip_addr for n in self.state.node_states.keys() - {me}}
        live = {n.gossip_addr for n in set(detector.live_nodes()) - {me}}
        dead = {n.gossip_addr for n in detector.dead_nodes()}
        pools = (peers, live, dead, _in_order(live if live else peers))
        if self.state.shared is None:
            # (Not in a process of many engines, a simulation: N engines holding sets of
            # N addresses each are N^2 entries of memory.)
            self._pools = (key, pools)
        return pools

    def update_liveness(self, now: float) -> SweepStep:
        """Judge every peer, then forget those dead for longer than the grace period."""
        # Only a sweep makes a node live, and between sweeps only a departure makes one
        # dead (a node is forgotten once dead): the live set now and the departures since
        # are the live set of the last sweep.
        was_live = set(self.detector.live_nodes())
        if self._died_since_sweep:
            was_live.update(self._died_since_sweep)
            self._died_since_sweep.clear()
        # Membership tests, not NodeId's Python __ne__ per node; the order stays the state's.
        skip = {self.self_id, *self.left}
        self.detector.update_liveness_of([n for n in self.state.node_states if n not in skip], now)
        is_live = set(self.detector.live_nodes())
        removed = []
        for node in self.detector.garbage_collect(now):
            if node != self.self_id:
                self.state.remove_node(node)
                self.left.discard(node)
                self._behind.pop(node, None)
                self._changed_at.discard(node)
                self._caps_peers.discard(node)
                removed.append(node)
        liveness = LivenessChanges(
            joined=tuple(sorted(is_live - was_live, key=sort_key_of)),
            died=tuple(sorted(was_live - is_live, key=sort_key_of)),
            removed=tuple(sorted(removed, key=sort_key_of)),
        )
        self._nodes_at_last_sweep = len(self.state.node_states)
        self._left_at_last_sweep = frozenset(self.left) if self.left else frozenset()
        self.detector.settle()
        return self._finish(SweepStep, liveness=liveness)

    def liveness_steady_until(self) -> float:
        """Before this time, :meth:`update_liveness` would change no verdict and remove no
        node, unless a message or a local call comes in between (ask again after each): a
        runtime may skip the sweeps before it. Early rather than late; -inf when a sweep is
        due at once (never swept, a node learnt, a departure marker come or gone)."""
        if len(self.state.node_states) != self._nodes_at_last_sweep or (
            self.left != self._left_at_last_sweep
        ):
            return -math.inf
        return self.detector.steady_until

    # ------------------------------------------------------------------ views

    def live_nodes(self) -> list[NodeId]:
        # A set difference and a sort in C: NodeId's __ne__ and __lt__ are Python.
        peers = set(self.detector.live_nodes()) - {self.self_id}
        return [self.self_id, *sorted(peers, key=sort_key_of)]

    def dead_nodes(self) -> list[NodeId]:
        """Dead and left nodes, but for older generations of a node live again (restarted):
        those are the same node to an operator."""
        folded = self.superseded_generations()
        return sorted((n for n in self.detector.dead_nodes() if n not in folded), key=sort_key_of)

    def superseded_generations(self) -> dict[NodeId, NodeId]:
        """Each known generation older than a live one of the same node id -> that one."""
        me = self.self_id
        return superseded(self.state.nodes(), lambda n: n == me or self.detector.is_live(n))

    def forget(self, node: NodeId) -> bool:
        """Drop a dead or left node from our view now, as the dead-node grace period would
        later. Local only. The state's memory of removed nodes keeps a peer's echo of it
        (an old heartbeat) from bringing it back; a heartbeat that rises again does. False
        when the node is unknown; raises :class:`NodeIsLive` for a live node (or us)."""
        if node == self.self_id or self.detector.is_live(node):
            raise NodeIsLive(f"{node} is live")
        if self.state.node_state(node) is None:
            return False
        self.state.remove_node(node)
        self.detector.forget(node)
        self.left.discard(node)
        return True

    def liveness(self, node: NodeId, now: float) -> Liveness:
        if node == self.self_id:
            return Liveness.SELF
        if self.detector.is_live(node):
            return Liveness.LIVE
        if self.detector.time_of_death(node) is None:
            return Liveness.UNKNOWN
        # A node that said goodbye stays left until it is removed: past half the grace
        # period it is no longer gossiped about, but it did not die.
        if node in self.left:
            return Liveness.LEFT
        if self.detector.is_scheduled_for_deletion(node, now):
            return Liveness.SCHEDULED_FOR_DELETION
        return Liveness.DEAD

    def drain_changes(self) -> list[StateChange]:
        return self.state.drain_changes()

    def _phi(self, node: NodeId, now: float) -> float | None:
        return None if node == self.self_id else self.detector.phi(node, now)

    def node_snapshot(self, node: NodeId, now: float) -> NodeSnapshot | None:
        """One node's full state (its key-values copied); None for a node not known."""
        state = self.state.node_state(node)
        if state is None:
            return None
        return NodeSnapshot(
            node=node,
            heartbeat=state.heartbeat,
            max_version=state.max_version,
            last_gc_version=state.last_gc_version,
            key_values=dict(state.key_values),
            liveness=self.liveness(node, now),
            phi=self._phi(node, now),
            last_update=state.last_update,
            discovered_at=state.discovered_at,
        )

    def liveness_readings(self, now: float) -> LivenessReadings:
        """Every node's liveness, heartbeat and phi, in no particular order: no key is
        copied, so this stays cheap enough to take several times a second."""
        return LivenessReadings(
            now,
            tuple(
                LivenessReading(
                    node,
                    self.liveness(node, now),
                    state.heartbeat,
                    state.max_version,
                    self._phi(node, now),
                    state.last_update,
                )
                for node, state in self.state.node_states.items()
            ),
        )

    def snapshot(self, now: float) -> ClusterSnapshot:
        nodes = (self.node_snapshot(node, now) for node in sorted(self.state.nodes()))
        return ClusterSnapshot(
            cluster_id=self.cluster_id,
            self_node=self.self_id,
            nodes=tuple(node for node in nodes if node is not None),
            seed_addrs=tuple(sorted(self.seed_addrs)),
            taken_at=now,
        )
