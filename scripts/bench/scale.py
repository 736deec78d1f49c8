#!/usr/bin/env python3
"""Gossip in clusters of thousands: where a Syn stops fitting in one datagram, and how fast
a new key still spreads, in protocol V0, V1 and V1 with gossip-tui's partial digests.

Four measurements, all with the real engine and codec and no sockets:

* capacity: the largest cluster whose Syn fits one 65,507-byte datagram, per node-id style
  (``short`` = ``node-i``, ``chitchat-test`` = ``server:127.0.0.1:PORT-three-words``,
  ``quickwit`` = a Kubernetes pod host name), V0 counted from the entry sizes, V1 found by
  bisection on the compressed size, with realistic heartbeats and versions (heartbeats in
  the hundreds of thousands, a few hundred versions) and with a fresh cluster's small ones;
* wire: two engines that each know all N nodes exchange one Syn / SynAck / Ack: the sizes,
  whether each fits, and what the engine does when it does not;
* sim: the deterministic simulation (gossip_tui.core.simulation), pre-formed, every
  message through the codec: rounds until a key set on a random node is on every node
  (over ``--keys`` keys / seeds), bytes and datagrams per node per round, the largest
  datagram, and every datagram over the limit. Every message of every node is encoded and
  decoded (replies are encoded and handed over, see Simulation.decode_replies), so a round
  costs ~N^2 digest entries and the cluster ~550 bytes per node per node (tracemalloc,
  600 nodes; 1,050 before branch s10-mem): up to ``--sim-max`` nodes (1,000 take ~0.6 GB
  and ~8 s of CPU a round on this machine; 5,000 ~13-15 GB and ~6-8 min a round, past the
  codec's 4,096-id caches: docs/BENCHMARKS.md, "What an entry holds after"). Each
  round writes a checkpoint line to stderr (nodes still lacking the key, the round's
  CPU-s, bytes and datagrams per node per round so far, the largest datagram, peak RSS),
  so a run stopped half-way still says what it saw;
* model: the same key's spread past ``--sim-max``, on a model that replays the engine's
  rules for one key (the same target choice, push-pull through Syn / SynAck / Ack, a
  message lost when it does not fit, and the partial-digest windows sized from the wire
  measurement) without the N - 1 other entries of each digest. It is checked against the
  simulation at the sizes both run.

    python scripts/bench/scale.py                       # 100..10,000 nodes (~10 min)
    python scripts/bench/scale.py --sizes 1000 5000 --sim-max 200 --json out.json
    python scripts/bench/scale.py --quick
    # The real engine at 5,000 nodes, V1 (~15 GB, ~35-45 min of one core; a checkpoint
    # line per round on stderr):
    python scripts/bench/scale.py --sizes 5000 --modes V1 --sim-max 5000 --sim-keys 1 \
        --keys 3 --capacity-max 2000 --json bench-results/scale-5000.json
"""

from __future__ import annotations

import argparse
import math
import random
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _cluster as bench

from gossip_tui.core.codec import MAX_DATAGRAM_SIZE, PROTOCOL_V0, PROTOCOL_V1, encode
from gossip_tui.core.digest_window import (
    CAPS_KEY,
    PARTIAL_DIGEST,
    PARTIAL_MARKER,
    RECENT_ROUNDS,
    v0_syn_capacity,
)
from gossip_tui.core.engine import GossipEngine
from gossip_tui.core.messages import Digest, NodeDigest, Syn, SynAck
from gossip_tui.core.models import NodeId
from gossip_tui.core.simulation import NAMINGS, Simulation, sim_address

CLUSTER_ID = "sim"
# Mode name -> (protocol version, partial digests).
MODES: dict[str, tuple[int, bool]] = {
    "V0": (PROTOCOL_V0, False),
    "V1": (PROTOCOL_V1, False),
    "V1+partial": (PROTOCOL_V1, True),
}


def target_rounds(size: int) -> float:
    return math.log(size, 3) + 3


# --------------------------------------------------------------------------- capacity


def _digest(ids: Sequence[NodeId], realistic: bool, rng: random.Random) -> Digest:
    if realistic:
        return Digest(
            {
                n: NodeDigest(rng.randrange(100_000, 5_000_000), 0, rng.randrange(5, 500))
                for n in ids
            }
        )
    return Digest({n: NodeDigest(rng.randrange(2, 30), 0, 1) for n in ids})


