"""gossip-tui beside live chitchat nodes that speak protocol V1 (issue 16).

These run only where CHITCHAT_V1_TEST_BIN names a chitchat-test binary built from a
chitchat that speaks V1 (after 0.10.1, e.g. commit 2601fa8; it is not part of this
project and CI does not build it), and skip otherwise. Such a chitchat-test initiates V1
and answers each Syn in the Syn's version. Every node gossips on 127.0.0.1, on ports
free at the time, and serves chitchat-test's HTTP routes (``GET /``, ``/set_kv/``) on the
same port, so both kinds are read alike.

What is checked against the live peer:

* a mixed cluster (two chitchat nodes, a gossip-tui node initiating V1 and one initiating
  V0) converges, and keys cross both ways;
* each node answers a Syn of each version in that version;
* ``kill -9`` of a chitchat node: gossip-tui declares it dead, then forgets it, and a
  digest that still lists it at its last heartbeat does not bring it back (the forgotten-
  node cache, which chitchat enlarged after 0.10.1), one with a higher heartbeat does:
  the same on chitchat's side and ours;
* gossip-tui's graceful leave reaches chitchat nodes (chitchat-test itself offers none: it
  has no leave route, and SIGTERM ends it without a word, like ``kill -9``);
* the reply to an empty digest (a Syn from a node that knows nothing) fits one datagram
  in both versions, on a node whose own digest and keys nearly fill one.
"""

from __future__ import annotations

import base64
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from gossip_tui.core.agreement import AgreementReading, ViewSource
from gossip_tui.core.codec import (
    PROTOCOL_V0,
    PROTOCOL_V1,
    _block_stream,
    _digest_entries,
    encode,
)
from gossip_tui.core.failure_detector import FailureDetectorConfig
from gossip_tui.core.messages import Ack, Delta, Digest, NodeDigest, Syn, SynAck
from gossip_tui.core.models import NodeId, SocketAddress
from gossip_tui.core.node_config import NodeConfig
from gossip_tui.core.simulation import chitchat_test_name
from gossip_tui.node import open_node

from .node.helpers import wait_until
from .processes import free_port, get_json, running_chitchat_test, running_node, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from interop_chitchat import (
    CHITCHAT_TEST_CLUSTER_ID,
    answers_in,
    ask,
    empty_syn,
    exchange,
    probe_socket,
)

CHITCHAT_V1_TEST_BIN = os.environ.get("CHITCHAT_V1_TEST_BIN", "")
INTERVAL_MS = "200"
# chitchat-test's fixed dead-node grace period, given to the gossip-tui nodes too.
DEAD_NODE_GRACE_PERIOD = 10
# chitchat forgets a dead node once the grace period has passed since it was declared
# dead, checked once a round; the observers do not declare it at the same moment.
DEADNODE_FORGET_TIMEOUT = DEAD_NODE_GRACE_PERIOD + 30
DATAGRAM_LIMIT = 65_507

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHITCHAT_V1_TEST_BIN).is_file(),
        reason="no V1 chitchat-test binary: set CHITCHAT_V1_TEST_BIN to a chitchat-test "
        "built from quickwit-oss/chitchat after 0.10.1 (e.g. commit 2601fa8) to run "
        "gossip-tui beside live V1 chitchat nodes",
    ),
]


