#!/usr/bin/env python3
"""Codec and core micro-benchmarks: the CPU a node spends per message, with no I/O.

Cases (median and 95th percentile of one call, in microseconds):

* codec: a Syn carrying a full ``--nodes``-node digest (default 100), encoded and decoded;
  SynAcks whose delta ``DeltaWriter`` built for a peer that knows nothing (values of
  100-200 bytes, half compressible JSON, half random base64): the "~60 KB delta" (100
  nodes x 3 keys: ~60 KB of operations, ~25 KB on the wire once compressed) and a
  "full-datagram delta" (40 keys a node, filled to the 65,507-byte datagram: ~55 KB on the
  wire, ~130 KB of operations); each built, encoded from scratch (compressing), encoded as
  the runtime sends it (the writer's bytes reused) and decoded; the Ack, decoded;
* core: ``ClusterState.apply_delta`` of a ``--state-nodes``-node delta (default 1,000
  nodes, 3 key-values each) into a state that knows the nodes but none of their keys;
  ``compute_digest`` and ``compute_delta`` (for an empty peer) of a 100-node state; and a
  whole ``GossipEngine.handle_message`` for a Syn, a SynAck and an Ack between two
  100-node engines, i.e. what one node pays per datagram of a gossip round;
* cluster (with ``--form-nodes N``): N nodes forming in the core Simulation at the demo's
  0.5 s interval, measured once: rounds until every node lists all N live, CPU seconds,
  and the datagram and byte totals (fixed by the seed: a change that keeps the wire the
  same keeps them).

Target: every codec operation under 1 ms.

    python scripts/bench/core.py
    python scripts/bench/core.py --runs 1000 --json bench-results/core.json
    python scripts/bench/core.py --quick
    python scripts/bench/core.py --nodes 200 --state-nodes 200 --form-nodes 200
    python scripts/bench/core.py --risen-syns 400 --count-calls   # calls per risen Syn

Instructions for 400 risen Syns (the difference of two runs; the set-up is the same):

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python scripts/bench/core.py \
        --risen-syns 400 [--setup-only]
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import gc
import ipaddress
import json
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _cluster as bench
import attrs
from core_rounds import call_counts

from gossip_tui.core.codec import MAX_DATAGRAM_SIZE, DeltaWriter, decode, digest_size, encode
from gossip_tui.core.engine import GossipEngine
from gossip_tui.core.messages import (
    Ack,
    Delta,
    Digest,
    KeyValueMutation,
    NodeDelta,
    NodeDigest,
    Syn,
    SynAck,
)
from gossip_tui.core.models import KeyStatus, NodeId, SocketAddress
from gossip_tui.core.simulation import Simulation
from gossip_tui.core.state import ClusterState

HEADER_LEN = 4
CODEC_TARGET_US = 1_000.0


def fleet(count: int, rng: random.Random, base_port: int = 10_000) -> list[NodeId]:
    """``count`` node ids, as the decoder hands them out (a node learns its peers from
    decoded digests, and the codec interns the NodeId of each wire form)."""
    nodes = []
    for i in range(count):
        port = base_port + i % 50_000
        ip = ipaddress.IPv4Address(0x7F000001 + i // 50_000)
        name = f"server:{ip}:{port}-{rng.choice(['brave', 'calm', 'keen'])}-{i}"
        generation = 1_700_000_000 + rng.randrange(10_000_000)
        nodes.append(NodeId(name, generation, SocketAddress(ip, port)))
    interned: list[NodeId] = []
    for start in range(0, count, 500):  # a digest of 500 nodes fits in a datagram
        chunk = nodes[start : start + 500]
        digest = Digest({node: NodeDigest(1, 0, 0) for node in chunk})
        decoded = decode(encode(Syn("intern", digest)))
        assert isinstance(decoded, Syn)
        interned.extend(decoded.digest.nodes)
    return interned


def value(rng: random.Random, compressible: bool) -> str:
    size = rng.randrange(100, 201)
    if compressible:
        text = '{"status":"ready","role":"indexer","zone":"eu-west-1a","load":0.42}'
        return (text * 4)[:size]
    return base64.b64encode(rng.randbytes(size)).decode()[:size]


def state_with(nodes: list[NodeId], keys_per_node: int, rng: random.Random) -> ClusterState:
    """A cluster state in which every node has ``keys_per_node`` keys."""
    state = ClusterState()
    for node in nodes:
        node_state = state.node_state_or_init(node)
        node_state.heartbeat = rng.randrange(1, 100_000)
        for k in range(keys_per_node):
            node_state.set(f"service.{k}.endpoint", value(rng, compressible=(k % 2 == 0)))
    state.drain_changes()
    return state


def fill_delta(source: ClusterState, nodes: list[NodeId], budget: int) -> Delta:
    """What a peer that knows nothing gets: DeltaWriter fed node by node, as the engine does,
    stopping at the first refusal."""
    writer = DeltaWriter(budget)
    for node in nodes:
        if not writer.try_add_node(node, 0, 0):
            break
        for key, versioned in source.node_states[node].key_values.items():
            if not writer.try_add_kv(key, versioned.value, versioned.version, versioned.status):
                return writer.finish()
    return writer.finish()


def op_stream_len(delta: Delta) -> int:
    """Bytes of the delta's operations before block framing and compression."""
    total = 0
    for nd in delta.node_deltas:
        total += 1 + 2 + len(nd.node.node_id.encode()) + 8 + 5 + 2 + 16
        for kv in nd.key_values:
            total += 1 + 2 + len(kv.key.encode()) + 2 + len(kv.value.encode()) + 9
    return total


