"""Each engine step says what happened in it: the runtime reads the step, never the
engine before and after."""

from __future__ import annotations

from gossip_tui.core.codec import encode
from gossip_tui.core.engine import (
    HEADROOM_CEILING,
    LEAVING_KEY,
    REPAIR_HEARTBEAT_AT_EDGE,
    GossipEngine,
)
from gossip_tui.core.events import KeyChanged, NodeLeft, NodeUpdated, step_events
from gossip_tui.core.messages import (
    Ack,
    Delta,
    Digest,
    KeyValueMutation,
    NodeDelta,
    NodeDigest,
    Syn,
)
from gossip_tui.core.models import KeyStatus, NodeId, SocketAddress
from gossip_tui.core.receive import receive_datagram


def _node(i: int) -> NodeId:
    return NodeId(f"node-{i}", 1, SocketAddress.parse(f"127.0.0.1:{10_000 + i}"))


def _known(engine: GossipEngine, peer: NodeId, now: float) -> None:
    engine.handle_message(Syn("c", Digest({peer: NodeDigest(1, 0, 0)})), now)


def test_a_received_delta_gives_its_changes_and_events() -> None:
    engine = GossipEngine(_node(0), "c", now=0.0)
    _known(engine, _node(1), 0.5)
    delta = Delta((NodeDelta(_node(1), 0, 0, (KeyValueMutation("k", "v", 1),), 1),))
    step = engine.handle_message(Ack(delta), 1.0)
    assert step.reply is None and step.refusals == ()
    assert step_events(step) == [KeyChanged(_node(1), "k", "v", 1), NodeUpdated(_node(1), 1)]
    # Taken by the step: the next one starts empty.
    assert engine.handle_message(Ack(Delta()), 1.1).changes == ()


def test_a_key_marked_delete_after_ttl_on_the_wire_says_so_in_its_event() -> None:
    engine = GossipEngine(_node(0), "c", now=0.0)
    _known(engine, _node(1), 0.5)
    marked = KeyValueMutation("lease", "held", 1, KeyStatus.DELETE_AFTER_TTL)
    step = engine.handle_message(Ack(Delta((NodeDelta(_node(1), 0, 0, (marked,), 1),))), 1.0)
    assert step_events(step)[0] == KeyChanged(
        _node(1), "lease", "held", 1, KeyStatus.DELETE_AFTER_TTL
    )


def test_a_refusal_and_its_reason_are_in_the_step() -> None:
    engine = GossipEngine(_node(0), "c", now=0.0, initial_key_values={"role": "db"})
    forged = NodeDelta(_node(0), 0, 0, (KeyValueMutation("role", "pwned", 99),), 99)
    step = engine.handle_message(Ack(Delta((forged,))), 1.0)
    assert step.refusals == ("self_delta",)
    assert engine.handle_message(Ack(Delta()), 1.1).refusals == ()


def test_an_outrun_and_a_repair_are_in_the_step() -> None:
    engine = GossipEngine(_node(0), "c", now=0.0)
    ahead = Syn("c", Digest({engine.self_id: NodeDigest(50, 0, 0)}))
    step = engine.handle_message(ahead, 1.0)
    assert step.heartbeat_outruns == 1 and step.self_repairs == ()
    bomb = Syn("c", Digest({engine.self_id: NodeDigest(HEADROOM_CEILING, 0, 0)}))
    step = engine.handle_message(bomb, 2.0)
    assert step.self_repairs == (REPAIR_HEARTBEAT_AT_EDGE,) and step.heartbeat_outruns == 0
    calm = engine.handle_message(Syn("c", Digest()), 3.0)
    assert calm.self_repairs == () and calm.heartbeat_outruns == 0


def test_a_leaving_marker_is_a_departure_once() -> None:
    engine = GossipEngine(_node(0), "c", now=0.0)
    _known(engine, _node(1), 0.5)
    marker = NodeDelta(_node(1), 0, 0, (KeyValueMutation(LEAVING_KEY, "1", 1),), 1)
    step = engine.handle_message(Ack(Delta((marker,))), 1.0)
    assert step.departures == (_node(1),)
    assert step_events(step)[-1] == NodeLeft(_node(1))
    again = engine.handle_message(Ack(Delta((marker,))), 1.1)
    assert again.departures == () and NodeLeft(_node(1)) not in step_events(again)


def test_a_sweep_and_a_round_are_steps() -> None:
    engine = GossipEngine(_node(0), "c", now=0.0, seed_addrs=[_node(1).gossip_addr])
    round_step = engine.start_round(1.0)
    assert round_step.targets.seed == _node(1).gossip_addr
    _known(engine, _node(1), 1.0)
    _known(engine, _node(1), 1.0)  # twice: the detector needs a heartbeat interval
    sweep = engine.update_liveness(1.5)
    assert sweep.liveness.joined == tuple(n for n in engine.live_nodes() if n != engine.self_id)


def test_receive_datagram_counts_a_malformed_datagram_and_changes_nothing() -> None:
    engine = GossipEngine(_node(0), "c", now=0.0)
    heartbeat = engine.self_state.heartbeat
    received = receive_datagram(engine, b"\x53\xb0\x00\x09junk", 1.0)
    assert received.step is None and received.reply is None
    assert received.drops() == {"malformed": 1}
    assert engine.self_state.heartbeat == heartbeat


def test_receive_datagram_replies_within_the_budget_it_is_given() -> None:
    # Values that do not compress, so that the full reply is large on the wire too.
    values = {f"k{i}": f"{i * 7919:x}-{i * 104_729:x}" for i in range(200)}
    engine = GossipEngine(_node(0), "c", now=0.0, initial_key_values=values)
    syn = encode(Syn("c", Digest()))
    full = receive_datagram(engine, syn, 1.0)
    small = receive_datagram(engine, syn, 1.0, lambda message: 200)
    assert full.reply_budget is None and small.reply_budget == 200
    assert full.reply is not None and small.reply is not None
    assert len(encode(small.reply)) <= 200 < len(encode(full.reply))
