"""Guards on the core's per-entry work (issues #15-#17), counted rather than timed: what a
forming node pays for every node of every digest it receives, and a sweep for every node
it judges. Each names a Python call per entry that is gone and must not come back
(scripts/bench/core_rounds.py gives the calls per node-round and per exchange)."""

from __future__ import annotations

import copy
import ipaddress
import math
import pickle
from typing import Any

import pytest

from gossip_tui.core import codec
from gossip_tui.core.codec import decode, encode
from gossip_tui.core.engine import GossipEngine
from gossip_tui.core.failure_detector import FailureDetector, FailureDetectorConfig
from gossip_tui.core.messages import Digest, NodeDigest, Syn
from gossip_tui.core.models import NodeId, SocketAddress
from gossip_tui.core.state import ClusterState, SharedObjects
from tests.core._counting import count_calls, engine_with_live_peers

PEERS = 100


def _addr(i: int) -> SocketAddress:
    return SocketAddress(ipaddress.ip_address("127.0.0.1"), 10_000 + i)


def _risen_heartbeats() -> tuple[GossipEngine, GossipEngine, Syn]:
    """Two engines that know the same live peers, and a's Syn to b (through the codec) in
    which every heartbeat b knows has risen by 5, as between two digests of a forming or
    idle cluster."""
    a = _engine_with_live_peers(PEERS)
    b = _engine_with_live_peers(PEERS)
    for node, held in a.state.node_states.items():
        peer = b.state.node_states.get(node)
        if peer is not None:
            held.heartbeat = peer.heartbeat + 5
    syn = decode(encode(a.create_syn(3.0)))
    assert isinstance(syn, Syn)
    return a, b, syn


_SORTING = ("sort_key", "__lt__", "<lambda>")


def _engine_with_live_peers(count: int) -> GossipEngine:
    return engine_with_live_peers(count, _addr)


def _beat(engine: GossipEngine) -> None:
    """Every node ``engine`` holds beats once, as between two digests of an idle cluster."""
    for held in engine.state.node_states.values():
        held.heartbeat += 1


def _risen_syn_after_layouts() -> tuple[Syn, bytes]:
    """A Syn (and its bytes) whose every heartbeat rose, after three such digests of the
    same nodes were decoded: the codec holds their layout, read in C."""
    engine = _engine_with_live_peers(PEERS)
    for _ in range(3):
        _beat(engine)
        decode(encode(engine.create_syn(3.0)))
    _beat(engine)
    sent = engine.create_syn(3.0)
    return sent, encode(sent)


def test_looking_up_a_node_id_runs_no_python_hash() -> None:
    # Node ids key every table of the core; attrs' __hash__ was a Python call per lookup
    # (~2,000 per forming node-round at 100 nodes). (The same objects: the codec hands
    # out the ids it has seen, so a lookup stops at the identity check, with no __eq__.)
    nodes = [NodeId(f"n-{i}", 1, _addr(i)) for i in range(PEERS)]
    table = dict.fromkeys(nodes, 0)
    # The lambda and its comprehension: no call per node.
    assert count_calls(lambda: [table[n] for n in nodes]) == 2
    assert count_calls(lambda: {n.gossip_addr for n in nodes}) == 2
    # Equal ids hash alike, unequal ones apart, and a copy or an unpickled one is hashed
    # anew (another process hashes strings differently).
    twins = [NodeId(n.node_id, n.generation, SocketAddress(n.gossip_addr.ip, n.gossip_addr.port))
             for n in nodes]  # fmt: skip
    assert all(hash(a) == hash(b) and table[b] == 0 for a, b in zip(nodes, twins, strict=True))
    assert len({hash(n) for n in nodes}) == PEERS
    copied = pickle.loads(pickle.dumps(nodes[0]))
    assert copied == nodes[0] and hash(copied) == hash(nodes[0])
    assert copy.deepcopy(nodes[0]) in table


def test_a_digest_whose_heartbeats_rose_is_reported_without_a_call_per_heartbeat() -> None:
    # Every heartbeat of a forming (or idle) cluster rises between two digests: the
    # detector took five calls per heartbeat (report, window, interval, crossing, mean),
    # then one (the window's report_heartbeat); its batch updates the windows in one loop.
    _a, b, syn = _risen_heartbeats()
    calls = count_calls(lambda: b.handle_message(syn, 3.0), where="failure_detector.py")
    # The batch, its one loop over the windows, and the few calls around the reply.
    assert calls <= 10, calls
    assert b.detector.steady_until < 3.0 + 8 * 5.0  # the crossings were worked out


