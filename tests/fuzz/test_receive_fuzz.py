"""The node's receive path under malformed datagrams: scripts/bench_fuzz.py's harness (which
drives the product's own gossip_tui.core.receive.receive_datagram and
NodeStats.count_received) at a smaller count, hypothesis on top of it, and a real node on
the in-memory network.

Whatever arrives, only DecodeError may come out of decoding; a rejected datagram must leave
the node's state as it was and be counted in ``stats.dropped["malformed"]``.
"""

from __future__ import annotations

import functools
import importlib.util
import pickle
import random
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossip_tui.core import receive as receive_path
from gossip_tui.core.codec import DecodeError, decode
from gossip_tui.core.models import NodeId, SocketAddress
from gossip_tui.node import Node, NodeStats
from gossip_tui.testing import MemoryNetwork
from tests.conftest import VECTORS_DIR
from tests.node.helpers import all_see_each_other, open_cluster, wait_until

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "bench_fuzz.py"
COUNT = 20_000


@functools.cache
def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_fuzz", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fuzz() -> ModuleType:
    return _load_script()


# --------------------------------------------------------------------------- the harness


def test_20_000_mutated_datagrams_only_ever_raise_decode_error(fuzz: Any) -> None:
    report = fuzz.run_fuzz(COUNT, seed=1)
    assert report.failures == [], "\n".join(report.failures)
    assert report.ok()
    assert report.count == report.stats.datagrams_in == COUNT
    malformed = report.outcomes["malformed"]
    assert report.stats.dropped["malformed"] == malformed
    assert malformed + report.outcomes["accepted"] == COUNT
    # Both paths are exercised in earnest: most datagrams are rejected, many get through.
    assert 0.5 < malformed / COUNT < 0.95
    assert report.outcomes["accepted"] > 1_000
    assert set(report.messages) == {"Syn", "SynAck", "Ack", "BadCluster"}
    assert report.digest_checks == malformed
    assert report.full_checks > COUNT // fuzz.FULL_CHECK_EVERY // 2
    print(
        f"\nfuzz: {COUNT:,} datagrams at {report.rate:,.0f}/s, "
        f"{malformed:,} dropped as malformed, {report.outcomes['accepted']:,} accepted"
    )


def test_the_golden_vectors_are_in_the_corpus(fuzz: Any, vectors_dir: Path) -> None:
    report = fuzz.run_fuzz(2_000, seed=2, vectors_dir=vectors_dir)
    assert report.vectors == len(list(vectors_dir.glob("*.bin"))) > 20
    assert report.ok()
    assert report.mutators["stream"] > 0  # vectors with deltas feed the op-stream mutator


def test_without_vectors_the_harness_still_runs(fuzz: Any, tmp_path: Path) -> None:
    report = fuzz.run_fuzz(1_000, seed=3, vectors_dir=tmp_path / "absent")
    assert report.vectors == 0 and report.ok()


