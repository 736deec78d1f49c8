"""A node under forged values and internal bugs: it stays up, counts, and carries on."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trio

import gossip_tui.core.receive as receive_module
import gossip_tui.node._node_base as node_module
from gossip_tui.api import GossipApi
from gossip_tui.api._metrics import render_metrics
from gossip_tui.core.codec import U64_MAX, DeltaWriter, decode, encode
from gossip_tui.core.engine import (
    HEADROOM_CEILING,
    LEAVING_KEY,
    REPAIR_HEARTBEAT_AT_EDGE,
    REPAIR_STATE_AHEAD,
    REPAIR_VERSIONS_AT_EDGE,
)
from gossip_tui.core.messages import Ack, Digest, NodeDigest, Syn
from gossip_tui.core.models import KeyStatus, Liveness, NodeId, SocketAddress
from gossip_tui.node import Node, NodeConfig, open_node
from gossip_tui.node._events import KeyChanged
from gossip_tui.testing import MemoryNetwork
from tests.api.asgi_client import acall
from tests.processes import free_port

from .helpers import FAST_DETECTOR, open_cluster, wait_until

CHITCHAT_TEST_BIN = os.environ.get("CHITCHAT_TEST_BIN", "")


async def _send_raw(datagram: bytes, to: SocketAddress) -> None:
    """What any host on 127.0.0.1 can do: one forged datagram, from a plain UDP socket."""
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))
        await sock.sendto(datagram, (str(to.ip), to.port))


def _sees_live(viewer: Node, node: NodeId) -> bool:
    return viewer.engine.liveness(node, viewer.snapshot().taken_at) is Liveness.LIVE


@pytest.mark.trio
@pytest.mark.parametrize("forged", [U64_MAX, U64_MAX - 3000])
async def test_a_relayed_heartbeat_at_the_u64_edge_does_not_kill_its_victim(forged: int) -> None:
    # Finding 1, end to end over real UDP: a Syn to A names C with a heartbeat at (or a
    # few thousand beats short of) 2^64-1; A relays it, and C used to die of it.
    async with open_cluster(2) as (relay, victim):
        old = victim.self_id
        await wait_until(lambda: _sees_live(relay, old), 10, "the relay to see the victim live")
        syn = Syn("testing", Digest({old: NodeDigest(forged, 0, 1)}))
        await _send_raw(encode(syn), relay.gossip_addr)
        await wait_until(
            lambda: victim.self_id.generation == old.generation + 1, 10, "a new generation"
        )
        new = victim.self_id
        assert victim.stats.self_repairs[REPAIR_HEARTBEAT_AT_EDGE] == 1
        # Alive and gossiping: the relay sees the new incarnation live, beating sanely.
        rounds = victim.stats.rounds
        await wait_until(lambda: _sees_live(relay, new), 10, "the relay to see the new generation")
        assert victim.stats.rounds > rounds
        assert victim.engine.self_state.heartbeat < HEADROOM_CEILING
        assert not victim.stats.internal_errors
        metrics = render_metrics(victim.snapshot(), victim.stats)
        assert 'gossip_tui_self_repairs_total{reason="heartbeat_at_edge"} 1' in metrics


@pytest.mark.trio
async def test_get_node_prefers_the_live_generation_over_a_forged_higher_one() -> None:
    # Finding 11: a made-up generation 2^64-1 of a real name is a ghost with no keys.
    async with open_cluster(2) as (viewer, real):
        await wait_until(lambda: _sees_live(viewer, real.self_id), 10, "the real node live")
        ghost = NodeId(real.self_id.node_id, U64_MAX, real.self_id.gossip_addr)
        await _send_raw(
            encode(Syn("testing", Digest({ghost: NodeDigest(5, 0, 0)}))), viewer.gossip_addr
        )
        await wait_until(lambda: ghost in viewer.engine.state.node_states, 10, "the ghost")
        reply = await acall(GossipApi(viewer), "GET", f"/nodes/{real.self_id.node_id}")
        assert reply is not None and reply.status == 200
        shown = reply.json()["node"]["chitchat_id"]
        assert shown["generation_id"] == real.self_id.generation
        assert reply.json()["key_values"]


def _chitchat_view_of(port: int, node: NodeId) -> dict[str, Any] | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        body = json.loads(response.read())
    for state in body["cluster_state"]["node_states"]:
        chitchat_id = state["chitchat_id"]
        if (chitchat_id["node_id"], chitchat_id["generation_id"]) == (
            node.node_id,
            node.generation,
        ):
            return dict(state)
    return None


def _keys(state: dict[str, Any] | None) -> dict[str, str]:
    if state is None:
        return {}
    return {
        key: entry["value"]
        for key, entry in state["key_values"].items()
        if entry.get("status", "Set") == "Set"
    }


@pytest.mark.slow
@pytest.mark.skipif(
    not Path(CHITCHAT_TEST_BIN).is_file(),
    reason="no chitchat-test binary: set CHITCHAT_TEST_BIN to one built from quickwit-oss/chitchat",
)
@pytest.mark.trio
@pytest.mark.parametrize(
    ("forged_version", "repair"),
    [(100, REPAIR_STATE_AHEAD), (U64_MAX - 1, REPAIR_VERSIONS_AT_EDGE)],
)
async def test_a_chitchat_peer_holding_forged_keys_of_ours_takes_our_truth_back(
    tmp_path: Path, forged_version: int, repair: str
) -> None:
    # Real chitchat 0.10 must decode what the repair sends and take its reset path (or,
    # for a version frozen near 2^64, learn our new generation and its keys).
    config = NodeConfig(
        listen_addr=SocketAddress.parse("127.0.0.1:0"),
        node_id="gt-owner",
        generation=1,
        cluster_id="testing",  # chitchat-test's
        gossip_interval=0.1,
        failure_detector=FAST_DETECTOR,
        initial_key_values={"role": "db"},
    )
    port = free_port()
    async with open_node(config) as ours:
        with (tmp_path / "chitchat.log").open("wb") as log:
            process = subprocess.Popen(
                [
                    CHITCHAT_TEST_BIN,
                    *("--listen_addr", f"127.0.0.1:{port}", "--node_id", "cc-peer"),
                    *("--interval_ms", "100", "--seed", str(ours.gossip_addr)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:

            async def chitchat_holds(predicate: Any, what: str) -> dict[str, Any] | None:
                with trio.fail_after(20):
                    while True:
                        try:
                            view = await trio.to_thread.run_sync(
                                _chitchat_view_of, port, ours.self_id
                            )
                        except OSError:
                            view = None  # not serving yet
                        if predicate(view):
                            return view
                        await trio.sleep(0.05)

            def truth() -> dict[str, str]:
                return {k: v.value for k, v in ours.engine.self_state.visible_items()}

            held = await chitchat_holds(lambda v: _keys(v) == truth(), "our keys")
            assert held is not None
            writer = DeltaWriter(60_000)
            assert writer.try_add_node(ours.self_id, 0, held["max_version"])
            assert writer.try_add_kv("role", "pwned", forged_version, KeyStatus.SET)
            assert writer.try_add_kv(LEAVING_KEY, "1", forged_version + 1, KeyStatus.SET)
            await _send_raw(encode(Ack(writer.finish())), SocketAddress.parse(f"127.0.0.1:{port}"))
            await wait_until(lambda: ours.stats.self_repairs[repair] >= 1, 20, "the repair")
            own = ours.engine.self_state
            healed = await chitchat_holds(
                lambda v: v is not None and v["max_version"] == own.max_version,
                "our republished state",
            )
            assert healed is not None
            assert _keys(healed) == truth() and truth()["role"] == "db"
            assert LEAVING_KEY not in healed["key_values"]
            assert healed["last_gc_version"] == own.last_gc_version
            if repair == REPAIR_STATE_AHEAD:
                assert own.last_gc_version > forged_version + 1
            else:
                assert ours.self_id.generation == 2
            assert process.poll() is None
        finally:
            process.kill()
            process.wait(timeout=5)


# --------------------------------------------------------------------------- mutated loops


def _failing(times: int, real: Any, error: type[Exception] = RuntimeError) -> Any:
    """``real``, but raising a bug's exception on its first ``times`` calls."""
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls <= times:
            raise error("an injected bug")
        return real(*args, **kwargs)

    return wrapper


