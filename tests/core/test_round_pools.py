"""A round's pools of peers (and the live set's summary) are made again only once what they
are made of changed: the targets and the published view are those made from scratch."""

from __future__ import annotations

import ipaddress
import random

import pytest

from gossip_tui.core import agreement
from gossip_tui.core import engine as engine_module
from gossip_tui.core.engine import GossipEngine, GossipTargets
from gossip_tui.core.models import NodeId, SocketAddress
from tests.core._counting import count_calls_of, engine_with_live_peers

PEERS = 30


def _addr(i: int) -> SocketAddress:
    return SocketAddress(ipaddress.IPv4Address("127.0.0.1"), 11_000 + i)


def _fresh_rounds(engine: GossipEngine) -> None:
    """Forget what the engine made for its last round (as before the holding)."""
    engine._pools = None
    engine._live_summary = None


def _targets_over(engine: GossipEngine, rounds: list[float], fresh: bool) -> list[GossipTargets]:
    out = []
    for now in rounds:
        if fresh:
            _fresh_rounds(engine)
        out.append(engine.start_round(now).targets)
    return out


def test_a_settled_round_sorts_and_summarizes_nothing_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = engine_with_live_peers(PEERS, _addr)
    engine.start_round(3.0)
    sorts = count_calls_of(monkeypatch, engine_module, "_in_order")
    summaries = count_calls_of(monkeypatch, engine_module, "summarize")
    engine.start_round(3.5)
    engine.start_round(4.0)
    assert sorts[0] == 0 and summaries[0] == 0


def _scenario(fresh: bool) -> tuple[list[GossipTargets], list[str | None]]:
    """Rounds around every change a pool is made of: a new node, a sweep that kills some,
    a forgotten node, a new generation of our own."""
    engine = engine_with_live_peers(PEERS, _addr)
    engine.rng = random.Random(7)
    views: list[str | None] = []
    targets = _targets_over(engine, [3.0, 3.5], fresh)
    views.append(engine.self_state.get(agreement.VIEW_KEY))
    # A sweep long after the last heartbeats: every peer dead (the pool: every peer).
    engine.update_liveness(60.0)
    targets += _targets_over(engine, [60.5, 61.0, 61.5, 62.0], fresh)
    views.append(engine.self_state.get(agreement.VIEW_KEY))
    newcomer = NodeId("newcomer", 1, _addr(PEERS + 1))
    engine.state.node_state_or_init(newcomer).heartbeat = 1
    targets += _targets_over(engine, [62.5 + i for i in range(12)], fresh)
    peer = next(n for n in engine.state.nodes() if n.node_id == "peer-3")
    assert engine.forget(peer)
    targets += _targets_over(engine, [75.0 + i for i in range(12)], fresh)
    engine._take_new_generation("test", 90.0)
    targets += _targets_over(engine, [90.5, 91.0, 91.5, 92.0], fresh)
    views.append(engine.self_state.get(agreement.VIEW_KEY))
    return targets, views


def test_rounds_held_pick_and_publish_as_rounds_made_from_scratch() -> None:
    held = _scenario(fresh=False)
    assert held == _scenario(fresh=True)
    targets, views = held
    # Every pool was picked from: the newcomer too, and never the forgotten peer.
    picked = {addr for t in targets for addr in t.peers}
    assert _addr(PEERS + 1) in picked
    assert len(set(views)) == len(views)  # the live set changed twice, our id once
