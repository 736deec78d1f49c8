"""Cluster-wide readings from the digests peers send anyway (gossip_tui.core.agreement):
propagation of our own keys, the view summary key and its publishing rule, agreement
groups. The manual clock throughout: time is a parameter."""

from __future__ import annotations

import pytest

from gossip_tui.core.agreement import (
    MAX_PEER_VIEWS,
    VIEW_KEY,
    VIEW_MAX_DELAY_ROUNDS,
    VIEW_SETTLE_ROUNDS,
    PeerReport,
    PeerViews,
    SeenDigest,
    ViewPublisher,
    ViewSource,
    ViewSummary,
    is_view_summary,
    read_agreement,
    read_propagation,
    sender_of,
    summarize,
)
from gossip_tui.core.digest_window import PARTIAL_MARKER
from gossip_tui.core.engine import GossipEngine
from gossip_tui.core.messages import Ack, Delta, Digest, NodeDigest, Syn, SynAck
from gossip_tui.core.models import KeyStatus, NodeId, SocketAddress, VersionedValue
from gossip_tui.core.state import KeyChange


def addr(i: int) -> SocketAddress:
    return SocketAddress.parse(f"127.0.0.1:{10_000 + i}")


def node(i: int, generation: int = 1) -> NodeId:
    return NodeId(f"node-{i}", generation, addr(i))


# -- the summary --------------------------------------------------------------------------


def test_a_summary_is_the_same_in_any_order_and_in_any_process() -> None:
    ids = [node(0), node(1), node(2)]
    assert summarize(ids) == summarize(list(reversed(ids))) == summarize(set(ids))
    # A literal: Python's salted hash() would differ from one process to the next, and
    # nodes compare the summaries they publish.
    assert summarize(ids).encode() == "1dfc4332:3"
    assert summarize(ids) != summarize([node(0), node(1), node(2, generation=2)])
    assert summarize([]).count == 0


@pytest.mark.parametrize(
    "text",
    [
        *(None, "", "1dfc4332", "1dfc4332:", "1DFC4332:3", "1dfc433:3", "zzzzzzzz:3"),
        *("1dfc4332:-1", "1dfc4332:3:4", "1dfc4332:" + "9" * 40, "1dfc4332: 3"),
        # Digits str.isdigit takes and int refuses: a peer's value must not raise (the
        # receive path asks this of every message's sender, before the reply goes).
        *("1dfc4332:²", "1dfc4332:3²", "1dfc4332:3\n", "\uff11dfc4332:3"),
    ],
)
def test_a_published_value_that_is_no_summary_reads_as_none(text: str | None) -> None:
    assert ViewSummary.parse(text) is None
    assert not is_view_summary(text)


def test_a_summary_reads_back_from_its_encoding() -> None:
    summary = summarize([node(0), node(1)])
    assert ViewSummary.parse(summary.encode()) == summary
    assert is_view_summary(summary.encode())
    assert ViewSummary.parse("00000000:999999999") == ViewSummary("00000000", 999_999_999)
    # Decimal digits of other scripts read as int reads them, as before.
    assert ViewSummary.parse("00000000:\u0663") == ViewSummary("00000000", 3)


# -- the publishing rule -------------------------------------------------------------------


def test_a_view_is_published_once_it_held_still_for_the_settle_rounds() -> None:
    publisher = ViewPublisher()
    live = {node(0), node(1)}
    published = [publisher.next_value(live, round_number) for round_number in range(1, 10)]
    expected = summarize(live).encode()
    assert published[VIEW_SETTLE_ROUNDS] == expected  # round 1 + VIEW_SETTLE_ROUNDS
    assert [p for p in published if p is not None] == [expected]  # once, never again


