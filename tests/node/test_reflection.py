"""A forged source address cannot turn a small Syn into a large reply (reflection)."""

from __future__ import annotations

import random
import string

import pytest
import trio

from gossip_tui.api._metrics import render_metrics
from gossip_tui.core.codec import decode, encode
from gossip_tui.core.messages import Ack, Delta, Digest, Syn, SynAck
from gossip_tui.core.models import SocketAddress
from gossip_tui.node import DatagramSocket, Node, UdpTransport, open_node
from gossip_tui.node._reflection import (
    ANSWER_WINDOW,
    CAPACITY,
    REPLY_FACTOR,
    TRUSTED_FOR,
    ReplyBudgets,
)

from .helpers import fast_config, open_cluster, wait_until

# The bound the node promises an address that has not shown it receives what we send.
_FACTOR = 3


def _fill(node: Node, seed: int, keys: int = 50) -> None:
    # Incompressible values (the codec compresses deltas): ~40 KB on the wire.
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    for i in range(keys):
        node.set(f"key-{i:02}", "".join(rng.choices(alphabet, k=1_000)))


async def _exchange(sock: DatagramSocket, data: bytes, to: SocketAddress) -> bytes:
    await sock.send(data, to)
    with trio.fail_after(10):
        while True:
            reply, source = await sock.recv()
            if source == to:
                return reply


@pytest.mark.trio
async def test_a_small_syn_from_an_unverified_source_draws_a_small_reply() -> None:
    async with open_node(fast_config(node_id="rich")) as node:
        _fill(node, seed=1)
        # Another loopback address than the node's, as a forged source would be.
        source = await UdpTransport().bind(SocketAddress.parse("127.0.0.2:0"))
        try:
            syn = encode(Syn("testing", Digest()))
            first = await _exchange(source, syn, node.gossip_addr)
            synack = decode(first)
            assert isinstance(synack, SynAck)
            # Three times the Syn, and past that only our own entry, so a peer learns us.
            introduction = len(
                encode(SynAck(Digest({node.self_id: synack.digest.nodes[node.self_id]}), Delta()))
            )
            assert len(first) <= max(_FACTOR * len(syn), introduction)
            assert len(first) < 100
            assert next(iter(synack.digest.nodes)) == node.self_id
            assert node.stats.small_replies == 1
            assert "gossip_tui_small_replies_total 1" in render_metrics(node.snapshot(), node.stats)
            # Still unverified: a second Syn is held small too.
            assert len(await _exchange(source, syn, node.gossip_addr)) < 100
            # The Ack shows we receive; from then on the replies are whole.
            await source.send(encode(Ack(Delta())), node.gossip_addr)
            await wait_until(lambda: node.stats.datagrams_in == 3, 10, "the ack arrives")
            full = await _exchange(source, syn, node.gossip_addr)
            assert len(full) > 30_000
            assert node.stats.small_replies == 2
        finally:
            source.close()


@pytest.mark.trio
async def test_a_forged_synack_draws_a_small_ack() -> None:
    async with open_node(fast_config(node_id="rich")) as node:
        _fill(node, seed=2)
        source = await UdpTransport().bind(SocketAddress.parse("127.0.0.3:0"))
        try:
            bare = encode(SynAck(Digest(), Delta()))
            reply = await _exchange(source, bare, node.gossip_addr)
            assert isinstance(decode(reply), Ack)
            assert len(reply) <= _FACTOR * len(bare)
        finally:
            source.close()


@pytest.mark.trio
async def test_a_cluster_with_a_large_state_still_converges() -> None:
    async with open_cluster(3) as nodes:
        _fill(nodes[0], seed=3)
        _fill(nodes[2], seed=4, keys=20)
        expected = {
            (node.self_id, key): node.get(key)
            for node in (nodes[0], nodes[2])
            for key in (f"key-{i:02}" for i in range(20))
        }

        def converged() -> bool:
            return all(
                peer.get(key, owner) == value
                for peer in nodes
                for (owner, key), value in expected.items()
            )

        await wait_until(converged, 30, "every key everywhere")
        # Peers answer each other's Syns: each has shown the others it receives.
        assert all(node.stats.small_replies <= 4 for node in nodes)


def test_a_flood_of_sources_cannot_grow_the_tables() -> None:
    budgets = ReplyBudgets()
    syn, synack = Syn("testing", Digest()), SynAck(Digest(), Delta())
    for i in range(3 * CAPACITY):
        source = SocketAddress.parse(f"127.0.{i // 250}.{i % 250 + 1}:7000")
        assert budgets.budget(syn, source, 15, now=float(i)) == REPLY_FACTOR * 15
        budgets.sent(synack, source, now=float(i))
        budgets.sent(syn, source, now=float(i))
        budgets.budget(Ack(Delta()), source, 4, now=float(i))  # shown: trusted
    tables = (budgets._syn_sent, budgets._synack_sent, budgets._trusted)
    assert all(len(table) <= CAPACITY for table in tables)


def test_trust_needs_a_recent_question_and_expires() -> None:
    budgets = ReplyBudgets()
    peer = SocketAddress.parse("127.0.0.9:7000")
    ack = Ack(Delta())
    assert budgets.budget(ack, peer, 4, now=0.0) == REPLY_FACTOR * 4  # an Ack we never asked for
    budgets.sent(SynAck(Digest(), Delta()), peer, now=0.0)
    assert budgets.budget(ack, peer, 4, now=ANSWER_WINDOW + 1) == REPLY_FACTOR * 4  # too late
    budgets.sent(Syn("testing", Digest()), peer, now=100.0)
    assert budgets.budget(SynAck(Digest(), Delta()), peer, 10, now=101.0) is None
    assert budgets.budget(Syn("testing", Digest()), peer, 15, now=101.0 + TRUSTED_FOR) is None
    assert budgets.budget(Syn("testing", Digest()), peer, 15, now=102.0 + 2 * TRUSTED_FOR) == (
        REPLY_FACTOR * 15
    )
