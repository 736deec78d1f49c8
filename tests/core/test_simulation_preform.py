"""A pre-formed simulation starts as after a long quiet spell: every node has published
its view and every peer holds it, so the rounds after publish nothing new. Pre-forming
by templates (the default) leaves every engine exactly as the handler path does."""

from __future__ import annotations

import enum
import random
import types
from array import array
from collections.abc import Callable

import pytest

from gossip_tui.core.agreement import VIEW_KEY, summarize
from gossip_tui.core.codec import PROTOCOL_V0, PROTOCOL_V1
from gossip_tui.core.digest_window import CAPS_KEY
from gossip_tui.core.models import NodeId, SocketAddress
from gossip_tui.core.simulation import (
    PREFORM_METHODS,
    Simulation,
    chitchat_test_name,
    short_name,
)
from gossip_tui.core.state import NodeState, SharedObjects
from tests.core._counting import count_calls_of

# Values compared by equality, not followed: numbers, strings, ids, enums, classes and
# functions (the same objects in both simulations, module-level).
_LEAVES = (
    int,
    float,
    str,
    bytes,
    type(None),
    enum.Enum,
    NodeId,
    SocketAddress,
    type,
    types.FunctionType,
    types.BuiltinFunctionType,
)


def _same_graph(a: object, b: object) -> int:
    """Whether the objects reachable from ``a`` and from ``b`` are the same up to which
    objects they are: equal leaves, and one object of ``b`` for each of ``a``, held in the
    same places (so what is shared in one is shared in the other). Each simulation's
    SharedObjects (tables of what it shares, whose contents tell nothing a state holds)
    are not followed. Raises AssertionError with the path of the first difference; the
    count of objects matched otherwise."""
    forth: dict[int, object] = {}
    back: dict[int, object] = {}
    keep: list[object] = []  # (the objects matched stay alive: their ids stay theirs)
    stack: list[tuple[object, object, str]] = [(a, b, "")]
    while stack:
        x, y, path = stack.pop()
        assert type(x) is type(y), f"{path}: {type(x).__name__} vs {type(y).__name__}"
        if isinstance(x, _LEAVES):
            assert x == y, f"{path}: {x!r} vs {y!r}"
            continue
        if id(x) in forth or id(y) in back:
            assert forth.get(id(x)) is y and back.get(id(y)) is x, f"{path}: shared apart"
            continue
        forth[id(x)], back[id(y)] = y, x
        keep += (x, y)
        if isinstance(x, SharedObjects):
            continue
        if isinstance(x, random.Random):
            assert isinstance(y, random.Random)
            assert x.getstate() == y.getstate(), f"{path}: random state"
        elif isinstance(x, (array, bytearray, set, frozenset)):
            assert x == y, f"{path}: {x!r} vs {y!r}"
        elif isinstance(x, types.MethodType):
            assert isinstance(y, types.MethodType) and x.__func__ is y.__func__, path
            stack.append((x.__self__, y.__self__, f"{path}.__self__"))
        elif isinstance(x, dict):
            assert isinstance(y, dict) and len(x) == len(y), f"{path}: {len(x)} vs {len(y)}"
            for at, ((kx, vx), (ky, vy)) in enumerate(zip(x.items(), y.items(), strict=True)):
                stack += [(kx, ky, f"{path}<key {at}>"), (vx, vy, f"{path}[{kx!r}]")]
        elif isinstance(x, (list, tuple)):
            assert isinstance(y, (list, tuple)) and len(x) == len(y), f"{path}: length"
            stack += [
                (vx, vy, f"{path}[{at}]") for at, (vx, vy) in enumerate(zip(x, y, strict=True))
            ]
        for name in [n for c in type(x).__mro__ for n in c.__dict__.get("__slots__", ())]:
            assert hasattr(x, name) == hasattr(y, name), f"{path}.{name}"
            if hasattr(x, name) and name != "__weakref__":
                stack.append((getattr(x, name), getattr(y, name), f"{path}.{name}"))
        if hasattr(x, "__dict__") and not isinstance(x, type):
            assert list(vars(x)) == list(vars(y)), f"{path}: attributes"
            stack += [(v, vars(y)[n], f"{path}.{n}") for n, v in vars(x).items()]
    return len(forth)


class _Recording(Simulation):
    """A simulation that keeps every datagram it sends."""

    sent: list[bytes]

    def _send(self, datagram: bytes, kind: str) -> bool:
        self.sent.append(datagram)
        return super()._send(datagram, kind)