def test_a_converging_view_is_not_published_every_round() -> None:
    # A node learning one more peer per round publishes nothing until the set settles...
    publisher = ViewPublisher()
    live = {node(0)}
    values = []
    for round_number in range(1, VIEW_MAX_DELAY_ROUNDS):
        live.add(node(round_number))
        values.append(publisher.next_value(live, round_number))
    assert values == [None] * len(values)
    # ...and then, once it has held still, one new value.
    steady = [publisher.next_value(live, r) for r in range(VIEW_MAX_DELAY_ROUNDS, 30)]
    assert [v for v in steady if v is not None] == [summarize(live).encode()]


def test_a_view_that_never_settles_is_published_after_the_max_delay() -> None:
    publisher = ViewPublisher()
    published_at = []
    for round_number in range(1, 3 * VIEW_MAX_DELAY_ROUNDS + 1):
        live = {node(0), node(round_number)}  # a different set every round
        if publisher.next_value(live, round_number) is not None:
            published_at.append(round_number)
    # Each time VIEW_MAX_DELAY_ROUNDS after it first differed from the one published.
    first = 1 + VIEW_MAX_DELAY_ROUNDS
    assert published_at == [first, first + 1 + VIEW_MAX_DELAY_ROUNDS]


def test_a_view_that_goes_back_to_the_published_one_is_not_republished() -> None:
    publisher = ViewPublisher()
    steady, other = {node(0), node(1)}, {node(0)}
    for round_number in range(1, 6):
        publisher.next_value(steady, round_number)
    assert publisher.published == summarize(steady).encode()
    assert publisher.next_value(other, 6) is None  # a blip of one round
    assert all(publisher.next_value(steady, r) is None for r in range(7, 40))


def test_the_engine_publishes_the_view_key_by_the_rule() -> None:
    engine = GossipEngine(node(0), "c", now=0.0)
    for round_number in range(1, VIEW_SETTLE_ROUNDS + 1):
        engine.start_round(float(round_number))
        assert engine.self_state.get(VIEW_KEY) is None
    step = engine.start_round(float(VIEW_SETTLE_ROUNDS + 1))
    assert engine.self_state.get(VIEW_KEY) == summarize([node(0)]).encode()
    assert [c.key for c in step.changes if isinstance(c, KeyChange)] == [VIEW_KEY]
    version = engine.self_state.max_version
    for round_number in range(VIEW_SETTLE_ROUNDS + 2, 40):
        engine.start_round(float(round_number))
    assert engine.self_state.max_version == version  # no churn while nothing changes


# -- what a digest says -------------------------------------------------------------------


def test_a_syn_and_a_synack_step_say_which_digest_they_carried() -> None:
    us = GossipEngine(node(0), "c", now=0.0, initial_key_values={"a": "1"})
    peer = GossipEngine(node(1), "c", now=0.0)
    syn = peer.create_syn(1.0)
    step = us.handle_message(syn, 1.0)
    assert step.seen_digest == SeenDigest(syn.digest, partial=False)
    assert isinstance(step.reply, SynAck)
    back = peer.handle_message(step.reply, 1.1)
    assert back.seen_digest is not None and back.seen_digest.digest.nodes[node(0)].max_version
    assert isinstance(back.reply, Ack)
    assert us.handle_message(back.reply, 1.2).seen_digest is None
    # Another cluster's digest is not read at all.
    assert us.handle_message(Syn("other", syn.digest), 1.3).seen_digest is None


def test_a_partial_digest_is_said_to_be_partial() -> None:
    us = GossipEngine(node(0), "c", now=0.0)
    digest = Digest({PARTIAL_MARKER: NodeDigest(0, 0, 0), node(1): NodeDigest(3, 0, 0)})
    seen = us.handle_message(Syn("c", digest), 1.0).seen_digest
    assert seen is not None and seen.partial
    assert PARTIAL_MARKER not in seen.digest.nodes