def measure(
    fn: Callable[[], object], runs: int, setup: Callable[[], object] | None = None
) -> dict[str, float]:
    """Time ``fn`` ``runs`` times; ``setup`` (untimed) runs before every call when given."""
    for _ in range(max(3, runs // 20)):
        if setup is not None:
            setup()
        fn()
    samples = []
    clock = time.perf_counter_ns
    gc_was_enabled = gc.isenabled()
    try:
        for _ in range(runs):
            if setup is not None:
                setup()
            gc.disable()
            start = clock()
            fn()
            samples.append((clock() - start) / 1_000)
            if gc_was_enabled:
                gc.enable()
    finally:
        if gc_was_enabled:
            gc.enable()
    samples.sort()
    return {
        "median_us": statistics.median(samples),
        "p95_us": bench.percentile(samples, 0.95),
        "min_us": samples[0],
        "runs": runs,
    }


def run_cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    rng = random.Random(args.seed)
    runs: int = args.runs
    results: list[dict[str, Any]] = []

    def case(
        group: str,
        name: str,
        size: int | None,
        fn: Callable[[], object],
        *,
        setup: Callable[[], object] | None = None,
        note: str = "",
        target_us: float | None = None,
    ) -> None:
        figures = measure(fn, runs, setup)
        met = None if target_us is None else figures["median_us"] <= target_us
        results.append(
            {"group": group, "case": name, "bytes": size, "note": note, "target_met": met} | figures
        )
        bench.log(f"{name}: {figures['median_us']:.1f} µs")

    # ---------------------------------------------------------------- codec
    nodes = fleet(args.nodes, rng)
    state = state_with(nodes, args.keys_per_node, rng)
    digest = state.compute_digest()
    syn = Syn("production-cluster", digest)
    syn_bytes = encode(syn)
    assert decode(syn_bytes) == syn
    label = f"{args.nodes}-node digest"
    case("codec", f"syn {label}: encode", len(syn_bytes), lambda: encode(syn), target_us=1000)
    case("codec", f"syn {label}: decode", len(syn_bytes), lambda: decode(syn_bytes), target_us=1000)

    budget = MAX_DATAGRAM_SIZE - HEADER_LEN - digest_size(digest)
    shapes = [
        ("~60 KB delta", state),  # ~60 KB of operations, compressed to ~25 KB on the wire
        ("full-datagram delta", state_with(nodes, args.full_keys_per_node, rng)),
    ]
    for label, source in shapes:
        delta = fill_delta(source, nodes, budget)
        synack = SynAck(digest, delta)
        synack_bytes = encode(synack)
        assert decode(synack_bytes) == synack
        kvs = sum(len(nd.key_values) for nd in delta.node_deltas)
        note = (
            f"{len(delta.node_deltas)} nodes, {kvs} kvs, "
            f"{op_stream_len(delta) / 1000:.0f} KB of ops"
        )
        scratch = SynAck(digest, Delta(delta.node_deltas))  # no cached bytes: compress again
        ack_bytes = encode(Ack(delta))
        size = len(synack_bytes)

        def build(source: ClusterState = source) -> Delta:
            return fill_delta(source, nodes, budget)

        def encode_scratch(message: SynAck = scratch) -> bytes:
            return encode(message)

        def encode_cached(message: SynAck = synack) -> bytes:
            return encode(message)

        def decode_synack(data: bytes = synack_bytes) -> object:
            return decode(data)

        def decode_ack(data: bytes = ack_bytes) -> object:
            return decode(data)

        target = CODEC_TARGET_US
        case("codec", f"{label}: build with DeltaWriter", size, build, note=note, target_us=target)
        case("codec", f"synack {label}: encode from scratch", size, encode_scratch, note=note,
             target_us=target)  # fmt: skip
        case("codec", f"synack {label}: encode (writer's bytes)", size, encode_cached,
             note=note, target_us=target)  # fmt: skip
        case("codec", f"synack {label}: decode", size, decode_synack, note=note,
             target_us=target)  # fmt: skip
        case("codec", f"ack {label}: decode", len(ack_bytes), decode_ack, note=note,
             target_us=target)  # fmt: skip

    # ---------------------------------------------------------------- state
    big = fleet(args.state_nodes, rng, base_port=20_000)
    big_delta = Delta(
        tuple(
            NodeDelta(
                node=node,
                from_version_excluded=0,
                last_gc_version=0,
                key_values=tuple(
                    KeyValueMutation(f"key-{k}", f"value-{k}-{node.node_id}", k + 1, KeyStatus.SET)
                    for k in range(3)
                ),
                max_version=3,
            )
            for node in big
        )
    )
    target_state: list[ClusterState] = []

    def fresh_state() -> None:
        target = ClusterState()
        for node in big:
            target.node_state_or_init(node)
        target_state[:] = [target]

    def apply_big() -> None:
        target_state[0].apply_delta(big_delta, 1_000.0)

    case("core", f"state apply of a {args.state_nodes}-node delta", None, apply_big,
         setup=fresh_state, note="3 key-values per node, all new")  # fmt: skip
    case("core", f"compute_digest, {args.nodes} nodes", None, state.compute_digest)
    empty_peer = ClusterState().compute_digest()
    case("core", f"compute_delta, {args.nodes} nodes, empty peer", None,
         lambda: state.compute_delta(empty_peer, budget, (), rng))  # fmt: skip

    # ---------------------------------------------------------------- engine
    a, b = engine_pair(nodes, rng)
    syn_ab = a.create_syn(2_000.0)
    synack_ba = b.handle_message(syn_ab, 2_000.0).reply
    assert isinstance(synack_ba, SynAck)
    ack_ab = a.handle_message(synack_ba, 2_000.0).reply
    assert isinstance(ack_ab, Ack)
    syn_wire, synack_wire, ack_wire = encode(syn_ab), encode(synack_ba), encode(ack_ab)

    def handle_syn() -> bytes:
        return encode(b.handle_message(decode(syn_wire), 2_001.0).reply)  # type: ignore[arg-type]

    def handle_synack() -> bytes:
        return encode(a.handle_message(decode(synack_wire), 2_001.0).reply)  # type: ignore[arg-type]

    in_sync = f"{args.nodes} nodes, in sync"
    case("engine", f"handle Syn ({in_sync}) + encode SynAck", len(syn_wire), handle_syn)

    # An idle cluster's Syn is not in sync: every node beats once a round, so each entry's
    # heartbeat has risen since the last digest the receiver saw. Each run gets a Syn whose
    # every heartbeat is one higher than the run before (encoded in the setup, untimed).
    risen_heartbeat = [0]
    risen_wire: list[bytes] = []

    def next_risen_syn() -> None:
        risen_heartbeat[0] += 1
        risen_wire[:] = [risen_syn(syn_ab, risen_heartbeat[0])]

    def handle_risen_syn() -> bytes:
        return encode(b.handle_message(decode(risen_wire[0]), 2_001.0).reply)  # type: ignore[arg-type]

    case("engine", f"handle Syn ({args.nodes} nodes, every heartbeat risen) + encode SynAck",
         len(syn_wire), handle_risen_syn, setup=next_risen_syn,
         note="an idle cluster's Syn")  # fmt: skip
    case("engine", f"handle SynAck ({in_sync}) + encode Ack", len(synack_wire), handle_synack)
    case("engine", "handle Ack", len(ack_wire), lambda: a.handle_message(decode(ack_wire), 2_001.0))

    def gossip_round() -> bytes:
        a.start_round(2_001.0)
        return encode(a.create_syn(2_001.0))

    case("engine", f"start_round + encode Syn ({args.nodes} nodes)", None, gossip_round)
    case("engine", f"update_liveness ({args.nodes} nodes)", None,
         lambda: a.update_liveness(2_001.0))  # fmt: skip
    return results


def risen_syn(syn: Syn, rise: int) -> bytes:
    """``syn`` encoded with every heartbeat ``rise`` higher: the Syn an idle peer sends
    ``rise`` rounds later."""
    entries = {
        node: attrs.evolve(entry, heartbeat=entry.heartbeat + rise)
        for node, entry in syn.digest.nodes.items()
    }
    return encode(attrs.evolve(syn, digest=Digest(entries)))


def risen_syns(args: argparse.Namespace) -> dict[str, Any]:
    """``--risen-syns N``: the "every heartbeat risen" case N times over, untimed, for a
    count that does not depend on the load: run under callgrind (once as is, once with
    ``--setup-only``: the difference is the N Syns' instructions), or with ``--count-calls``
    for cProfile's calls per Syn. Each Syn's heartbeats are one higher than the last's."""
    rng = random.Random(args.seed)
    a, b = engine_pair(fleet(args.nodes, rng), rng)
    syn = a.create_syn(2_000.0)
    wires = [risen_syn(syn, rise) for rise in range(1, args.risen_syns + 1)]

    def handle_all() -> None:
        for wire in wires:
            reply = b.handle_message(decode(wire), 2_001.0).reply
            assert isinstance(reply, SynAck)
            encode(reply)

    result: dict[str, Any] = {"case": f"{len(wires)} risen Syns, {args.nodes} nodes"}
    if args.setup_only:
        return result | {"handled": 0}
    cpu = time.process_time()
    if args.count_calls:
        profile = cProfile.Profile()
        profile.runcall(handle_all)
        counts = call_counts(pstats.Stats(profile), len(wires), 0)
        result |= {f"{kind}_per_syn": count for kind, count in counts.items()}
    else:
        handle_all()
    cpu = time.process_time() - cpu
    return result | {"handled": len(wires), "cpu_us_per_syn": round(cpu * 1e6 / len(wires), 1)}


def forming(nodes: int, interval: float, seed: int) -> dict[str, Any]:
    """A ``nodes``-node cluster forming in the core Simulation (version 0, full digests, one
    seed, as the demo's nodes are configured): rounds until every node lists all of them
    live, the CPU seconds those rounds took in this one process, and the traffic (the
    datagram and byte totals are a function of the seed: equal before and after a change
    that keeps the wire the same)."""
    sim = Simulation(nodes, seed=seed, gossip_interval=interval, partial_digests=False)

    def everyone_sees_all() -> bool:
        return all(len(engine.live_nodes()) == nodes for engine in sim.engines.values())

    cpu = time.process_time()
    rounds = sim.rounds_until(everyone_sees_all, 60)
    cpu = time.process_time() - cpu
    traffic = sim.traffic
    return {
        "group": "cluster",
        "case": f"form {nodes} nodes at {interval:g} s (Simulation, seed {seed})",
        "rounds": rounds,
        "cpu_s": round(cpu, 2),
        "cpu_s_per_round": None if not rounds else round(cpu / rounds, 3),
        "datagrams": traffic.datagrams,
        "bytes": traffic.bytes,
    }


def engine_pair(nodes: list[NodeId], rng: random.Random) -> tuple[GossipEngine, GossipEngine]:
    """Two engines that both know ``nodes`` (same versions): an idle, converged cluster."""
    source = state_with(nodes[2:], 3, rng)
    engines = []
    for me in nodes[:2]:
        engine = GossipEngine(
            me, "production-cluster", now=1_000.0, rng=random.Random(1),
            initial_key_values={"bind": str(me.gossip_addr)},
        )  # fmt: skip
        for node, node_state in source.node_states.items():
            copy = engine.state.node_state_or_init(node)
            copy.heartbeat = node_state.heartbeat
            for key, versioned in node_state.key_values.items():
                copy.set(key, versioned.value)
            for t in (1_000.0, 1_001.0, 1_002.0):
                engine.detector.report_heartbeat(node, t)
        engines.append(engine)
    a, b = engines
    # Each learns the other, then both run the handshake until nothing is left to send.
    for _ in range(3):
        reply = b.handle_message(a.create_syn(1_002.0), 1_002.0).reply
        assert reply is not None
        ack = a.handle_message(reply, 1_002.0).reply
        assert ack is not None
        b.handle_message(ack, 1_002.0)
    for engine in engines:
        engine.update_liveness(1_002.5)
        engine.drain_changes()
    return a, b


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, help="nodes in the digest and delta (default 100)")
    parser.add_argument(
        "--state-nodes", type=int, help="nodes in the applied delta (default 1000; quick 50)"
    )
    parser.add_argument(
        "--keys-per-node", type=int, default=3, help="keys per node of the ~60 KB delta"
    )
    parser.add_argument(
        "--full-keys-per-node", type=int, default=40, help="keys per node, full-datagram delta"
    )
    parser.add_argument(
        "--form-nodes",
        type=int,
        default=0,
        help="also form a cluster of this many nodes in the Simulation (0: not)",
    )
    parser.add_argument(
        "--form-interval", type=float, default=0.5, help="its gossip interval (the demo's)"
    )
    parser.add_argument("--runs", type=int, help="timed calls per case (default 500; quick 20)")
    parser.add_argument("--json", type=Path, default=bench.RESULTS_DIR / "core.json", metavar="OUT")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--risen-syns",
        type=int,
        default=0,
        metavar="N",
        help="only handle N 'every heartbeat risen' Syns, untimed (for callgrind), and exit",
    )
    parser.add_argument(
        "--setup-only", action="store_true", help="with --risen-syns: build them, handle none"
    )
    parser.add_argument(
        "--count-calls", action="store_true", help="with --risen-syns: cProfile's calls per Syn"
    )
    args = parser.parse_args()
    args.nodes = args.nodes or (10 if args.quick else 100)
    args.state_nodes = args.state_nodes or (50 if args.quick else 1_000)
    args.runs = args.runs or (20 if args.quick else 500)
    if args.risen_syns:
        print(json.dumps(risen_syns(args)))
        return 0
    load_before = bench.loadavg()
    results = run_cases(args)
    if args.form_nodes:
        formed = forming(args.form_nodes, args.form_interval, args.seed)
        bench.log(json.dumps(formed))
        results.append(formed)
    payload = {
        "benchmark": "core",
        "machine": bench.machine_info() | {"loadavg": load_before},
        "runs": args.runs,
        "results": results,
        "loadavg_end": bench.loadavg(),
    }
    bench.print_table(
        f"codec and core: one call, µs ({args.runs} runs; target: codec < "
        f"{CODEC_TARGET_US:.0f} µs)",
        ["case", "bytes", "median µs", "p95 µs", "met", "note"],
        [
            (
                r["case"],
                r["bytes"],
                r["median_us"],
                r["p95_us"],
                "-" if r["target_met"] is None else ("yes" if r["target_met"] else "NO"),
                r["note"],
            )
            for r in results
            if r["group"] != "cluster"
        ],
    )
    for r in results:
        if r["group"] == "cluster":
            print(
                f"{r['case']}: {r['rounds']} rounds, {r['cpu_s']} CPU-s "
                f"({r['cpu_s_per_round']} a round), {r['datagrams']} datagrams, "
                f"{r['bytes']} bytes"
            )
    print(f"Python {sys.version.split()[0]}, load average {' '.join(map(str, load_before))}")
    bench.write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    bench.run_main(main)