class _CountedHashes:
    """A node that counts how often it is hashed (a NodeId hashes in C: uncountable)."""

    hashes = 0

    def __hash__(self) -> int:
        _CountedHashes.hashes += 1
        return id(self)


def test_a_batch_of_the_last_batch_s_live_nodes_hashes_none_of_them() -> None:
    # An idle cluster's digests all rise alike: the detector's batch is the same nodes
    # again and again. Their windows and liveness are the last batch's while no node was
    # judged, died or left, where looking each up and asking its liveness hashed it twice.
    nodes: list[Any] = [_CountedHashes() for _ in range(PEERS)]
    detector = FailureDetector(FailureDetectorConfig())
    for t in (0.0, 1.0, 2.0):
        detector.report_heartbeats(list(nodes), t)
    detector.update_liveness_of(nodes, 2.5)
    detector.report_heartbeats(list(nodes), 3.0)
    _CountedHashes.hashes = 0
    detector.report_heartbeats(list(nodes), 4.0)
    assert _CountedHashes.hashes == 0, _CountedHashes.hashes
    assert detector.steady_until < 4.0 + 8 * 5.0  # the crossings were worked out
    # A sweep in between: looked up again (a node may have died).
    detector.update_liveness_of(nodes[:1], 100.0)
    detector.report_heartbeats(list(nodes), 101.0)
    assert _CountedHashes.hashes >= PEERS
    assert detector.steady_until == -math.inf and not detector.is_live(nodes[0])


def test_a_sweep_judges_every_node_without_a_call_per_node() -> None:
    engine = _engine_with_live_peers(PEERS)
    calls = count_calls(lambda: engine.update_liveness(3.0), where="failure_detector.py")
    assert calls <= 10, calls  # three per node before, and one more per live node
    assert len(engine.live_nodes()) == PEERS + 1


def test_a_round_and_a_sweep_sort_nodes_and_addresses_without_python_keys() -> None:
    engine = _engine_with_live_peers(PEERS)
    calls = count_calls(
        lambda: (engine.start_round(3.0), engine.update_liveness(3.0), engine.live_nodes()),
        where="models.py",
        names=_SORTING,
    )
    assert calls == 0, calls  # sort_key or __lt__ per address, per node


def test_learning_a_node_sorts_the_wire_order_without_python_keys() -> None:
    state = ClusterState()
    for i in range(PEERS):
        state.node_state_or_init(NodeId(f"n-{PEERS - i}", 1, _addr(i)))
    state.compute_digest()
    state.node_state_or_init(NodeId("n-0", 1, _addr(PEERS)))
    # The new node's entry reads its sort key once (the codec keeps it); the wire order is
    # sorted again with no call per node (a forming node learns nodes every message).
    calls = count_calls(state.compute_digest, names=_SORTING)
    assert calls == 1, calls
    assert list(state.compute_digest().nodes) != state._wire_nodes  # (node_states' order)
    assert state._wire_nodes == sorted(state.nodes())


def test_risen_heartbeats_are_taken_without_a_call_per_node() -> None:
    a, b, syn = _risen_heartbeats()
    calls = count_calls(lambda: b.handle_message(syn, 3.0), names=("try_set_heartbeat",))
    assert calls == 0, calls
    assert all(
        b.state.node_states[node].heartbeat == held.heartbeat
        and b.state.node_states[node].last_update == 3.0
        for node, held in a.state.node_states.items()
        if node in b.state.node_states and node != b.self_id
    )


def test_a_shared_digest_entry_is_taken_without_a_call_per_node() -> None:
    # In one process (the Simulation) another state made the entry already: taken from the
    # shared table in place, where SharedObjects.renew and forget_digest_entry took two
    # calls per node per digest.
    shared = SharedObjects(10_000)
    states = []
    nodes = [NodeId(f"n-{i}", 1, _addr(i)) for i in range(PEERS)]
    for _ in range(2):
        held = ClusterState()
        held.shared = shared
        for node in nodes:
            held.node_state_or_init(node).heartbeat = 1
        held.compute_digest()
        for node in nodes:
            held.node_states[node].heartbeat = 2
        states.append(held)
    first = states[0].compute_digest()
    calls = count_calls(states[1].compute_digest, names=("renew", "forget_digest_entry"))
    assert calls == 0, calls
    second = states[1].compute_digest()
    assert all(first.nodes[n] is second.nodes[n] for n in nodes)
    assert encode(Syn("c", first)) == encode(Syn("c", second))