def _syn_size(ids: Sequence[NodeId], version: int, realistic: bool) -> int:
    digest = _digest(ids, realistic, random.Random(len(ids)))
    return len(encode(Syn(CLUSTER_ID, digest, protocol_version=version)))


def v1_capacity(ids: Sequence[NodeId], realistic: bool) -> int:
    """The largest n whose V1 Syn of the first n ids fits one datagram (bisection)."""
    low, high = 1, len(ids)
    while low < high:
        mid = (low + high + 1) // 2
        if _syn_size(ids[:mid], PROTOCOL_V1, realistic) <= MAX_DATAGRAM_SIZE:
            low = mid
        else:
            high = mid - 1
    return low


def measure_capacity(max_nodes: int) -> list[dict[str, Any]]:
    rows = []
    for naming, name_of in NAMINGS.items():
        ids = [NodeId(name_of(i), 1, sim_address(i)) for i in range(max_nodes)]
        v0 = v0_syn_capacity(ids, CLUSTER_ID)
        entry = statistics.fmean(len(name_of(i).encode()) + 41 for i in range(v0))
        row: dict[str, Any] = {"naming": naming, "example": name_of(7), "entry_bytes": entry}
        row["v0_nodes"] = v0
        for realistic in (True, False):
            label = "realistic" if realistic else "fresh"
            v1 = v1_capacity(ids, realistic)
            raw = _syn_size(ids[:v1], PROTOCOL_V0, realistic)
            packed = _syn_size(ids[:v1], PROTOCOL_V1, realistic)
            row[f"v1_nodes_{label}"] = v1
            row[f"v1_ratio_{label}"] = raw / packed
        rows.append(row)
        bench.log(f"capacity {naming}: V0 {v0}, V1 {row['v1_nodes_realistic']}")
    return rows


# --------------------------------------------------------------------------- wire


def _loaded_engine(
    index: int, ids: Sequence[NodeId], version: int, partial: bool, max_datagram: int
) -> GossipEngine:
    """An engine that knows every node (realistic heartbeats and versions, the same view
    as every other such engine), as after a long time in a large cluster; every peer
    published the capability when ``partial``."""
    engine = GossipEngine(
        ids[index],
        CLUSTER_ID,
        now=0.0,
        protocol_version=version,
        partial_digests=partial,
        max_datagram_size=max_datagram,
    )
    for position, node in enumerate(ids):
        rng = random.Random(position)
        state = engine.state.node_state_or_init(node)
        state.heartbeat = rng.randrange(100_000, 5_000_000)
        state.set("bind", str(node.gossip_addr))
        if partial:
            state.set(CAPS_KEY, PARTIAL_DIGEST)
        state.max_version = max(state.max_version, rng.randrange(5, 500))
    # Peers by address, as the engine learns them from their states' capability key.
    if partial:
        for node in ids:
            engine._caps_peers.note(node)
    engine.drain_changes()
    return engine


def _entries(message: Syn | SynAck) -> int:
    return len(message.digest.nodes) - (PARTIAL_MARKER in message.digest.nodes)


def measure_wire(size: int, mode: str, naming: str, max_datagram: int) -> dict[str, Any]:
    version, partial = MODES[mode]
    name_of = NAMINGS[naming]
    ids = [NodeId(name_of(i), 1, sim_address(i)) for i in range(size)]
    a = _loaded_engine(0, ids, version, partial, max_datagram)
    b = _loaded_engine(1, ids, version, partial, max_datagram)
    # b has something new for a, so the SynAck carries a delta.
    b.self_state.set("new-key", "new-value")
    row: dict[str, Any] = {"nodes": size, "mode": mode, "naming": naming}
    syn = a.create_syn(1.0, ids[1].gossip_addr)
    syn_bytes = encode(syn)
    row |= {"syn": len(syn_bytes), "syn_entries": _entries(syn)}
    row["outcome"] = "ok"
    if len(syn_bytes) > max_datagram:
        row["outcome"] = "Syn over the limit: the kernel refuses it (EMSGSIZE), nothing gossips"
        return row
    synack = b.handle_message(syn, 1.0).reply
    if synack is None:
        row["outcome"] = "no SynAck: the responder's own digest fills the datagram"
        return row
    assert isinstance(synack, SynAck)
    synack_bytes = encode(synack)
    row |= {"synack": len(synack_bytes), "synack_entries": _entries(synack)}
    row["synack_carries_key"] = any(nd.node == ids[1] for nd in synack.delta.node_deltas)
    ack = a.handle_message(synack, 1.0).reply
    assert ack is not None
    row["ack"] = len(encode(ack))
    if len(synack_bytes) > max_datagram:
        row["outcome"] = "SynAck over the limit"
    return row