def test_the_sender_is_the_listed_node_at_the_source_address() -> None:
    digest = Digest(
        {
            node(0): NodeDigest(5, 0, 7),
            node(1): NodeDigest(9, 0, 0),
            node(1, generation=2): NodeDigest(2, 0, 0),  # restarted: the newest wins
            node(2): NodeDigest(4, 0, 0),
        }
    )
    assert sender_of(digest, addr(1), node(0)) == node(1, generation=2)
    assert sender_of(digest, addr(2), node(0)) == node(2)
    assert sender_of(digest, addr(0), node(0)) is None  # never ourselves
    assert sender_of(digest, addr(9), node(0)) is None  # behind a proxy: unattributed


def _noted_sender(engine: GossipEngine, digest: Digest, source: SocketAddress) -> object:
    """The sender PeerViews finds for ``digest`` from ``source`` once ``engine`` took it
    in a Syn, with the state's nodes by address (as the node feeds it)."""
    seen = engine.handle_message(Syn("c", digest), 5.0).seen_digest
    assert seen is not None
    views = PeerViews()
    return views.note(seen, source, engine.self_id, 5.0, known_at=engine.state.nodes_at)


@pytest.mark.parametrize(
    "case",
    ["plain", "restarted", "refused newest", "same generation", "none there", "ourselves"],
)
def test_the_sender_found_by_address_is_the_one_the_walk_finds(case: str) -> None:
    # The lookup in the state's nodes by address must name exactly whom sender_of names,
    # also for nodes the state refused and for ties that only the digest's order settles.
    from gossip_tui.core.state import StateLimits

    me = node(0)
    entries = {me: NodeDigest(1, 0, 0), node(2): NodeDigest(4, 0, 0)}
    limits = None
    source = addr(1)
    if case == "plain":
        entries[node(1)] = NodeDigest(9, 0, 0)
    elif case == "restarted":
        entries[node(1)] = NodeDigest(9, 0, 0)
        entries[node(1, generation=2)] = NodeDigest(2, 0, 0)
    elif case == "refused newest":
        # The newest generation is listed last and refused (the state is full): the walk
        # still names it, and so must the lookup.
        entries[node(1)] = NodeDigest(9, 0, 0)
        entries[node(1, generation=5)] = NodeDigest(2, 0, 0)
        limits = StateLimits(max_nodes=3)
    elif case == "same generation":
        # Two names at one address and generation: the digest's order decides, which is
        # not the order the state learnt them in.
        entries[NodeId("b-twin", 1, addr(1))] = NodeDigest(3, 0, 0)
        entries[NodeId("a-twin", 1, addr(1))] = NodeDigest(3, 0, 0)
    elif case == "none there":
        source = addr(9)
    else:
        # From our own address: a heartbeat at the u64 edge makes us take a new generation
        # (the old one leaves the state during the step), and a twin sits at our address.
        source = me.gossip_addr
        entries[me] = NodeDigest(2**63, 0, 0)
        entries[NodeId("a-twin", 0, me.gossip_addr)] = NodeDigest(3, 0, 0)
    digest = Digest(entries)
    engine = GossipEngine(me, "c", now=0.0, limits=limits)
    if case == "refused newest":
        engine.state.node_state_or_init(node(1)).heartbeat = 1  # known before the flood
    if case == "same generation":
        engine.state.node_state_or_init(NodeId("a-twin", 1, addr(1))).heartbeat = 1
    noted = _noted_sender(engine, digest, source)
    expected = sender_of(digest, source, engine.self_id)
    assert noted == expected
    if case == "ourselves":
        assert engine.self_id.generation == 2 and expected == me
    if case == "refused newest":
        assert expected == node(1, generation=5)
        assert engine.state.node_state(expected) is None