class Cluster:
    """Nodes of both kinds on 127.0.0.1, started in order, each seeded by an earlier one."""

    def __init__(self, stack: ExitStack, tmp_path: Path) -> None:
        self.stack = stack
        self.tmp_path = tmp_path
        self.ports: dict[str, int] = {}
        self.processes: dict[str, Any] = {}

    def chitchat(self, name: str, seed: str | None = None) -> int:
        port = free_port()
        seed_args = () if seed is None else ("--seed", f"127.0.0.1:{self.ports[seed]}")
        self.processes[name] = self.stack.enter_context(
            running_chitchat_test(
                CHITCHAT_V1_TEST_BIN,
                self.tmp_path,
                name,
                port,
                *("--interval_ms", INTERVAL_MS, *seed_args),
            )
        )
        self.ports[name] = port
        wait_for(lambda: answers_in(port, PROTOCOL_V0) is not None, 20, f"{name} to answer")
        return port

    def gossip_tui(self, name: str, seed: str, protocol_version: int) -> int:
        port = free_port()
        process, _log = self.stack.enter_context(
            running_node(
                self.tmp_path,
                name,
                *("--listen-addr", f"127.0.0.1:{port}", "--interval-ms", INTERVAL_MS),
                *("--seed", f"127.0.0.1:{self.ports[seed]}"),
                *("--cluster-id", CHITCHAT_TEST_CLUSTER_ID),
                *("--protocol-version", str(protocol_version)),
                *("--dead-node-grace-period", str(DEAD_NODE_GRACE_PERIOD)),
                *("--marked-for-deletion-grace-period", "60"),
            )
        )
        self.processes[name] = process
        self.ports[name] = port
        return port

    def view(self, name: str) -> dict[str, Any]:
        body = get_json(f"http://127.0.0.1:{self.ports[name]}/")
        assert isinstance(body, dict)
        return body

    def running(self) -> list[str]:
        return [name for name, p in self.processes.items() if p.poll() is None]

    def views(self) -> dict[str, dict[str, Any]]:
        return {name: self.view(name) for name in self.running()}

    def wait_all_live(self, timeout: float = 60) -> None:
        """Until every node started lists every node started live (a node that died counts
        against it: it is missing from the others' live lists)."""
        everyone = set(self.ports)
        self.wait(
            lambda: all(_names(v["live_nodes"]) == everyone for v in self.views().values()),
            timeout,
            "every node to list every node live",
        )

    def set_kv(self, name: str, key: str, value: str) -> None:
        get_json(f"http://127.0.0.1:{self.ports[name]}/set_kv/?key={key}&value={quote(value)}")

    def kill(self, name: str) -> None:
        self.processes[name].kill()
        self.processes[name].wait(timeout=10)

    def wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Like ``wait_for``, with a node not answering yet counted as "not yet"."""

        def holds() -> bool:
            try:
                return condition()
            except OSError:
                return False

        wait_for(holds, timeout, what)


def _names(nodes: list[dict[str, Any]]) -> set[str]:
    return {node["node_id"] for node in nodes}


def _state(view: dict[str, Any], name: str) -> dict[str, Any] | None:
    for state in view["cluster_state"]["node_states"]:
        if state["chitchat_id"]["node_id"] == name:
            return dict(state)
    return None


def _value(view: dict[str, Any], name: str, key: str) -> str | None:
    state = _state(view, name)
    entry = None if state is None else state["key_values"].get(key)
    return None if entry is None else str(entry["value"])


def _node_id(state: dict[str, Any]) -> NodeId:
    chitchat_id = state["chitchat_id"]
    return NodeId(
        chitchat_id["node_id"],
        int(chitchat_id["generation_id"]),
        SocketAddress.parse(chitchat_id["gossip_advertise_addr"]),
    )


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """c0 and c1 (chitchat, V1), g0 (gossip-tui initiating V1), g1 (initiating V0), all
    live everywhere. Tests that use it leave every node running."""
    with ExitStack() as stack:
        cluster = Cluster(stack, tmp_path_factory.mktemp("mixed-v1"))
        cluster.chitchat("c0")
        if answers_in(cluster.ports["c0"], PROTOCOL_V1) is None:
            pytest.skip(f"{CHITCHAT_V1_TEST_BIN} does not answer a V1 Syn: not a V1 build")
        cluster.chitchat("c1", seed="c0")
        cluster.gossip_tui("g0", seed="c1", protocol_version=PROTOCOL_V1)
        cluster.gossip_tui("g1", seed="c0", protocol_version=PROTOCOL_V0)
        cluster.wait_all_live()
        yield cluster


def test_a_mixed_v0_v1_cluster_converges_and_keys_cross_both_ways(mixed: Cluster) -> None:
    mixed.set_kv("g0", "from_v1_tui", "blue & green")
    mixed.set_kv("g1", "from_v0_tui", "plain")
    mixed.set_kv("c1", "from_chitchat", "rust")
    mixed.wait(
        lambda: all(
            _value(v, "g0", "from_v1_tui") == "blue & green"
            and _value(v, "g1", "from_v0_tui") == "plain"
            and _value(v, "c1", "from_chitchat") == "rust"
            for v in mixed.views().values()
        ),
        30,
        "each key to reach every node",
    )


@pytest.mark.parametrize("protocol_version", [PROTOCOL_V0, PROTOCOL_V1])
def test_every_node_answers_a_syn_in_its_version(mixed: Cluster, protocol_version: int) -> None:
    everyone = {"c0", "c1", "g0", "g1"}
    for name in ("c0", "c1", "g0", "g1"):
        reply = answers_in(mixed.ports[name], protocol_version)
        assert reply is not None, f"{name} did not answer a V{protocol_version} Syn in kind"
        listed = {node.node_id for node in reply.digest.nodes}
        if name.startswith("c"):
            assert listed == everyone
        else:
            # A reply to an address that has not shown it receives is held to a few times
            # the Syn that drew it, plus the node's own digest entry.
            assert name in listed


def test_kill_9_of_a_chitchat_node_then_a_stale_digest_does_not_bring_it_back(
    tmp_path: Path,
) -> None:
    with ExitStack() as stack:
        cluster = Cluster(stack, tmp_path)
        cluster.chitchat("c0")
        cluster.chitchat("c1", seed="c0")
        cluster.gossip_tui("g0", seed="c0", protocol_version=PROTOCOL_V1)
        cluster.gossip_tui("g1", seed="c1", protocol_version=PROTOCOL_V0)
        cluster.wait_all_live()
        cluster.kill("c1")
        killed_at = time.monotonic()
        # The observers do not declare c1 dead at the same moment, and chitchat forgets it
        # 10 s after its own verdict: note each one's verdict, and c1's heartbeat then.
        last_heartbeats: dict[str, int] = {}
        c1_id: list[NodeId] = []

        def all_saw_c1_dead() -> bool:
            for name, view in cluster.views().items():
                state = _state(view, "c1")
                if state is not None and "c1" in _names(view["dead_nodes"]):
                    last_heartbeats.setdefault(name, int(state["heartbeat"]))
                    c1_id[:] = [_node_id(state)]
            return set(last_heartbeats) == {"c0", "g0", "g1"}

        cluster.wait(all_saw_c1_dead, 60, "every survivor to list c1 dead")
        dead_after = time.monotonic() - killed_at
        cluster.wait(
            lambda: all(_state(v, "c1") is None for v in cluster.views().values()),
            DEADNODE_FORGET_TIMEOUT,
            f"every survivor to forget c1 after the {DEAD_NODE_GRACE_PERIOD} s grace period",
        )
        # Heartbeats only grow: the lowest one noted is at most what each survivor
        # remembers of c1; c1 beat at most 5 times a second, so far above the highest
        # noted is above what any of them heard since.
        stale = min(last_heartbeats.values())
        fresh = max(last_heartbeats.values()) + 10_000
        for name in ("c0", "g0", "g1"):
            # A digest listing c1 at a heartbeat already seen, and a node never seen
            # (whose arrival shows the digest was read): the newcomer is learnt, c1 not.
            marker = _fake_node(10_000, f"marker-{name}")
            _send_digest(cluster.ports[name], {c1_id[0]: stale, marker: 1})
            cluster.wait(
                lambda name=name, marker=marker: (
                    _state(cluster.view(name), marker.node_id) is not None
                ),
                10,
                f"{name} to learn {marker.node_id}",
            )
            assert _state(cluster.view(name), "c1") is None, (
                f"{name} learnt c1 again from a digest at heartbeat {stale}, "
                f"after it had forgotten it (dead after {dead_after:.1f} s)"
            )
        for name in ("c0", "g0", "g1"):
            _send_digest(cluster.ports[name], {c1_id[0]: fresh})
            cluster.wait(
                lambda name=name: _state(cluster.view(name), "c1") is not None,
                10,
                f"{name} to learn c1 again from a digest at a higher heartbeat",
            )


def _fake_node(i: int, name: str = "") -> NodeId:
    """A node that never runs, at an address where nothing listens (127.77.0.0/16: still
    loopback, and never the port of a node of some other test)."""
    addr = SocketAddress.parse(f"127.77.{i // 250}.{i % 250 + 1}:7")
    return NodeId(name or f"fake-node-{i:04d}", 1, addr)


def _send_digest(port: int, heartbeats: dict[NodeId, int]) -> None:
    """A V1 Syn whose digest lists ``heartbeats`` (no keys), from a throwaway socket; the
    reply, if any, is not needed."""
    digest = Digest({node: NodeDigest(hb, 0, 0) for node, hb in heartbeats.items()})
    ask(port, Syn(CHITCHAT_TEST_CLUSTER_ID, digest, protocol_version=PROTOCOL_V1), 0.2)


def test_a_graceful_leave_of_a_gossip_tui_node_reaches_the_chitchat_nodes(
    tmp_path: Path,
) -> None:
    with ExitStack() as stack:
        cluster = Cluster(stack, tmp_path)
        cluster.chitchat("c0")
        cluster.chitchat("c1", seed="c0")
        cluster.gossip_tui("g0", seed="c1", protocol_version=PROTOCOL_V1)
        cluster.wait_all_live()
        cluster.processes["g0"].terminate()
        assert cluster.processes["g0"].wait(timeout=30) == 0
        for name in ("c0", "c1"):
            view = cluster.view(name)
            assert _value(view, "g0", "__gossip_tui.leaving") == "1", (
                f"{name} did not get g0's leave marker before g0 went away"
            )


# Fake nodes put in the digest of the node under test: 55 bytes each in a V0 digest, so
# 700 of them take 38.6 KB of the datagram, their V1 digest 2.2 KB. The keys, 60 random
# values of 1,000 characters, take ~45 KB compressed: more than a V0 reply has left.
FAKE_NODES = 700
BIG_KEYS = 60


def test_the_reply_to_an_empty_digest_fits_one_datagram_in_each_version(
    tmp_path: Path,
) -> None:
    """chitchat after 0.10.1 sizes the delta of a SynAck with its own digest, not the
    Syn's (which is empty from a node that knows nothing), but with the digest in its
    configured version while it replies in the Syn's: a V1-configured node answering a V0
    Syn can overshoot. Here our V1-configured node, its digest and keys near a datagram,
    answers an empty Syn of each version with one datagram holding its keys."""
    with ExitStack() as stack:
        cluster = Cluster(stack, tmp_path)
        cluster.chitchat("c0")
        cluster.gossip_tui("g0", seed="c0", protocol_version=PROTOCOL_V1)
        cluster.wait_all_live()
        # Random values: zstd must not shrink the delta below what the digest leaves.
        for i in range(BIG_KEYS):
            cluster.set_kv("g0", f"big{i:02d}", base64.b64encode(os.urandom(750)).decode())
        cluster.wait(
            lambda: _value(cluster.view("c0"), "g0", f"big{BIG_KEYS - 1:02d}") is not None,
            30,
            "c0 to get g0's keys",
        )
        sock = stack.enter_context(probe_socket())
        port = cluster.ports["g0"]
        # Our node holds replies to an address that has not answered it to a few times
        # the datagram that drew them: answer its SynAck with an Ack, as a peer does.
        first = exchange(sock, port, empty_syn(PROTOCOL_V0))
        assert first is not None and isinstance(first[0], SynAck)
        sock.sendto(encode(Ack(Delta())), ("127.0.0.1", port))
        fakes = {_fake_node(i): 1 for i in range(FAKE_NODES)}
        _send_digest(port, fakes)
        cluster.wait(
            lambda: len(cluster.view("g0")["cluster_state"]["node_states"]) >= FAKE_NODES,
            10,
            "g0 to learn the fake nodes",
        )
        for version in (PROTOCOL_V0, PROTOCOL_V1):
            reply = exchange(sock, port, empty_syn(version))
            assert reply is not None, f"no reply to an empty V{version} Syn"
            message, size = reply
            assert isinstance(message, SynAck) and message.protocol_version == version
            assert size <= DATAGRAM_LIMIT
            # Our own node first, so the peer learns us and our keys.
            assert len(message.digest.nodes) > FAKE_NODES
            assert any(
                nd.node.node_id == "g0" and nd.key_values for nd in message.delta.node_deltas
            )


def _groups(reading: AgreementReading) -> list[tuple[set[str], set[str]]]:
    """Each group's live members' names and where their views were read from."""
    return [
        ({m.node.node_id for m in g.members if m.live}, {m.source for m in g.members})
        for g in reading.groups
    ]


@pytest.mark.trio
async def test_the_agreement_view_reads_chitchat_peers_from_their_digests(
    tmp_path: Path,
) -> None:
    """The ``A`` view judges a chitchat peer (which publishes no view) by the nodes its
    last digest listed: in a settled mixed cluster it agrees with the gossip-tui nodes'
    published views. After a ``kill -9`` a chitchat digest still lists the dead node for
    half the dead-node grace period, so the chitchat peers form their own group until
    then; once the dead node is forgotten, everyone agrees again."""
    with ExitStack() as stack:
        cluster = Cluster(stack, tmp_path)
        cluster.chitchat("c0")
        cluster.chitchat("c1", seed="c0")
        cluster.gossip_tui("g1", seed="c1", protocol_version=PROTOCOL_V0)
        config = NodeConfig(
            listen_addr=SocketAddress.parse("127.0.0.1:0"),
            node_id="g0",
            cluster_id=CHITCHAT_TEST_CLUSTER_ID,
            seeds=(f"127.0.0.1:{cluster.ports['c0']}",),
            gossip_interval=int(INTERVAL_MS) / 1000,
            failure_detector=FailureDetectorConfig(dead_node_grace_period=DEAD_NODE_GRACE_PERIOD),
            protocol_version=PROTOCOL_V1,
        )
        async with open_node(config) as g0:
            everyone = {"c0", "c1", "g0", "g1"}
            await wait_until(
                lambda: [group for group, _ in _groups(g0.agreement())] == [everyone],
                60,
                "one group of all four",
            )
            ((_, sources),) = _groups(g0.agreement())
            assert sources == {ViewSource.PUBLISHED, ViewSource.DIGEST}
            cluster.kill("c1")
            await wait_until(
                lambda: all(
                    m.node.node_id != "c1" for g in g0.agreement().groups for m in g.members
                ),
                DEADNODE_FORGET_TIMEOUT,
                "c1 to be forgotten",
            )
            await wait_until(
                lambda: [group for group, _ in _groups(g0.agreement())] == [everyone - {"c1"}],
                30,
                "one group of the three left",
            )


# More nodes than gossip-tui remembered when it followed chitchat 0.10.1 (500).
FORGOTTEN_NODES = 600


def test_nodes_forgotten_by_the_hundred_are_not_learnt_again_from_a_stale_digest(
    tmp_path: Path,
) -> None:
    """chitchat after 0.10.1 remembers the last 5,000 nodes it forgot (0.10.1: 500), so a
    peer still listing one at an old heartbeat cannot bring it back. 600 dead nodes are
    forgotten at once, then offered again at the same heartbeat: the live chitchat node
    learns none of them back, and nor may ours."""
    with ExitStack() as stack:
        cluster = Cluster(stack, tmp_path)
        cluster.chitchat("c0")
        cluster.gossip_tui("g0", seed="c0", protocol_version=PROTOCOL_V1)
        cluster.wait_all_live()
        fakes = {_fake_node(i): 1 for i in range(FORGOTTEN_NODES)}
        for name in ("c0", "g0"):
            _send_digest(cluster.ports[name], fakes)
        cluster.wait(
            lambda: all(
                len(cluster.view(n)["dead_nodes"]) == FORGOTTEN_NODES for n in ("c0", "g0")
            ),
            10,
            "both nodes to hold the fake nodes dead",
        )
        cluster.wait(
            lambda: all(
                len(cluster.view(n)["cluster_state"]["node_states"]) == 2 for n in ("c0", "g0")
            ),
            DEADNODE_FORGET_TIMEOUT,
            "both nodes to forget them",
        )
        marker = _fake_node(10_000, "marker")
        for name in ("c0", "g0"):
            _send_digest(cluster.ports[name], {**fakes, marker: 1})
            cluster.wait(
                lambda name=name: _state(cluster.view(name), "marker") is not None,
                10,
                f"{name} to learn the marker (the digest was read)",
            )
            states = cluster.view(name)["cluster_state"]["node_states"]
            back = [s for s in states if s["chitchat_id"]["node_id"].startswith("fake-node-")]
            assert back == [], f"{name} learnt {len(back)} forgotten nodes back"


# chitchat-test ids: at this count chitchat's own V1 encoding of the digest is over a
# datagram, ours (entries by reversed id, zstd level 19) still fits one.
COMPACTED_NODES = 5_000


def test_a_compacted_v1_digest_is_read_whole_by_a_live_chitchat_node(tmp_path: Path) -> None:
    """gossip-tui sends a V1 digest too large in chitchat's encoding in another entry
    order and at a stronger level: the live chitchat decoder learns every node of it."""
    digest = Digest(
        {
            _fake_node(i, chitchat_test_name(i)): NodeDigest(1_000 + i, 0, i % 500)
            for i in range(COMPACTED_NODES)
        }
    )
    syn = Syn(CHITCHAT_TEST_CLUSTER_ID, digest, protocol_version=PROTOCOL_V1)
    wire = encode(syn)
    assert len(wire) <= DATAGRAM_LIMIT
    assert len(_block_stream(b"".join(_digest_entries(digest)))) > DATAGRAM_LIMIT
    with ExitStack() as stack:
        cluster = Cluster(stack, tmp_path)
        port = cluster.chitchat("c0")
        ask(port, syn, 0.2)
        cluster.wait(
            lambda: len(cluster.view("c0")["cluster_state"]["node_states"]) == COMPACTED_NODES + 1,
            20,
            f"c0 to learn all {COMPACTED_NODES} nodes",
        )
        learnt = {
            state["chitchat_id"]["node_id"]: int(state["heartbeat"])
            for state in cluster.view("c0")["cluster_state"]["node_states"]
        }
        assert all(learnt.get(node.node_id) == nd.heartbeat for node, nd in digest.nodes.items())
