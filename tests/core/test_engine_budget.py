"""A reply budget (a sender not yet shown to receive) cuts SynAcks and Acks to size."""

from __future__ import annotations

import random
import string

from gossip_tui.core.codec import decode, encode
from gossip_tui.core.engine import GossipEngine
from gossip_tui.core.messages import Ack, Delta, Digest, Syn, SynAck
from gossip_tui.core.models import NodeId, SocketAddress

BUDGET = 1_200


def _node(i: int) -> NodeId:
    return NodeId(f"node-{i}", 1, SocketAddress.parse(f"127.0.0.1:{10_000 + i}"))


def _noise(rng: random.Random, size: int) -> str:
    # Incompressible: the codec compresses deltas, and a reflector picks what does not.
    return "".join(rng.choices(string.ascii_letters + string.digits, k=size))


def _rich_engine(peers: int = 40) -> GossipEngine:
    """A node that knows many peers and holds ~50 KB of its own keys."""
    engine = GossipEngine(_node(0), "c", now=0.0, rng=random.Random(7))
    values = random.Random(3)
    for i in range(50):
        engine.self_state.set(f"key-{i:02}", _noise(values, 1_000))
    for i in range(1, peers + 1):
        peer = GossipEngine(_node(i), "c", now=0.0, initial_key_values={"k": "v" * 100})
        introduce(engine, peer)
    return engine


def introduce(engine: GossipEngine, peer: GossipEngine) -> None:
    """A full, unbudgeted handshake from ``peer`` to ``engine``."""
    synack = engine.handle_message(peer.create_syn(0.0), 0.0).reply
    assert isinstance(synack, SynAck)
    ack = peer.handle_message(synack, 0.0).reply
    assert ack is not None
    engine.handle_message(ack, 0.0)


def test_a_syn_under_a_budget_draws_a_small_synack_with_our_node_first() -> None:
    engine = _rich_engine()
    syn = Syn("c", Digest())
    full = engine.handle_message(syn, 1.0).reply
    small = engine.handle_message(syn, 1.0, reply_budget=BUDGET).reply
    assert isinstance(full, SynAck) and isinstance(small, SynAck)
    assert len(encode(full)) > 30_000
    assert len(encode(small)) <= BUDGET
    assert next(iter(small.digest.nodes)) == engine.self_id
    assert 1 < len(small.digest.nodes) < len(full.digest.nodes)
    assert small.delta.node_deltas  # some of the delta still travels


def test_an_ack_under_a_budget_is_cut_too() -> None:
    engine = _rich_engine(peers=0)
    bare = SynAck(Digest(), Delta())  # "I know nothing": the whole state would answer it
    full = engine.handle_message(bare, 1.0).reply
    small = engine.handle_message(bare, 1.0, reply_budget=BUDGET).reply
    assert isinstance(full, Ack) and isinstance(small, Ack)
    assert len(encode(full)) > 30_000
    assert len(encode(small)) <= BUDGET


def test_without_a_budget_the_reply_is_unchanged() -> None:
    syn = Syn("c", Digest())
    default = _rich_engine().handle_message(syn, 1.0).reply
    unbudgeted = _rich_engine().handle_message(syn, 1.0, reply_budget=None).reply
    assert default is not None and unbudgeted is not None
    assert encode(default) == encode(unbudgeted)


def test_the_ack_to_a_cut_digest_is_harmless_and_the_next_exchange_is_whole() -> None:
    """A chitchat peer (our engine answers a SynAck the same way) acks a cut digest with
    everything about the nodes it leaves out: all of it known to us already."""
    rich = _rich_engine()
    peer = GossipEngine(_node(200), "c", now=0.0)
    for i in range(1, 41):  # the peer knows the same nodes
        introduce(peer, GossipEngine(_node(i), "c", now=0.0, initial_key_values={"k": "v" * 100}))
    before = {node: state.max_version for node, state in rich.state.node_states.items()}
    small = rich.handle_message(peer.create_syn(1.0), 1.0, reply_budget=BUDGET).reply
    assert isinstance(small, SynAck) and len(encode(small)) <= BUDGET
    ack = peer.handle_message(decode(encode(small)), 1.0).reply
    assert isinstance(ack, Ack) and len(ack.delta.node_deltas) > 20  # "you lack these"
    rejected = rich.state.rejected.total()
    assert rich.handle_message(decode(encode(ack)), 1.0).reply is None
    assert rich.state.rejected.total() == rejected
    after = {node: rich.state.node_states[node].max_version for node in before}
    assert after == before
    # Shown to receive: the next exchange is whole.
    synack = rich.handle_message(peer.create_syn(2.0), 2.0).reply
    assert synack is not None
    peer.handle_message(decode(encode(synack)), 2.0)
    mine = peer.state.node_state(rich.self_id)
    assert mine is not None and mine.get("key-49") == rich.self_state.get("key-49")