def test_the_harness_catches_a_decoder_raising_something_else(
    fuzz: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = receive_path.decode

    def leaky(data: bytes) -> Any:
        if data[:1] == b"\x53" and len(data) % 7 == 0:
            raise IndexError("a parser bug")
        return real(data)

    # The decoder the product's receive path calls, which the harness drives.
    monkeypatch.setattr(receive_path, "decode", leaky)
    report = fuzz.run_fuzz(2_000, seed=4)
    assert not report.ok()
    assert report.outcomes["decode_raised"] > 0
    assert "IndexError: a parser bug" in report.failures[0]


def test_the_harness_catches_a_rejection_that_changes_state(
    fuzz: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = fuzz.receive

    def tampering(engine: Any, stats: NodeStats, data: bytes, now: float) -> Any:
        try:
            return real(engine, stats, data, now)
        except DecodeError:
            engine.self_state.heartbeat += 1
            raise

    monkeypatch.setattr(fuzz, "receive", tampering)
    report = fuzz.run_fuzz(500, seed=5)
    assert not report.ok()
    assert report.outcomes["state_changed_by_rejected"] > 0


def test_the_harness_catches_a_drop_that_is_not_counted(
    fuzz: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = fuzz.receive

    def forgetful(engine: Any, stats: NodeStats, data: bytes, now: float) -> Any:
        try:
            return real(engine, stats, data, now)
        except DecodeError:
            if len(data) % 3 == 0:
                stats.dropped["malformed"] -= 1
            raise

    monkeypatch.setattr(fuzz, "receive", forgetful)
    report = fuzz.run_fuzz(500, seed=6)
    assert report.failure_count == 0
    assert not report.ok()


# --------------------------------------------------------------------------- hypothesis


@functools.cache
def _template() -> bytes:
    fuzz = _load_script()
    peers = fuzz._cluster(random.Random(7), 8)
    return bytes(pickle.dumps(fuzz.base_engine(fuzz.load_vectors(VECTORS_DIR), peers)))


@functools.cache
def _corpus() -> list[bytes]:
    fuzz = _load_script()
    rng = random.Random(8)
    corpus: list[bytes] = fuzz.load_vectors(VECTORS_DIR)
    generated: list[bytes] = fuzz.generated_corpus(rng, fuzz._cluster(rng, 8), 100)
    return corpus + generated


def _check_one(data: bytes) -> None:
    fuzz = _load_script()
    engine = pickle.loads(_template())
    stats = NodeStats()
    before = fuzz.full_state(engine, 20.0)
    try:
        fuzz.receive(engine, stats, data, 20.0)
    except DecodeError:
        assert stats.dropped["malformed"] == 1
        assert fuzz.full_state(engine, 20.0) == before
    else:
        assert stats.dropped["malformed"] == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_arbitrary_bytes(data: bytes) -> None:
    _check_one(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_arbitrary_bodies_behind_a_valid_header(body: bytes) -> None:
    for kind in range(4):
        _check_one(b"\x53\xb0\x00" + bytes([kind]) + body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_corpus_entries_cut_and_flipped(data: st.DataObject) -> None:
    corpus = _corpus()
    entry = corpus[data.draw(st.integers(0, len(corpus) - 1), label="entry")]
    cut = data.draw(st.integers(0, len(entry)), label="cut")
    mutable = bytearray(entry[:cut])
    for _ in range(data.draw(st.integers(0, 4), label="flips")):
        if mutable:
            mutable[data.draw(st.integers(0, len(mutable) - 1))] ^= 1 << data.draw(
                st.integers(0, 7)
            )
    _check_one(bytes(mutable) + data.draw(st.binary(max_size=16), label="tail"))


# --------------------------------------------------------------------------- a real node


def _view(node: Node) -> dict[NodeId, dict[str, Any]]:
    """What junk must not change: who is known, and every key-value (not heartbeats)."""
    return {
        n: {k: (v.value, v.version, v.status) for k, v in s.key_values.items()}
        for n, s in node.engine.state.node_states.items()
    }


@pytest.mark.trio
async def test_a_real_node_receiving_junk_keeps_its_state_and_counts_every_drop(
    autojump_clock: trio.abc.Clock,
) -> None:
    fuzz = _load_script()
    rng = random.Random(9)
    mutate = fuzz.Mutator(rng, _corpus())
    junk: list[bytes] = []
    decodable: list[bytes] = []
    while len(junk) < 3_000:
        _, data = mutate()
        try:
            decode(data)
        except DecodeError:
            junk.append(data)
        else:
            decodable.append(data)

    network = MemoryNetwork(seed=10)
    async with open_cluster(3, transport=network.transport()) as nodes:
        await wait_until(lambda: all_see_each_other(nodes), 30, "start")
        for i, node in enumerate(nodes):
            node.set("owner", f"node-{i}")
        await wait_until(
            lambda: all(n.get("owner", m.self_id) is not None for n in nodes for m in nodes),
            10,
            "keys everywhere",
        )
        target = nodes[0]
        before = _view(target)
        attacker = network.bind(SocketAddress.parse("127.0.0.1:0"))
        for start in range(0, len(junk), 500):
            for data in junk[start : start + 500]:
                await attacker.send(data, target.gossip_addr)
            await trio.sleep(0.01)
        await wait_until(
            lambda: target.stats.dropped["malformed"] == len(junk), 10, "every drop counted"
        )
        assert _view(target) == before
        assert target.stats.dropped.keys() == {"malformed"}
        assert all_see_each_other(nodes)

        # Junk that does decode goes in as messages: it may add junk nodes, never a crash.
        for data in decodable[:1_000]:
            await attacker.send(data, target.gossip_addr)
        await trio.sleep(1)
        assert target.stats.dropped["rejected"] == 0
        assert target.stats.dropped["malformed"] == len(junk)

        # The node still gossips: a new key reaches it, and its own reaches the others.
        nodes[1].set("after", "junk")
        target.set("still", "here")
        await wait_until(
            lambda: (
                target.get("after", nodes[1].self_id) == "junk"
                and all(n.get("still", target.self_id) == "here" for n in nodes[1:])
            ),
            10,
            "gossip after the junk",
        )