@pytest.mark.trio
async def test_the_gossip_and_detector_loops_survive_an_engine_that_raises(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    network = MemoryNetwork(seed=21)
    async with open_cluster(2, transport=network.transport()) as (node, peer):
        engine = node.engine
        engine.start_round = _failing(3, engine.start_round)  # type: ignore[method-assign]
        engine.update_liveness = _failing(3, engine.update_liveness)  # type: ignore[method-assign]
        await wait_until(
            lambda: (
                node.stats.internal_errors["gossip_loop"] == 3
                and node.stats.internal_errors["failure_detector_loop"] == 3
            ),
            10,
            "the injected errors to be counted",
        )
        rounds = node.stats.rounds
        await wait_until(lambda: node.stats.rounds > rounds + 3, 10, "rounds to go on")
        await wait_until(lambda: _sees_live(node, peer.self_id), 10, "the detector to go on")
        assert "internal error in gossip_loop" in caplog.text
        metrics = render_metrics(node.snapshot(), node.stats)
        assert 'gossip_tui_internal_errors_total{task="gossip_loop"} 3' in metrics


@pytest.mark.trio
async def test_the_receive_loop_and_the_encoder_survive_a_bug(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = MemoryNetwork(seed=22)
    async with open_cluster(2, transport=network.transport()) as (node, peer):
        # The decoder of the receive path: its bug costs the datagram, counted as an
        # engine step's would be.
        monkeypatch.setattr(receive_module, "decode", _failing(2, decode))
        # A struct.error escaping the codec is what killed the node in finding 1.
        monkeypatch.setattr(node_module, "encode", _failing(2, encode, struct.error))

        # Both nodes share the patched module: count the errors over both.
        def errors(task: str) -> int:
            return node.stats.internal_errors[task] + peer.stats.internal_errors[task]

        await wait_until(
            lambda: errors("handle_message") == 2 and errors("encode") == 2,
            10,
            "the injected errors to be counted",
        )
        received = node.stats.datagrams_in
        node.set("after", "bugs")
        await wait_until(lambda: peer.get("after", node.self_id) == "bugs", 10, "gossip to go on")
        assert node.stats.datagrams_in > received


@pytest.mark.trio
async def test_a_bug_in_publishing_costs_its_events_never_a_write(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork(seed=23)
    async with open_cluster(1, transport=network.transport()) as (node,):
        events = node.subscribe()
        fanout = node._fanout
        fanout.publish = _failing(1, fanout.publish)  # type: ignore[method-assign]
        node.set("lost", "1")  # its publication raises: these events are lost, not the write
        assert node.get("lost") == "1"
        assert node.stats.internal_errors["publish"] == 1
        node.set("later", "2")
        with trio.fail_after(5):
            async for event in events:
                if isinstance(event, KeyChanged) and event.key == "later":
                    break