# --------------------------------------------------------------------------- simulation


def _spread_in_sim(
    sim: Simulation, writer: int, limit: int, round_cpu: list[float]
) -> tuple[int | None, int]:
    """Rounds until the writer's new key is on every node; the CPU-seconds of each round
    are appended to ``round_cpu``, and each round's progress goes to stderr (a round of
    thousands of nodes takes minutes): a checkpoint line with the nodes still lacking the
    key, the round's CPU-s, the peak RSS and the traffic so far, so that a run stopped
    half-way still says what it saw."""
    engine = sim.engine(writer)
    engine.self_state.set("new-key", f"from-{writer}")
    node = engine.self_id
    value = f"from-{writer}"

    def missing() -> int:
        return sum(
            1
            for e in sim.active()
            if (state := e.state.node_state(node)) is None or state.get("new-key") != value
        )

    size = len(sim.engines)
    for count in range(limit + 1):
        left = missing()
        line = f"  sim {size} nodes: round {count}, {left} nodes lack the key"
        if count:
            traffic = sim.traffic
            line += (
                f", {round_cpu[-1]:.1f} CPU-s, so far {traffic.bytes / (size * count):,.0f}"
                f" B and {traffic.datagrams / (size * count):.2f} datagrams per node per"
                f" round, largest {traffic.largest:,} B"
            )
            if traffic.oversize:
                line += f", {sum(traffic.oversize.values())} over the limit"
        print(f"{line}, peak RSS {peak_rss_mb():,.0f} MB", file=sys.stderr, flush=True)
        if left == 0:
            return count, 0
        cpu = time.process_time()
        sim.round()
        round_cpu.append(time.process_time() - cpu)
    return None, missing()


