"""A digest read as columns (codec's usual read of a digest laid out as the last) is the
mapping of its entries, and an engine handles it as it handles the same digest as a dict."""

from __future__ import annotations

import copy
import pickle

import pytest

from gossip_tui.core import codec, state
from gossip_tui.core.codec import decode, encode
from gossip_tui.core.engine import GossipEngine
from gossip_tui.core.messages import Digest, DigestColumns, NodeDigest, Syn, SynAck
from tests.core._counting import count_calls_of
from tests.core.test_perf_guards import PEERS, _in_sync_pair


def _columns_syn(engine: GossipEngine, now: float) -> tuple[Syn, bytes]:
    """``engine``'s Syn, decoded as columns (its layout read once before)."""
    wire = encode(engine.create_syn(now))
    decode(wire)
    syn = decode(wire)
    assert isinstance(syn, Syn) and type(syn.digest.nodes) is DigestColumns
    return syn, wire


def test_a_columns_digest_reads_as_the_dict_of_its_entries() -> None:
    a, _b = _in_sync_pair()
    syn, wire = _columns_syn(a, 4.0)
    columns = syn.digest.nodes
    # The same datagram read entry by entry, as a new layout is: a dict in wire order.
    codec._LAYOUTS.clear()
    from_scratch = decode(wire)
    assert isinstance(from_scratch, Syn) and type(from_scratch.digest.nodes) is dict
    plain = from_scratch.digest.nodes
    assert len(columns) == len(plain) == PEERS + 2  # a, b and the peers
    assert list(columns) == list(plain) and list(columns.keys()) == list(plain.keys())
    assert list(columns.values()) == list(plain.values())
    assert list(columns.items()) == list(plain.items())
    assert columns.keys() == plain.keys() and columns.items() == plain.items()
    first = next(iter(plain))
    assert first in columns and columns[first] == plain[first]
    assert columns.get(first) == plain[first]
    absent = a.self_id.__class__("absent", 1, a.self_id.gossip_addr)
    assert absent not in columns and columns.get(absent) is None
    assert columns.get(absent, "no") == "no"
    with pytest.raises(KeyError):
        columns[absent]
    assert columns == plain and plain == columns
    assert syn.digest == Digest(plain)
    assert repr(columns) == repr(plain)
    # Copied or pickled, a plain dict (the columns hold the datagram).
    assert pickle.loads(pickle.dumps(columns)) == plain
    assert type(copy.copy(columns)) is dict and copy.deepcopy(columns) == plain
    assert pickle.loads(pickle.dumps(syn)) == syn
    # An entry asked for twice is the one object.
    assert columns[first] is columns[first]
    assert all(columns[node] is entry for node, entry in columns.items())
    # Each entry's bytes are those of the datagram, the node id's and three u64s.
    kept = syn.digest.received_entries
    assert kept is not None and len(kept) == len(plain)
    assert b"".join(kept) in wire
    assert kept[-1] == kept[len(kept) - 1] and kept[0:2] == [kept[0], kept[1]]
    with pytest.raises(IndexError):
        kept[len(kept)]


def _entries(engine: GossipEngine) -> list[tuple[object, ...]]:
    return [
        (node, s.heartbeat, s.last_update, s.max_version, s._entry[0], s._entry[1])
        for node, s in engine.state.node_states.items()
    ]


def _prepare(a: GossipEngine, b: GossipEngine) -> None:
    """Digests of every kind of entry: a's heartbeats risen for some nodes, b's for
    others (a's entry behind), a's versions behind b's for b itself."""
    states_a = list(a.state.node_states.values())
    states_b = list(b.state.node_states.values())
    for at, (state_a, state_b) in enumerate(zip(states_a, states_b, strict=True)):
        if state_a is a.self_state or state_b is b.self_state:
            continue
        if at % 3 == 0:
            state_a.heartbeat += 5
        elif at % 3 == 1:
            state_b.heartbeat += 5
    b.self_state.set("key", "value")