def test_the_table_keeps_each_peers_last_report_about_us() -> None:
    views = PeerViews()
    me = node(0)
    first = Digest({me: NodeDigest(5, 1, 3), node(1): NodeDigest(9, 0, 0)})
    assert views.note(SeenDigest(first), addr(1), me, 10.0) == node(1)
    assert views.reports[node(1)] == PeerReport(me, 3, 1, 10.0)
    assert views.digest_views[node(1)] == summarize([me, node(1)])
    later = Digest(
        {me: NodeDigest(6, 1, 8), node(1): NodeDigest(10, 0, 0), node(2): NodeDigest(1, 0, 0)}
    )
    views.note(SeenDigest(later), addr(1), me, 11.0)
    assert views.reports[node(1)].max_version == 8
    assert views.digest_views[node(1)].count == 3
    # A full digest without us: it holds nothing of ours.
    views.note(SeenDigest(Digest({node(2): NodeDigest(1, 0, 0)})), addr(2), me, 12.0)
    assert views.reports[node(2)].max_version == 0
    # A window that leaves us out says nothing of us, nor of its sender's view.
    window = Digest({node(1): NodeDigest(11, 0, 0)})
    views.note(SeenDigest(window, partial=True), addr(1), me, 13.0)
    assert views.reports[node(1)].max_version == 8
    assert views.digest_views[node(1)].count == 3
    # Unattributed digests change nothing.
    assert views.note(SeenDigest(later), addr(7), me, 14.0) is None
    assert set(views.reports) == {node(1), node(2)}


def test_the_nodes_of_a_peer_that_publishes_its_view_are_not_summarized() -> None:
    # That pass over the digest is for chitchat peers; a gossip-tui peer says its view.
    views = PeerViews()
    me, digest = node(0), Digest({node(0): NodeDigest(1, 0, 4), node(1): NodeDigest(1, 0, 0)})
    views.note(SeenDigest(digest), addr(1), me, 1.0)
    assert node(1) in views.digest_views
    views.note(SeenDigest(digest), addr(1), me, 2.0, publishes_view=lambda n: n == node(1))
    assert node(1) not in views.digest_views  # its published view counts, not a stale one
    assert views.reports[node(1)] == PeerReport(me, 4, 0, 2.0)


def test_the_table_forgets_and_prunes_peers_gone() -> None:
    views = PeerViews()
    me = node(0)
    for i in (1, 2, 3):
        views.note(SeenDigest(Digest({node(i): NodeDigest(1, 0, 0)})), addr(i), me, 1.0)
    views.forget(node(1))
    assert node(1) not in views.reports and node(1) not in views.digest_views
    views.keep({me, node(2)})
    assert set(views.reports) == set(views.digest_views) == {node(2)}


def test_a_flood_of_made_up_senders_stays_bounded() -> None:
    views = PeerViews(max_peers=5)
    me = node(0)
    for i in range(1, 50):
        views.note(SeenDigest(Digest({node(i): NodeDigest(1, 0, 0)})), addr(i), me, 1.0)
    assert len(views) == 5
    assert MAX_PEER_VIEWS >= 10_000  # as many as the state admits by default


# -- propagation ----------------------------------------------------------------------------


def _values(**versions: int) -> dict[str, VersionedValue]:
    return {key: VersionedValue("x", version) for key, version in versions.items()}


def test_a_key_is_held_by_the_live_peers_whose_report_reaches_its_version() -> None:
    me = node(0)
    reports = {
        node(1): PeerReport(me, 5, 0, 1.0),
        node(2): PeerReport(me, 3, 0, 1.0),
        node(3): PeerReport(node(0, generation=0), 9, 0, 1.0),  # our former identity
        node(9): PeerReport(me, 9, 0, 1.0),  # not live any more: not counted
    }
    live = [me, node(1), node(2), node(3), node(4)]  # node-4: no report yet
    reading = read_propagation(me, _values(a=3, b=5), live, reports, 2.0)
    a, b = reading.keys
    assert (a.key, a.held_by, a.live_peers) == ("a", 2, 4)
    assert a.holders == (node(1), node(2))
    assert a.laggards == ((node(3), 0), (node(4), None))
    assert (b.held_by, b.laggards) == (1, ((node(2), 3), (node(3), 0), (node(4), None)))
    assert reading.live_peers == (node(1), node(2), node(3), node(4))


