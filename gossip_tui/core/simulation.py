"""A deterministic, in-memory cluster of engines driven by a manual clock.

Every message goes through the real codec, so the simulation exercises exactly what
would cross the wire. Delivery is instantaneous and in order; a node can be silenced
(it neither sends nor receives) to watch the others declare it dead.

A datagram larger than the cluster's ``max_datagram_size`` is not delivered, as the kernel
refuses to send it (EMSGSIZE); a message an engine cannot handle is dropped, as the
runtime drops it. Both are counted in :class:`Traffic` instead of stopping the run.

Large clusters can start formed (``preformed=True``): every node already knows every
other, as after a long quiet spell, so what is measured is steady-state gossip rather than
the joining of thousands of nodes one digest at a time.

One concern, though over 400 lines: a cluster of engines in one process, with what makes
it affordable at thousands of nodes (one decoding per Syn, shared objects, and pre-forming
that copies peers' states where every engine would make the same ones).
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from itertools import compress, repeat
from operator import attrgetter, gt, is_

import attrs

from .codec import MAX_DATAGRAM_SIZE, PROTOCOL_V0, DecodeError, decode, encode, hold_nodes
from .digest_window import (
    CAPS_KEY,
    NodeNumbers,
    advertises_partial_digests,
)
from .engine import GossipEngine, LivenessChanges
from .failure_detector import FailureDetector, FailureDetectorConfig
from .messages import Delta, Digest, KeyValueMutation, Message, NodeDelta, NodeDigest, Syn, SynAck
from .models import NodeId, SocketAddress
from .receive import receive_message
from .state import (
    NodeState,
    SharedKeyValues,
    SharedObjects,
    StateLimits,
    digest_entry_size,
)

# The ways Simulation.preform brings a cluster to its formed state (see there).
PREFORM_METHODS = ("templates", "handler")


class ManualClock:
    """Time that moves only when told to."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sim_address(index: int) -> SocketAddress:
    return SocketAddress(ipaddress.IPv4Address("127.0.0.1"), 20_000 + index)


def short_name(index: int) -> str:
    return f"node-{index}"