@pytest.mark.parametrize("slots", [True, False], ids=["slot-setters", "no-slot-setters"])
@pytest.mark.parametrize("kind", ["Syn", "SynAck"])
def test_an_engine_handles_a_columns_digest_as_the_same_digest_as_a_dict(
    kind: str, slots: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not slots:  # entries made by NodeDigest's own __init__ (a class the setters do not fit)
        monkeypatch.setattr(codec, "_DIGEST_SETTERS", None)
        monkeypatch.setattr(state, "DIGEST_SLOT_SETTERS", None)
    results = []
    for as_columns in (True, False):
        a, b = _in_sync_pair()
        _prepare(a, b)
        if kind == "Syn":
            message, _ = _columns_syn(a, 4.0)
            receiver = b
        else:
            wire = encode(b.handle_message(decode(encode(a.create_syn(4.0))), 4.0).reply)
            decode(wire)
            message = decode(wire)
            assert isinstance(message, SynAck)
            receiver = a
        assert type(message.digest.nodes) is DigestColumns
        if not as_columns:
            # The same entries and bytes as a plain dict: the path every other digest takes.
            kept = message.digest.received_entries
            assert kept is not None
            digest = Digest(dict(message.digest.nodes), received_entries=list(kept))
            message = (
                Syn(message.cluster_id, digest)
                if isinstance(message, Syn)
                else SynAck(digest, message.delta)
            )
        step = receiver.handle_message(message, 4.5)
        assert step.reply is not None
        results.append(
            (
                encode(step.reply),
                _entries(receiver),
                [receiver.detector.mean_interval(n) for n in receiver.state.nodes()],
                receiver.self_state.heartbeat,
            )
        )
    assert results[0] == results[1]


def test_a_columns_digest_showing_our_own_heartbeat_ahead_is_repaired_alike() -> None:
    # Our own entry in a peer's digest, above ours (forged): found by its position.
    a, b = _in_sync_pair()
    b.state.node_states[a.self_id].heartbeat = a.self_state.heartbeat + 50
    wire = encode(b.create_syn(4.0))
    decode(wire)
    syn = decode(wire)
    assert isinstance(syn, Syn) and type(syn.digest.nodes) is DigestColumns
    before = a.outrun_heartbeats
    a.handle_message(syn, 4.5)
    assert a.outrun_heartbeats == before + 1
    assert a.self_state.heartbeat > syn.digest.nodes[a.self_id].heartbeat


def test_a_digest_whose_ids_differ_from_the_layout_s_is_read_entry_by_entry() -> None:
    # The same sizes but another node at a position (a restarted peer's new generation
    # of the same length): not the layout's ids, so not read as columns.
    a, _b = _in_sync_pair()
    nodes = dict(a.create_syn(4.0).digest.nodes)
    wire = encode(Syn("c", Digest(nodes)))
    decode(wire)
    assert type(decode(wire).digest.nodes) is DigestColumns
    victim = next(n for n in nodes if n != a.self_id)
    other = victim.__class__(victim.node_id, victim.generation + 1, victim.gossip_addr)
    changed = {other if n == victim else n: nd for n, nd in nodes.items()}
    changed = dict(sorted(changed.items(), key=lambda item: item[0].sort_key()))
    syn = decode(encode(Syn("c", Digest(changed))))
    assert isinstance(syn, Syn) and dict(syn.digest.nodes) == changed
    assert NodeDigest(0, 0, 0) not in syn.digest.nodes.values()


def test_a_columns_digest_is_aligned_with_our_states_while_both_node_lists_hold() -> None:
    a, b = _in_sync_pair()
    syn, _ = _columns_syn(a, 4.0)
    columns = syn.digest.nodes
    assert isinstance(columns, DigestColumns)
    states = b.state
    assert states.aligned_states(columns) is not None
    assert states.aligned_states(columns) is not None  # (the same two lists: held)
    # Our nodes changed: the same digest no longer names exactly ours.
    newcomer = a.self_id.__class__("newcomer", 1, a.self_id.gossip_addr)
    states.node_state_or_init(newcomer)
    assert states.aligned_states(columns) is None
    states.remove_node(newcomer)
    assert states.aligned_states(columns) is not None
    # Another list of other nodes, of the same length: not aligned.
    other = DigestColumns(
        [newcomer, *list(columns)[1:]],
        {},
        columns.heartbeats,
        columns.last_gcs,
        columns.max_versions,
        columns.data,
        columns.slices,
    )
    assert states.aligned_states(other) is None


def test_a_digest_lacking_nothing_is_answered_with_no_delta_writer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An idle cluster's usual answer: the empty delta a writer finishes with, made once.
    a, b = _in_sync_pair()
    syn, _ = _columns_syn(a, 4.0)
    writer = state.DeltaWriter
    made = count_calls_of(monkeypatch, state, "DeltaWriter")
    delta = b.state.compute_delta(syn.digest, 60_000)
    assert made[0] == 0
    monkeypatch.undo()
    empty = writer(60_000).finish()
    assert delta == empty and delta.encoded == empty.encoded
    assert encode(SynAck(syn.digest, delta)) == encode(SynAck(syn.digest, empty))


def test_an_idle_exchange_s_step_is_made_without_finishing_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing recorded (no change, refusal, outrun, repair, departure): the step is its
    # reply and digest alone, as _finish would make it.
    a, b = _in_sync_pair()
    syn, _ = _columns_syn(a, 4.0)
    finished = count_calls_of(monkeypatch, GossipEngine, "_finish")
    step = b.handle_message(syn, 4.0)
    assert finished[0] == 0
    assert step.reply is not None and step.seen_digest is not None
    assert (step.changes, step.refusals, step.heartbeat_outruns) == ((), (), 0)
    assert (step.self_repairs, step.departures) == ((), ())
    # A step that records something still goes through it.
    b.self_state.set("key", "value")
    syn, _ = _columns_syn(a, 4.5)
    assert b.handle_message(syn, 4.5).changes
    assert finished[0] == 1