def test_a_deleted_key_propagates_like_any_other_version() -> None:
    me = node(0)
    values = {"gone": VersionedValue("", 4, KeyStatus.DELETED)}
    reading = read_propagation(me, values, [node(1)], {node(1): PeerReport(me, 4, 0, 1.0)}, 2.0)
    assert reading.keys[0].status is KeyStatus.DELETED and reading.keys[0].held_by == 1


def test_propagation_from_two_real_engines() -> None:
    us = GossipEngine(node(0), "c", now=0.0, initial_key_values={"a": "1"})
    peer = GossipEngine(node(1), "c", now=0.0)
    views = PeerViews()

    def exchange(now: float) -> None:
        # The peer starts; its Syn and our SynAck's Ack travel as on the wire.
        syn_step = us.handle_message(peer.create_syn(now), now)
        assert syn_step.seen_digest is not None
        views.note(syn_step.seen_digest, addr(1), us.self_id, now)
        assert isinstance(syn_step.reply, SynAck)
        ack = peer.handle_message(syn_step.reply, now).reply
        assert isinstance(ack, Ack) and ack.delta == Delta()

    def held(now: float) -> int:
        key = read_propagation(
            us.self_id, us.self_state.key_values, [node(1)], views.reports, now
        ).keys[0]
        return key.held_by

    exchange(1.0)  # the peer did not know us: it reports nothing of ours
    assert held(1.0) == 0
    exchange(2.0)  # it got our key from the SynAck, and says so in its next digest
    assert held(2.0) == 1
    us.self_state.set("a", "2")
    assert held(2.5) == 0
    exchange(3.0)
    exchange(4.0)
    assert held(4.0) == 1


# -- agreement ----------------------------------------------------------------------------


def test_nodes_are_grouped_by_the_view_they_published_or_their_digest_shows() -> None:
    me, full, half = node(0), summarize([node(i) for i in range(4)]), summarize([node(2)])
    published = {me: full.encode(), node(1): full.encode(), node(2): half.encode()}
    digests = {node(3): full, node(4): summarize([node(4), node(9)])}
    nodes = [(me, True), (node(1), True), (node(2), True), (node(3), False), (node(4), True)]
    nodes.append((node(5), True))  # no view known at all
    reading = read_agreement(me, nodes, published, digests, half, 5.0)
    own, *others = reading.groups
    assert own.includes_self and own.summary == full  # what we published, not our present
    assert [m.node for m in own.members] == [me, node(1), node(3)]
    assert own.members[2].source == ViewSource.DIGEST and not own.members[2].live
    assert own.live_members == 2
    assert [g.summary for g in others][-1] is None  # the unknown ones last
    assert not reading.agreed
    unknown = others[-1]
    assert unknown.members[0].source == ViewSource.UNKNOWN


def test_this_node_counts_with_its_present_view_before_it_published() -> None:
    me = node(0)
    view = summarize([me, node(1)])
    reading = read_agreement(
        me, [(me, True), (node(1), True)], {node(1): view.encode()}, {}, view, 1.0
    )
    assert len(reading.groups) == 1 and reading.agreed
    assert reading.groups[0].includes_self


def test_a_forged_view_value_falls_back_to_the_digest() -> None:
    me = node(0)
    view = summarize([me, node(1)])
    reading = read_agreement(
        me, [(me, True), (node(1), True)], {node(1): "not a view"}, {node(1): view}, view, 1.0
    )
    assert reading.agreed and reading.groups[0].members[1].source == ViewSource.DIGEST


def test_agreement_lends_every_reading_by_its_old_name() -> None:
    # core.agreement names the readings (moved to core.readings) without importing them,
    # so its list is a second copy of readings.__all__: the two must not drift apart.
    from gossip_tui.core import agreement, readings

    assert set(readings.__all__) == agreement._READINGS
    for name in readings.__all__:
        assert getattr(agreement, name) is getattr(readings, name)