def peak_rss_mb() -> float:
    """This process's peak RSS so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_sim(
    size: int, mode: str, naming: str, keys: int, limit: int, max_datagram: int
) -> dict[str, Any]:
    version, partial = MODES[mode]
    started = time.perf_counter()
    cpu = time.process_time()
    rounds: list[int | None] = []
    stuck = []
    traffic: list[dict[str, Any]] = []
    total_rounds = 0
    round_cpu: list[float] = []
    build_cpu = 0.0
    for key in range(keys):
        built = time.process_time()
        sim = Simulation(
            size,
            seed=key,
            preformed=True,
            protocol_version=version,
            partial_digests=partial,
            naming=NAMINGS[naming],
            max_datagram_size=max_datagram,
        )
        build_cpu += time.process_time() - built
        bench.log(
            f"sim {size} {mode}: pre-formed in {time.process_time() - built:.0f} CPU-s,"
            f" peak RSS {peak_rss_mb():,.0f} MB"
        )
        writer = random.Random(key).randrange(size)
        # A key that cannot spread is tried for a few rounds only: nothing changes then.
        tries = limit if key == 0 or rounds[0] is not None else 3
        spread, left = _spread_in_sim(sim, writer, tries, round_cpu)
        rounds.append(spread)
        stuck.append(left)
        done = spread if spread is not None else (limit if key == 0 else 3)
        total_rounds += done
        traffic.append(sim.traffic.as_dict() | {"rounds": done})
    datagrams = sum(int(t["datagrams"]) for t in traffic)
    sent = sum(int(t["bytes"]) for t in traffic)
    node_rounds = size * max(total_rounds, 1)
    oversize = sum(sum(t["oversize"].values()) for t in traffic)
    errors: dict[str, int] = {}
    for t in traffic:
        for kind, count in t["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
    return {
        "nodes": size,
        "mode": mode,
        "naming": naming,
        "how": "sim",
        "rounds": rounds,
        "not_reached": stuck,
        "bytes_per_node_per_round": sent / node_rounds,
        "datagrams_per_node_per_round": datagrams / node_rounds,
        "largest": max(int(t["largest"]) for t in traffic),
        "oversize": oversize,
        "largest_oversize": max(int(t["largest_oversize"]) for t in traffic),
        "errors": errors,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        # Forming the clusters (preformed), and a round at the median.
        "build_cpu_seconds": build_cpu,
        "cpu_seconds_per_round": statistics.median(round_cpu) if round_cpu else None,
        # Of the whole process so far (the largest simulation run yet).
        "peak_rss_mb": peak_rss_mb(),
    }


# --------------------------------------------------------------------------- model


def model_spread(
    size: int,
    seed: int,
    *,
    syn_fits: bool,
    synack_fits: bool,
    syn_window: int | None,
    synack_window: int | None,
    limit: int,
) -> tuple[int | None, int]:
    """Rounds until one new key is everywhere, following the engine's rules for that key.

    Nodes go in a random order each round, each sends a Syn to 3 random peers (all are
    live), and an exchange moves the key both ways: the SynAck's delta to the initiator
    when its Syn's digest named the writer, the Ack's delta to the responder when the
    SynAck's digest did. Full digests name everyone. A window (``syn_window`` entries for
    a Syn, ``synack_window`` for a SynAck, None for full digests) names the writer when
    the sender is the writer, is behind on it (a window showed it a newer version), or
    learnt the key in the last RECENT_ROUNDS rounds; otherwise when the writer falls in
    the sender's rotating slice (which starts at a random place and moves on by its
    length with each window). A message that does not fit is lost.
    """
    rng = random.Random(seed)
    writer = rng.randrange(size)
    knows = bytearray(size)
    knows[writer] = 1
    behind = bytearray(size)
    learnt = [-(10**9)] * size
    learnt[writer] = 0
    cursor = [rng.randrange(size) for _ in range(size)]
    informed = 1

    def names_writer(node: int, window: int | None, now: int) -> bool:
        if window is None or node == writer or behind[node]:
            return True
        if knows[node] and now - learnt[node] <= RECENT_ROUNDS:
            return True
        length = max(window - 2, 1)  # less the node itself and, maybe, one named node
        start = cursor[node]
        cursor[node] = (start + length) % size
        return (writer - start) % size < length

    def learn(node: int, now: int) -> None:
        nonlocal informed
        knows[node] = 1
        behind[node] = 0
        learnt[node] = now
        informed += 1

    others = range(size - 1)
    for now in range(1, limit + 1):
        order = list(range(size))
        rng.shuffle(order)
        for a in order:
            picks = [p + (p >= a) for p in rng.sample(others, min(3, size - 1))]
            syn_names = names_writer(a, syn_window, now)
            if not syn_fits:
                continue
            for b in picks:
                if syn_names and knows[a] and not knows[b] and syn_window is not None:
                    behind[b] = 1
                if not synack_fits:
                    continue
                synack_names = names_writer(b, synack_window, now)
                if syn_names and knows[b] and not knows[a]:
                    learn(a, now)
                if synack_names and knows[a] and not knows[b]:
                    learn(b, now)
                elif synack_names and knows[b] and not knows[a] and synack_window is not None:
                    behind[a] = 1
        if informed == size:
            return now, 0
    return None, size - informed


def measure_model(
    size: int, mode: str, wire: dict[str, Any], keys: int, limit: int, max_datagram: int
) -> dict[str, Any]:
    partial = MODES[mode][1]
    syn_fits = wire["syn"] <= max_datagram
    synack_fits = "synack" in wire and wire["synack"] <= max_datagram
    windowed = partial and wire["syn_entries"] < size
    syn_window = wire["syn_entries"] if windowed else None
    synack_window = wire.get("synack_entries", size) if windowed else None
    if synack_window is not None and synack_window >= size:
        synack_window = None
    started = time.perf_counter()
    results = [
        model_spread(
            size,
            seed,
            syn_fits=syn_fits,
            synack_fits=synack_fits,
            syn_window=syn_window,
            synack_window=synack_window,
            limit=limit if syn_fits and synack_fits else 3,
        )
        for seed in range(keys)
    ]
    per_exchange = wire["syn"] + wire.get("synack", 0) + wire.get("ack", 0)
    return {
        "nodes": size,
        "mode": mode,
        "naming": wire["naming"],
        "how": "model",
        "rounds": [r for r, _ in results],
        "not_reached": [left for _, left in results],
        # Every node starts 3 exchanges a round (the model's traffic is the wire sizes).
        "bytes_per_node_per_round": 3 * per_exchange if syn_fits else 0,
        "datagrams_per_node_per_round": 9 if syn_fits and synack_fits else 0,
        "largest": max(wire["syn"], wire.get("synack", 0)),
        "windows": [syn_window, synack_window],
        "seconds": time.perf_counter() - started,
    }


# --------------------------------------------------------------------------- main


def _rounds_summary(rounds: Sequence[int | None]) -> tuple[object, object, str]:
    reached = [r for r in rounds if r is not None]
    if len(reached) < len(rounds):
        missing = len(rounds) - len(reached)
        return ("never" if not reached else statistics.median(reached)), "never", f"{missing}"
    return statistics.median(reached), max(reached), "0"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 500, 1000, 5000, 10_000])
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--naming", choices=list(NAMINGS), default="chitchat-test")
    parser.add_argument("--keys", type=int, default=5, help="keys (seeds) per configuration")
    parser.add_argument("--sim-keys", type=int, default=3, help="keys per simulated size")
    parser.add_argument("--sim-max", type=int, default=500, help="largest simulated size")
    parser.add_argument("--limit", type=int, default=40, help="rounds before giving up")
    parser.add_argument("--capacity-max", type=int, default=30_000)
    parser.add_argument(
        "--datagram",
        type=int,
        default=MAX_DATAGRAM_SIZE,
        help="datagram limit of the wire / sim / model runs (smaller: check the model "
        "against the simulation where windows are needed at small N)",
    )
    parser.add_argument("--json", type=Path, default=Path("bench-results/scale.json"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.keys, args.sim_keys, args.sim_max = [30, 60], 2, 1, 30
        args.capacity_max = 3_000
    payload: dict[str, Any] = {"machine": bench.machine_info(), "args": vars(args) | {}}
    payload["args"]["json"] = str(args.json)

    full_size = args.datagram == MAX_DATAGRAM_SIZE
    capacity = measure_capacity(args.capacity_max) if full_size else []
    payload["capacity"] = capacity
    bench.print_table(
        f"Largest cluster whose Syn fits one datagram ({MAX_DATAGRAM_SIZE:,} bytes)",
        ["ids", "bytes/entry", "V0", "V1 realistic", "ratio", "V1 fresh", "ratio", "example"],
        [
            [
                r["naming"],
                r["entry_bytes"],
                r["v0_nodes"],
                r["v1_nodes_realistic"],
                r["v1_ratio_realistic"],
                r["v1_nodes_fresh"],
                r["v1_ratio_fresh"],
                r["example"],
            ]
            for r in capacity
        ],
    )

    wires: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for size in args.sizes:
        for mode in args.modes:
            load = bench.loadavg()
            wire = measure_wire(size, mode, args.naming, args.datagram) | {"loadavg": load}
            wires.append(wire)
            bench.log(f"wire {size} {mode}: {wire['outcome']}")
            model = measure_model(size, mode, wire, args.keys, args.limit, args.datagram)
            results.append(model | {"loadavg": load})
            if size <= args.sim_max:
                sim = measure_sim(size, mode, args.naming, args.sim_keys, args.limit, args.datagram)
                results.append(sim | {"loadavg": load})
                bench.log(
                    f"sim {size} {mode}: {sim['rounds']} in {sim['seconds']:.0f} s,"
                    f" {sim['cpu_seconds_per_round']} CPU-s a round,"
                    f" peak RSS {sim['peak_rss_mb']:,.0f} MB"
                )
    payload["wire"] = wires
    payload["spread"] = results

    bench.print_table(
        f"One exchange between two nodes that know all N ({args.naming} ids)",
        ["N", "mode", "Syn B", "entries", "SynAck B", "entries", "Ack B", "outcome"],
        [
            [
                w["nodes"],
                w["mode"],
                w["syn"],
                w["syn_entries"],
                w.get("synack"),
                w.get("synack_entries"),
                w.get("ack"),
                w["outcome"],
            ]
            for w in wires
        ],
    )
    rows = []
    for r in results:
        median, worst, missing = _rounds_summary(r["rounds"])
        target = target_rounds(r["nodes"])
        met = (
            "yes"
            if isinstance(median, int | float)
            and median <= target
            and r["largest"] <= args.datagram
            and not r.get("oversize")
            else "no"
        )
        rows.append(
            [
                r["nodes"],
                r["mode"],
                r["how"],
                len(r["rounds"]),
                median,
                worst,
                missing,
                target,
                met,
                r["bytes_per_node_per_round"],
                r["datagrams_per_node_per_round"],
                r["largest"],
                r.get("oversize", "-"),
                r.get("seconds"),
            ]
        )
    bench.print_table(
        "Rounds for a new key to reach every node (pre-formed cluster)",
        [
            "N",
            "mode",
            "how",
            "keys",
            "median",
            "max",
            "not done",
            "log3 N + 3",
            "met",
            "B/node/round",
            "dgrams/node/round",
            "largest B",
            "oversize",
            "s",
        ],
        rows,
    )
    bench.write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
