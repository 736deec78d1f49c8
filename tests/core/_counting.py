"""What the core's count guards share: counting the calls a piece of code makes, an
engine whose peers are all live, and a state of nodes holding keys
(tests/core/test_perf_guards*.py)."""

from __future__ import annotations

import gc
import random
import sys
from collections.abc import Callable
from typing import Any

import pytest

from gossip_tui.core.engine import GossipEngine
from gossip_tui.core.models import NodeId, SocketAddress
from gossip_tui.core.state import ClusterState


def count_calls(
    fn: Callable[[], object],
    *,
    c_calls: bool = False,
    where: str = "",
    names: tuple[str, ...] = (),
) -> int:
    """The Python functions called while ``fn`` runs, and its C calls too with ``c_calls``;
    only those of files whose name ends in ``where``, and named one of ``names`` when
    given (a C call is filtered by the Python function that makes it)."""
    events = ("call", "c_call") if c_calls else ("call",)
    calls = [0]

    def profile(frame: Any, event: str, _arg: Any) -> None:
        if event in events:
            code = frame.f_code
            if code.co_filename.endswith(where) and (not names or code.co_name in names):
                calls[0] += 1

    # A collection during the count would add the calls of whatever gc.callbacks holds
    # (hypothesis registers one): the count must be the code's alone.
    was_enabled = gc.isenabled()
    gc.disable()
    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
        if was_enabled:
            gc.enable()
    return calls[0]


def count_calls_of(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[int]:
    """From now on, ``[0]`` of the returned list counts the calls of ``owner.name`` (a
    module's function or class, or a class's plain method), which still does what it did."""
    calls = [0]
    original = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def engine_with_live_peers(count: int, addr: Callable[[int], SocketAddress]) -> GossipEngine:
    """An engine at ``addr(0)`` that has heard ``count`` peers (at ``addr(1..count)``) beat
    steadily, and counts them all live."""
    engine = GossipEngine(NodeId("me", 1, addr(0)), "c", now=0.0, rng=random.Random(3))
    for i in range(1, count + 1):
        peer = NodeId(f"peer-{i}", 1, addr(i))
        engine.state.node_state_or_init(peer).heartbeat = 1
        for t in (0.0, 1.0, 2.0):
            engine.detector.report_heartbeat(peer, t)
    engine.update_liveness(2.5)
    assert len(engine.live_nodes()) == count + 1
    return engine


def state_with_keys(nodes: int, keys: int, addr: Callable[[int], SocketAddress]) -> ClusterState:
    """A state holding ``nodes`` nodes (``peer-i`` at ``addr(i)``) with ``keys`` keys each
    (``key-0``..), as their owners wrote them."""
    cluster = ClusterState()
    for i in range(nodes):
        node_state = cluster.node_state_or_init(NodeId(f"peer-{i}", 1, addr(i)))
        node_state.heartbeat = 1
        for k in range(keys):
            node_state.set(f"key-{k}", f"value-{k}-of-{i}")
    return cluster