def test_a_digest_whose_every_heartbeat_rose_is_decoded_without_a_call_per_entry() -> None:
    # An idle cluster's digest: laid out as the last one, every entry new (its heartbeat
    # rose) but none of its node ids. Cut, looked up and filled in C (issue 17), where each
    # entry was parsed by two Python calls (_read_entry, _read_node_id).
    engine = _engine_with_live_peers(PEERS)
    decode(encode(engine.create_syn(3.0)))
    _beat(engine)
    sent = engine.create_syn(3.0)
    wire = encode(sent)
    decoded: list[object] = []
    calls = count_calls(lambda: decoded.append(decode(wire)), where="codec.py")
    assert calls <= 10, calls
    assert decoded == [sent]
    # Decoded again, the same message.
    assert decode(wire) == sent


def test_a_layout_s_node_ids_are_checked_in_place_not_looked_up_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Once a digest of the layout was read that way, the next one's ids are compared where
    # the layout had them (bytes.startswith on each entry), not cut and looked up.
    sent, wire = _risen_syn_after_layouts()
    lookups = [0]

    class _Counted(dict[bytes, NodeId]):
        def get(self, key: bytes, default: Any = None) -> Any:
            lookups[0] += 1
            return super().get(key, default)

    monkeypatch.setattr(codec, "_NODES_BY_WIRE", _Counted(codec._NODES_BY_WIRE))
    assert decode(wire) == sent
    assert lookups[0] == 0, lookups[0]


def test_a_digest_whose_every_entry_is_new_takes_the_layout_s_lists_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every entry of an idle cluster's digest is new (its heartbeat rose): the layout's
    # id bytes and node ids are then taken as whole lists, where picking them entry by entry
    # (list.__getitem__ through map, three a node) was a C call per entry each.
    sent, wire = _risen_syn_after_layouts()
    picked = [0]

    class _Counted(list[Any]):
        def __getitem__(self, at: Any) -> Any:
            picked[0] += 1
            return super().__getitem__(at)

    unpacked = [0]

    class _CountedStruct:
        def __init__(self, numbers: Any) -> None:
            self.numbers = numbers

        def unpack_from(self, data: bytes) -> Any:
            unpacked[0] += 1
            return self.numbers.unpack_from(data)

    for layout in codec._LAYOUTS.values():
        monkeypatch.setattr(layout, "nodes", _Counted(layout.nodes))
        monkeypatch.setattr(layout, "id_bytes", _Counted(layout.id_bytes))
        if layout.numbers is not None:
            monkeypatch.setattr(layout, "numbers", _CountedStruct(layout.numbers))
    assert decode(wire) == sent
    assert picked[0] == 0, picked[0]
    # The ids and the numbers read in one unpack (and the ids compared as one list), where
    # the ids were each checked by bytes.startswith and the numbers unpacked apart.
    assert unpacked[0] == 0, unpacked[0]


def _fresh_entry_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry caches empty, with a lone node's room (a simulation run before may have
    raised it with hold_nodes); the room as it was once the test ends."""
    monkeypatch.setattr(codec, "_entry_room", codec._entry_room)
    monkeypatch.setattr(codec, "_ENTRY_CACHE_MAX", 4_096)
    monkeypatch.setattr(codec, "_NODE_CACHE_MAX", 4_096)
    monkeypatch.setattr(codec, "_KV_RUN_CACHE_MAX", codec._KV_RUN_CACHE_MAX)
    monkeypatch.setattr(codec, "_entry_room_floor", codec._ENTRY_ROOM_SLACK)
    for cache in (codec._NODES_BY_WIRE, codec._ENTRIES_BY_WIRE, codec._LAYOUTS):
        cache.clear()  # caches only: emptying them changes what is parsed, not the result
    codec._set_entry_room()


def _ids_parsed_decoding_again(count: int, held: bool, monkeypatch: pytest.MonkeyPatch) -> int:
    """The node ids parsed when a Syn naming ``count`` nodes is decoded a second time,
    the caches' room shrunk to 64 (and raised for ``count`` nodes if ``held``)."""
    _fresh_entry_caches(monkeypatch)
    for name in ("_NODE_CACHE_MAX", "_ENTRY_CACHE_MAX", "_KV_RUN_CACHE_MAX"):
        monkeypatch.setattr(codec, name, 64)
    codec._set_entry_room()
    if held:
        codec.hold_nodes(count)
    wire = encode(_engine_with_live_peers(count).create_syn(3.0))
    first = decode(wire)
    assert decode(wire) == first
    return count_calls(lambda: decode(wire), names=("_parse_node_id",))


