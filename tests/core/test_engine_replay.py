"""Replay real chitchat handshakes against our engine: the replies must match byte for byte."""

from __future__ import annotations

from pathlib import Path

from gossip_tui.core.codec import decode, encode
from gossip_tui.core.engine import GossipEngine
from gossip_tui.core.messages import Syn
from gossip_tui.core.models import NodeId, SocketAddress

NODE_1 = NodeId("node-1", 1_700_000_001, SocketAddress.parse("127.0.0.1:17001"))
NODE_2 = NodeId("node-2", 1_700_000_002, SocketAddress.parse("127.0.0.1:17002"))


def _node_1() -> GossipEngine:
    engine = GossipEngine(NODE_1, "testing", now=0.0)
    me = engine.self_state
    me.set("bind", "127.0.0.1:17001")
    me.set("color", "blue")
    me.set("tmp", "x")
    me.delete("tmp", 0.0)
    me.set_with_ttl("lease", "temp", 0.0)
    return engine


def _node_2() -> GossipEngine:
    return GossipEngine(
        NODE_2, "testing", now=0.0, initial_key_values={"bind": "127.0.0.1:17002", "k": "v"}
    )


def test_handshake_is_byte_identical(vectors_dir: Path) -> None:
    a, b = _node_1(), _node_2()
    syn = a.create_syn(1.0)
    assert encode(syn) == (vectors_dir / "handshake_1_syn_a_to_b.bin").read_bytes()

    synack = b.handle_message(decode(encode(syn)), 1.0).reply
    assert synack is not None
    assert encode(synack) == (vectors_dir / "handshake_2_synack_b_to_a.bin").read_bytes()

    ack = a.handle_message(decode(encode(synack)), 1.0).reply
    assert ack is not None
    assert encode(ack) == (vectors_dir / "handshake_3_ack_a_to_b.bin").read_bytes()

    assert b.handle_message(decode(encode(ack)), 1.0).reply is None
    assert (
        encode(b.create_syn(1.0)) == (vectors_dir / "handshake_4_syn_b_to_a_after.bin").read_bytes()
    )

    # Both now hold both states.
    for engine in (a, b):
        one = engine.state.node_state(NODE_1)
        two = engine.state.node_state(NODE_2)
        assert one is not None and two is not None
        assert one.get("color") == "blue" and one.get("tmp") is None
        assert one.get("lease") == "temp"
        assert two.get("k") == "v"
        assert (one.max_version, two.max_version) == (5, 2)


def test_wrong_cluster_gets_bad_cluster(vectors_dir: Path) -> None:
    b = _node_2()
    wrong = decode((vectors_dir / "handshake_5_syn_wrong_cluster.bin").read_bytes())
    assert isinstance(wrong, Syn) and wrong.cluster_id != "testing"
    reply = b.handle_message(wrong, 1.0).reply
    assert reply is not None
    assert encode(reply) == (vectors_dir / "handshake_6_badcluster_reply.bin").read_bytes()
    # The foreign node was not learnt.
    assert list(b.state.nodes()) == [NODE_2]