def _peer_keys(sim: Simulation) -> dict[tuple[int, NodeId, str], tuple[str, int]]:
    """Every engine's key-values of every other node: (engine, node, key) -> (value,
    version)."""
    return {
        (index, node, key): (value.value, value.version)
        for index, engine in enumerate(sim.engines.values())
        for node, state in engine.state.node_states.items()
        if node != engine.self_id
        for key, value in state.key_values.items()
    }


@pytest.mark.parametrize("method", PREFORM_METHODS)
def test_a_preformed_cluster_applies_no_peer_key_in_six_rounds_but_the_one_set(
    method: str,
) -> None:
    # Pre-formed as after a quiet spell: nothing is left to spread. (On the pre-form that
    # did not publish the views, every node published its own in round 4, which every
    # peer then applied: N^2 key updates.)
    sim = Simulation(30, seed=3)
    sim.preform(method)
    writer = sim.engine(7)
    writer.self_state.set("written", "by the test")
    before = _peer_keys(sim)
    for _ in range(6):
        sim.round()
        after = _peer_keys(sim)
        news = {entry for entry in after.items() if entry not in before.items()}
        assert {(node, key) for (_index, node, key), _value in news} <= {
            (writer.self_id, "written")
        }
        before = after
    assert all(e.state.node_state(writer.self_id).get("written") for e in sim.active())  # type: ignore[union-attr]


@pytest.mark.parametrize("method", PREFORM_METHODS)
def test_every_node_of_a_preformed_cluster_holds_every_node_s_view_of_everyone(
    method: str,
) -> None:
    sim = Simulation(12, seed=1)
    sim.preform(method)
    everyone = summarize([e.self_id for e in sim.engines.values()]).encode()
    for engine in sim.engines.values():
        assert len(engine.live_nodes()) == 12
        for state in engine.state.node_states.values():
            assert state.get(VIEW_KEY) == everyone


# (protocol, naming, partial digests by node, datagram size): chitchat-test ids in V1, as
# the benchmarks run; short ids in V0 in datagrams so small that the capability key is
# published, and that the nodes without partial digests cannot learn them all (their
# kind then takes every message through the handler).
_CLUSTERS: dict[str, tuple[int, Callable[[int], str], Callable[[int], bool], int]] = {
    "V1 chitchat-test ids": (PROTOCOL_V1, chitchat_test_name, lambda _i: True, 65_507),
    "V0 small datagrams, mixed": (PROTOCOL_V0, short_name, lambda i: i % 4 != 1, 1_200),
}


@pytest.mark.parametrize("cluster", list(_CLUSTERS))
def test_preforming_by_templates_leaves_every_engine_as_the_handler_does(cluster: str) -> None:
    version, naming, partial, datagram = _CLUSTERS[cluster]
    sims = []
    for method in ("handler", "templates"):
        sim = _Recording(
            60,
            seed=5,
            protocol_version=version,
            naming=naming,
            partial_digests=partial,
            max_datagram_size=datagram,
        )
        sim.sent = []
        sim.preform(method)
        sims.append(sim)
    by_handler, by_templates = sims
    # Every object each engine holds (states, detector rows and windows, partial-digest
    # records, view publisher, random state), and which of them the engines share.
    assert _same_graph(by_handler.engines, by_templates.engines) > 60 * 60
    for one, other in zip(by_handler.active(), by_templates.active(), strict=True):
        now = by_handler.clock.now
        assert one.state.compute_digest() == other.state.compute_digest()
        assert one.snapshot(now) == other.snapshot(now)
        assert one.liveness_readings(now) == other.liveness_readings(now)
    for sim in sims:
        sim.run(3)
    assert by_handler.sent == by_templates.sent
    assert len(by_handler.sent) > 3 * 60
    assert _same_graph(by_handler.engines, by_templates.engines) > 60 * 60


def test_preforming_by_templates_applies_deltas_in_its_two_templates_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The copies are what makes it cheap (and what the test above compares): the others'
    # states are copied, not applied. Two deltas (the second with the capability key).
    applied = count_calls_of(monkeypatch, NodeState, "apply_delta")
    Simulation(40, max_datagram_size=2_000).preform("templates")
    assert applied[0] == 2 * 2 * 39
    applied[0] = 0
    sim = Simulation(40, max_datagram_size=2_000)
    sim.preform("handler")
    assert sim.engine(0).self_state.get(CAPS_KEY) is not None
    assert applied[0] == 40 * 2 * 39


def test_an_unknown_preform_method_is_refused() -> None:
    with pytest.raises(ValueError, match="preform method"):
        Simulation(3).preform("guess")