def test_a_process_that_holds_more_nodes_than_the_caches_parses_each_id_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Past its room a cache empties at every digest: a simulation of 5,000 nodes with the
    # default 4,096 places would parse every id of every digest again.
    assert _ids_parsed_decoding_again(200, False, monkeypatch) > 100
    assert _ids_parsed_decoding_again(200, True, monkeypatch) == 0


def test_decoded_entries_held_are_bounded_by_the_nodes_known(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A settled cluster's digests bring each node's next heartbeat: with a fixed room of
    # 4,096 a node of a 100-node cluster held ~4,000 old entries (0.8 MiB); the room is
    # four a node known (see the next test for why not two).
    _fresh_entry_caches(monkeypatch)
    count = 200
    engine = _engine_with_live_peers(count)
    for _ in range(15):
        _beat(engine)
        sent = engine.create_syn(3.0)
        assert decode(encode(sent)) == sent
    known = len(codec._NODES_BY_WIRE)
    assert known <= count + 1
    assert len(codec._ENTRIES_BY_WIRE) <= 4 * known + codec._ENTRY_ROOM_SLACK
    # The last digest's entries are all held: decoding it again parses none of them.
    assert count_calls(lambda: decode(encode(sent)), names=("_read_entry",)) == 0


def test_entries_of_views_that_lag_a_few_heartbeats_are_not_parsed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A real idle node's digests (scripts/bench/idle_replay.py, 100 nodes at 1 s): of each
    # node, a peer shows the heartbeat we hold (38 % of entries) or one a beat or a few
    # behind (36 %) as often as a risen one (25 %). None of them is parsed again: a digest
    # of the same nodes is read as columns, whatever its numbers (with room for two
    # entries a node in the entry cache, the lagging ones had been parsed anew: 48 %).
    _fresh_entry_caches(monkeypatch)
    loopback = ipaddress.IPv4Address("127.0.0.1")
    nodes = [NodeId(f"node-{i:03}", 1, SocketAddress(loopback, 10_000 + i)) for i in range(100)]
    for heartbeat in range(1, 7):  # each node beats once a round
        decode(encode(Syn("c", Digest({node: NodeDigest(heartbeat, 0, 0) for node in nodes}))))
    # Views lagging by up to three beats, as peers' views do.
    lagging = {node: NodeDigest(6 - i % 4, 0, 0) for i, node in enumerate(nodes)}
    wire = encode(Syn("c", Digest(lagging)))
    parsed = [0]
    read_entry = codec._read_entry

    def counted(*args: Any) -> Any:
        parsed[0] += 1
        return read_entry(*args)

    monkeypatch.setattr(codec, "_read_entry", counted)
    received = decode(wire)
    assert parsed[0] == 0, parsed[0]
    assert isinstance(received, Syn) and dict(received.digest.nodes) == lagging


def test_decoded_entries_held_stay_bounded_under_a_flood_of_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Digests of ever new node ids: both caches keep within their bounds.
    _fresh_entry_caches(monkeypatch)
    loopback = ipaddress.IPv4Address("127.0.0.2")
    for flood in range(25):
        engine = engine_with_live_peers(
            200, lambda i, f=flood: SocketAddress(loopback, 200 * f + i + 1)
        )
        sent = engine.create_syn(3.0)
        assert decode(encode(sent)) == sent
        assert len(codec._NODES_BY_WIRE) <= codec._NODE_CACHE_MAX
        assert len(codec._ENTRIES_BY_WIRE) <= min(
            codec._ENTRY_CACHE_MAX, 4 * len(codec._NODES_BY_WIRE) + codec._ENTRY_ROOM_SLACK
        )