_ADJECTIVES = ("brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "kind")
_COLOURS = ("amber", "azure", "coral", "ivory", "olive", "ruby", "teal", "umber")
_ANIMALS = ("badger", "falcon", "gecko", "heron", "lynx", "otter", "panda", "walrus")


def chitchat_test_name(index: int) -> str:
    """A node id as chitchat-test makes one: ``server:<addr>-<three random words>``."""
    rng = random.Random(index)
    words = (rng.choice(_ADJECTIVES), rng.choice(_COLOURS), rng.choice(_ANIMALS))
    return f"server:{sim_address(index)}-{'-'.join(words)}"


def quickwit_name(index: int) -> str:
    """A node id as Quickwit makes one by default, the host name: here a Kubernetes pod's."""
    return f"quickwit-searcher-{index}.quickwit-headless.default.svc.cluster.local"


NAMINGS: dict[str, Callable[[int], str]] = {
    "short": short_name,
    "chitchat-test": chitchat_test_name,
    "quickwit": quickwit_name,
}


def _kind(message: Message) -> str:
    return type(message).__name__


class Traffic:
    """What crossed (or failed to cross) the simulated wire."""

    def __init__(self) -> None:
        self.datagrams = 0
        self.bytes = 0
        self.largest = 0
        # Datagrams by message type; those over the size limit (not delivered); messages
        # an engine raised on, or could not answer because its own digest was too large.
        self.by_kind: Counter[str] = Counter()
        self.oversize: Counter[str] = Counter()
        self.largest_oversize = 0
        self.errors: Counter[str] = Counter()

    def as_dict(self) -> dict[str, object]:
        return {
            "datagrams": self.datagrams,
            "bytes": self.bytes,
            "largest": self.largest,
            "by_kind": dict(self.by_kind),
            "oversize": dict(self.oversize),
            "largest_oversize": self.largest_oversize,
            "errors": dict(self.errors),
        }


class Simulation:
    def __init__(
        self,
        size: int,
        *,
        seed: int = 0,
        gossip_interval: float = 1.0,
        cluster_id: str = "sim",
        failure_detector: FailureDetectorConfig | None = None,
        marked_for_deletion_grace_period: float = 3600.0,
        seeds: Iterable[int] = (0,),
        protocol_version: int = PROTOCOL_V0,
        max_datagram_size: int = MAX_DATAGRAM_SIZE,
        naming: Callable[[int], str] = short_name,
        partial_digests: bool | Callable[[int], bool] = True,
        preformed: bool = False,
        decode_replies: bool = False,
    ) -> None:
        self.clock = ManualClock()
        # Every datagram is encoded (its size is what is measured and what may not fit);
        # each distinct Syn is decoded once. A SynAck or an Ack goes to exactly one node, so
        # decoding it buys nothing the codec's own tests (golden vectors, fuzzing) do not
        # check: the receiver gets the message itself, which decode(encode(m)) equals,
        # unless ``decode_replies``. A third of a large round, and past the codec's node-id
        # cache (4,096 ids) decoded ids are no longer the engines' own objects, which makes
        # every dict lookup compare ids field by field.
        self.decode_replies = decode_replies
        self.gossip_interval = gossip_interval
        self.max_datagram_size = max_datagram_size
        self.rng = random.Random(seed)
        seed_addrs = [sim_address(i) for i in seeds]
        # The engines hold the same few digest entries of each node (its last heartbeats)
        # and the same values: one copy of each for the whole cluster, where each engine
        # would make its own (N^2 of them). A handful per node in circulation, and a score
        # of digest entries (see SharedObjects.max_digest_entries).
        shared = SharedObjects(8 * size + 1_024, 32 * size + 1_024)
        hold_nodes(size)
        self.engines: dict[SocketAddress, GossipEngine] = {}
        detector_rows: dict[NodeId, int] = {}
        # One numbering of the nodes for the engines' partial-digest bookkeeping (see
        # NodeNumbers).
        numbers = NodeNumbers()
        self.silenced: set[SocketAddress] = set()
        self.traffic = Traffic()
        self.liveness_log: list[tuple[float, SocketAddress, LivenessChanges]] = []
        for index in range(size):
            addr = sim_address(index)
            node = _interned(NodeId(naming(index), 1, addr))
            takes_part = partial_digests(index) if callable(partial_digests) else partial_digests
            self.engines[addr] = GossipEngine(
                node,
                cluster_id,
                now=self.clock.now,
                failure_detector=failure_detector,
                marked_for_deletion_grace_period=marked_for_deletion_grace_period,
                initial_key_values={"bind": str(addr)},
                seed_addrs=seed_addrs,
                rng=random.Random(self.rng.getrandbits(64)),
                max_datagram_size=max_datagram_size,
                protocol_version=protocol_version,
                partial_digests=takes_part,
                node_numbers=numbers,
            )
            engine = self.engines[addr]
            engine.state.shared = shared
            # One numbering of the nodes for every detector (see FailureDetector): made
            # before the engine hears anything.
            engine.detector = FailureDetector(engine.detector.config, rows=detector_rows)
        if preformed:
            self.preform()

    def engine(self, index: int) -> GossipEngine:
        return self.engines[sim_address(index)]

    def silence(self, index: int) -> None:
        self.silenced.add(sim_address(index))

    def preform(self, method: str = "templates") -> None:
        """Make every node know every other node's state, and count it live, as after a
        quiet spell: each engine takes three SynAcks (an interval apart) holding everyone's
        digest and state, through its ordinary handler. Each node has published its view
        of the live set, which every peer holds, so the rounds after publish nothing new.
        The clock is not moved.

        ``method`` "handler" hands every engine the whole of each SynAck; "templates" (the
        default, same end state) hands two engines of each kind the whole of it and gives
        the others the peers' states those two made of it (see _PeerCopier), then its
        digest alone (they hold its delta already): most of what the handler does per
        peer (learning it, applying its keys) is the same in every engine, N^2 times."""
        if method not in PREFORM_METHODS:
            raise ValueError(f"preform method {method!r} is not one of {PREFORM_METHODS}")
        now = self.clock.now
        engines = list(self.engines.values())
        owners = [(e.self_id, e.self_state) for e in engines]
        copier = _PeerCopier(engines) if method == "templates" else None
        # Three rising heartbeats: the first is never news, the next two make the one
        # interval a node needs to count as live. State goes with the first two: once
        # every node knows the cluster's size it may publish its capabilities and its
        # view (of the nodes it knows: all of them live once formed), which the second
        # delta then carries.
        for beat in range(3):
            at = now - (2 - beat) * self.gossip_interval
            if beat == 1:
                for engine in engines:
                    engine.publish_capabilities()
                    engine.publish_settled_view(engine.state.node_states.keys())
            digest = Digest(
                {
                    node: NodeDigest(
                        state.heartbeat + beat, state.last_gc_version, state.max_version
                    )
                    for node, state in owners
                }
            )
            delta = Delta(
                tuple(
                    NodeDelta(
                        node, 0, state.last_gc_version, tuple(_mutations(state)), state.max_version
                    )
                    for node, state in owners
                )
                if beat < 2
                else ()
            )
            message = SynAck(digest, delta)
            for engine in engines:
                given = message if copier is None else copier.give(engine, message)
                engine.handle_message(given, at)
        for engine in engines:
            engine.update_liveness(now)
            # Each was handed its own state too, which it refuses (and counts); and the
            # change records of a whole cluster are nobody's events.
            engine.state.rejected.clear()
            engine.drain_changes()

    def _send(self, datagram: bytes, kind: str) -> bool:
        """Count a datagram; False when it is too large to be sent at all."""
        traffic = self.traffic
        if len(datagram) > self.max_datagram_size:
            traffic.oversize[kind] += 1
            traffic.largest_oversize = max(traffic.largest_oversize, len(datagram))
            return False
        traffic.datagrams += 1
        traffic.bytes += len(datagram)
        traffic.largest = max(traffic.largest, len(datagram))
        return True

    def _deliver(
        self,
        sender: SocketAddress,
        target: SocketAddress,
        datagram: bytes,
        decoded: dict[bytes, Message] | None = None,
    ) -> None:
        queue: deque[tuple[SocketAddress, SocketAddress, bytes, str]] = deque(
            [(sender, target, datagram, "Syn")]
        )
        # Replies of this exchange by their datagram, handed over as they are (see
        # decode_replies).
        replies: dict[bytes, Message] = {}
        while queue:
            src, dst, data, kind = queue.popleft()
            if not self._send(data, kind):
                continue
            engine = self.engines.get(dst)
            if engine is None or dst in self.silenced or src in self.silenced:
                continue
            # A Syn goes to several targets as the same bytes: decode it once (decoding
            # is a pure function of the bytes and messages are immutable).
            message = decoded.get(data) if decoded is not None else None
            if message is None and replies and not self.decode_replies:
                message = replies.pop(data, None)
            if message is None:
                try:
                    message = decode(data)
                except DecodeError:
                    self.traffic.errors["undecodable"] += 1
                    continue
                if decoded is not None and isinstance(message, Syn):
                    decoded[data] = message
            self.traffic.by_kind[kind] += 1
            oversize_before = engine.oversize_digests
            try:
                reply = receive_message(engine, message, self.clock.now).reply
            except Exception as exc:  # as the runtime: drop it, count it, carry on
                self.traffic.errors[f"{_kind(message)}: {type(exc).__name__}"] += 1
                continue
            if engine.oversize_digests != oversize_before:
                self.traffic.errors["no SynAck: own digest fills a datagram"] += 1
            if reply is not None:
                datagram = encode(reply)
                replies[datagram] = reply
                queue.append((dst, src, datagram, _kind(reply)))

    def round(self) -> None:
        """One gossip interval: every node that is not silenced gossips once."""
        self.clock.advance(self.gossip_interval)
        now = self.clock.now
        order = list(self.engines)
        self.rng.shuffle(order)
        for addr in order:
            if addr in self.silenced:
                continue
            engine = self.engines[addr]
            # One encoding per distinct Syn of the round, as the runtime sends it.
            encoded: dict[int, tuple[Syn, bytes]] = {}
            decoded: dict[bytes, Message] = {}
            for target in engine.start_round(now).targets.all():
                syn = engine.create_syn(now, target)
                entry = encoded.get(id(syn))
                if entry is None:
                    entry = encoded[id(syn)] = (syn, encode(syn))
                self._deliver(addr, target, entry[1], decoded)
            engine.end_round_syns()
            changes = engine.update_liveness(now).liveness
            if changes:
                self.liveness_log.append((now, addr, changes))

    def run(self, rounds: int) -> None:
        for _ in range(rounds):
            self.round()

    def active(self) -> list[GossipEngine]:
        return [e for a, e in self.engines.items() if a not in self.silenced]

    def converged(self) -> bool:
        """Every active node holds the same key-values for every active node."""
        active = self.active()
        ids = [e.self_id for e in active]
        for node in ids:
            views = []
            for engine in active:
                state = engine.state.node_state(node)
                if state is None:
                    return False
                views.append((state.max_version, dict(state.visible_items())))
            if any(view != views[0] for view in views[1:]):
                return False
        return True

    def rounds_until(self, predicate: object, limit: int) -> int | None:
        """Run rounds until ``predicate()`` is true; the count, or None past ``limit``."""
        assert callable(predicate)
        for count in range(limit + 1):
            if predicate():
                return count
            self.round()
        return None


def _interned(node: NodeId) -> NodeId:
    """The node id object the codec hands out when it decodes ``node``: with the engines
    holding that very object, their dict lookups of decoded ids stop at the identity check
    instead of comparing two equal ids field by field (a third of a round's time)."""
    syn = decode(encode(Syn("", Digest({node: NodeDigest(0, 0, 0)}))))
    assert isinstance(syn, Syn)
    return next(iter(syn.digest.nodes))


def _mutations(state: NodeState) -> list[KeyValueMutation]:
    return [
        KeyValueMutation(key, value.value, value.version, value.status)
        for key, value in sorted(state.key_values.items(), key=lambda item: item[1].version)
    ]


# The NodeState slots _PeerCopier copies from a template's state of a node: all but the
# state's usage, which is its cluster state's, and its heartbeat and the time that rose,
# which the handler then takes from the digest itself (a copied heartbeat would be no news
# to it, and its failure detector would not hear of it).
# (The cohort holds the usage: the discovery time it also holds is copied by its name.)
_NOT_COPIED = frozenset({"_cohort", "heartbeat", "last_update"})
_COPIED_SLOTS = (*(n for n in NodeState.__slots__ if n not in _NOT_COPIED), "discovered_at")
_ALL_SLOTS = range(len(_COPIED_SLOTS))
# What a copied slot may hold: objects no state changes in place, which two states may
# then hold alike (shared key-values a state copies before writing to them; tuples of
# immutable items, a digest entry and its bytes, kept encodings). Anything else (a dict of
# its own, a state's key-values with a status time in them) is not copied.
_SHAREABLE = frozenset({int, float, str, type(None), tuple, NodeId, SharedKeyValues})
_max_version_of = attrgetter("max_version")
_size_of = attrgetter("size")


class _PeerCopier:
    """Gives an engine the states of its peers that its handler would make of a message
    (learning the nodes its digest names, applying its delta), copied from what two
    engines of its kind made of it through theirs: the templates, the first two of the
    kind, which take each message before the others. Engines of a kind (the same bounds
    and partial-digest setting) make the same state of each peer from the same message:
    node j's is copied from the first template's, or the second's for the first's own node.

    The engine's handler then takes the message's digest alone: it finds the states it
    would have made, takes the heartbeats (and tells its detector), beats, and answers.
    What the handler does with a delta beside the states the copier does: the usage those
    states add, and (partial digests) the records of the states that changed and of the
    peers that publish the capability. Reading a delta it holds already (to find nothing
    new in it) was a quarter of what was left.

    Only while it is safe: the templates refused nothing but their own state, and every
    slot copied holds what two states may share. Otherwise the kind takes this message
    and the rest whole through the handler (each state is exact after each message
    either way)."""

    def __init__(self, engines: Sequence[GossipEngine]) -> None:
        kinds: dict[tuple[bool, int | None, StateLimits], list[GossipEngine]] = {}
        for engine in engines:
            state = engine.state
            kind = (engine.partial_digests, state.max_digest_bytes, state.limits)
            kinds.setdefault(kind, []).append(engine)
        self._templates: dict[GossipEngine, tuple[GossipEngine, GossipEngine]] = {}
        for group in kinds.values():
            for engine in group[2:]:
                self._templates[engine] = (group[0], group[1])
        # What the templates made of the last message, by the first template (see _Made).
        self._made: dict[GossipEngine, _Made] = {}
        # What each engine was given last.
        self._given: dict[GossipEngine, _Made] = {}
        # The round in which each engine's copier noted every peer as changed (a node noted
        # again in the same round is as it was: see ChangeRounds).
        self._all_noted: dict[GossipEngine, int] = {}

    def give(self, engine: GossipEngine, message: SynAck) -> SynAck:
        """Give ``engine`` what its templates made of ``message`` (which they took): the
        message its handler is then to take."""
        pair = self._templates.get(engine)
        if pair is None:
            return message
        cluster = engine.state
        known = cluster.node_states
        if not message.delta.node_deltas and all(map(known.__contains__, message.digest.nodes)):
            return message  # heartbeats alone, of nodes known: the handler's own
        made = self._made_of(pair, message)
        if made is None:
            for other in [e for e, held in self._templates.items() if held is pair]:
                del self._templates[other]
            return message
        me = engine.self_id
        at = made.positions.get(me)
        peers = made.nodes if at is None else made.nodes[:at] + made.nodes[at + 1 :]
        learnt = len(known) == 1 and me in known  # (nothing known but us: all new)
        # (Our own node among those named: no other at our address.)
        at_once = (
            learnt
            and at is not None
            and made.alone_at_their_addresses
            and cluster.learn_alone_nodes(peers, made.entry_bytes - made.entry_sizes.get(me, 0))
        )
        if not at_once and not all(map(known.__contains__, peers)):
            learnt = True
            for node in peers:
                if node not in known:
                    cluster.node_state_or_init(node)  # in the digest's order, as the handler
        states = list(map(known.__getitem__, peers))
        watched = engine.partial_digests
        before = list(map(_max_version_of, states)) if watched else []
        held = sum(map(_size_of, states))
        # The slots whose values moved since what we were given last (a second delta
        # changes a state's key-values and versions: a third of the slots), or all.
        given, self._given[engine] = self._given.get(engine), made
        for slot in made.moved if given is not None and given is made.previous else _ALL_SLOTS:
            name, column = _COPIED_SLOTS[slot], made.columns[slot]
            values = column if at is None else column[:at] + column[at + 1 :]
            deque(map(setattr, states, repeat(name), values), 0)
        cluster.count_copied_size(sum(map(_size_of, states)) - held)
        if watched:
            # As the handler's _note_changes, in the delta's order (the digest's, here):
            # the states whose max version rose, and the peers that show the capability.
            round_number = engine.rounds_started
            changed: list[NodeId] = []
            if learnt or self._all_noted.get(engine) != round_number:
                risen = list(map(gt, map(_max_version_of, states), before))
                changed = list(compress(peers, risen))
                if all(risen):
                    self._all_noted[engine] = round_number
            ours = None if at is None else made.nodes[at]  # (the message's very id of us)
            advertising = made.advertising
            if ours is not None and ours in made.advertising_set:
                advertising = [node for node in advertising if node is not ours]
            # (Each alone at its address among the nodes we hold: those it names, us too.)
            alone = (
                made.alone_at_their_addresses and at is not None and len(known) == len(peers) + 1
            )
            engine.note_copied_changes(changed, advertising, alone)
        return made.digest_only

    def _made_of(self, pair: tuple[GossipEngine, GossipEngine], message: SynAck) -> _Made | None:
        first, second = pair
        held = self._made.get(first)
        if held is not None and held.message is message:
            return held
        if any(set(t.state.rejected) - {"self_delta"} for t in pair):
            return None
        nodes = list(message.digest.nodes)
        firsts, seconds = first.state.node_states, second.state.node_states
        own = first.self_id
        delta_nodes = [node_delta.node for node_delta in message.delta.node_deltas]
        if (
            own not in seconds
            or not all(node == own or node in firsts for node in nodes)
            or delta_nodes != nodes[: len(delta_nodes)]
        ):
            # (A delta's nodes are those of the digest, in its order: what the copier
            # does of the delta it does in the digest's order.)
            return None
        sources = [seconds[node] if node == own else firsts[node] for node in nodes]
        columns: list[list[object]] = []
        for name in _COPIED_SLOTS:
            column = list(map(attrgetter(name), sources))
            if not set(map(type, column)) <= _SHAREABLE:
                return None
            columns.append(column)
        previous = held if held is not None and held.nodes == nodes else None
        moved = [
            slot
            for slot, column in enumerate(columns)
            if previous is None or not all(map(is_, column, previous.columns[slot]))
        ]
        advertising = [
            node
            for node, state in zip(delta_nodes, sources, strict=False)
            if advertises_partial_digests(state.get(CAPS_KEY))
        ]
        shared = first.state.shared
        alone_at = {} if shared is None else shared.alone_at
        sizes = {node: digest_entry_size(node) for node in nodes}
        made = self._made[first] = _Made(
            message,
            SynAck(message.digest, Delta(), protocol_version=message.protocol_version),
            nodes,
            {node: at for at, node in enumerate(nodes)},
            columns,
            advertising,
            set(advertising),
            all((alone := alone_at.get(node.gossip_addr)) and alone[0] is node for node in nodes)
            and len({node.gossip_addr for node in nodes}) == len(nodes),
            sizes,
            sum(sizes.values()),
            previous,
            moved,
        )
        return made


@attrs.frozen
class _Made:
    """What a kind's templates made of one message."""

    message: SynAck
    # The message without its delta, which the copied engines then take.
    digest_only: SynAck
    # The nodes its digest names, in order; their positions; each copied slot's values.
    nodes: list[NodeId]
    positions: dict[NodeId, int]
    columns: list[list[object]]
    # The nodes of its delta whose state, once it took it, shows the capability, in order.
    advertising: list[NodeId]
    advertising_set: set[NodeId]
    # Whether each node it names is the one the process met first at its address, alone
    # there, the address of no other (see _learn_at_once).
    alone_at_their_addresses: bool
    # What each node it names takes in a digest, and all of them.
    entry_sizes: dict[NodeId, int]
    entry_bytes: int
    # What the templates made of the message before (naming the same nodes), and the
    # copied slots whose values moved since (by identity).
    previous: _Made | None
    moved: list[int]
