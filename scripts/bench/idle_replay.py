#!/usr/bin/env python3
"""What a real idle node receives, recorded once and replayed deterministically (issue 17).

``--record FILE`` runs an idle cluster of ``--nodes`` headless processes (as
``idle_steps.py``: N-1 nodes, then a probe through the real command line) and records,
from the probe's first moment for ``--seconds``, everything its runtime did: the engine's
construction (its arguments and its random generator's state), each datagram received
with its time and source, each gossip round's and liveness sweep's time, each datagram
sent. The recording is a pickle; keep it out of git (/tmp).

``FILE`` (replay) builds the probe anew from the recording, with a manual clock and no
socket, and feeds it the same inputs in the same order at the same times: the node
layer's receive path (``Node._handle_datagram``: decode, engine, reply encoded and sent,
events to a subscriber, the peers' views), its rounds and its sweeps. The replay checks
that it sends exactly the datagrams the probe sent (``--check``), and prints what the
datagrams were (``--describe``) and what they cost (``--count-calls``: Python calls per
datagram by kind, under cProfile).

Instructions per datagram (callgrind; deterministic, unlike time on a shared machine):
``--collect KIND`` runs the steady part's steps of that kind (Syn, SynAck, Ack, round,
sweep, all) inside ``operator.call``, which nothing else calls, so that callgrind counts
those alone; divide by the count the replay prints. (``--setup-only`` stops where the
steady part begins, for a difference of two whole runs instead.)

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=_operator_call \
        --callgrind-out-file=/dev/null \
        python scripts/bench/idle_replay.py /tmp/idle-100.pickle --collect Syn

    python scripts/bench/idle_replay.py --record /tmp/idle-100.pickle --nodes 100
    python scripts/bench/idle_replay.py /tmp/idle-100.pickle --describe --check
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import operator
import os
import pickle
import pstats
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _cluster as bench

# An event of the recording: (kind, time, datagram, (host, port)). Kinds: "d" a datagram
# received, "o" one sent, "r" a gossip round started at ``time``, "s" a liveness sweep.
Event = tuple[str, float, bytes, tuple[str, int]]
_NO_DATA = b""
_NO_ADDR = ("", 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recording", nargs="?", help="the recording to replay")
    parser.add_argument("--record", metavar="FILE", help="record a probe node into FILE")
    parser.add_argument("--nodes", type=int, default=100, help="cluster size, the probe included")
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=80.0, help="how long to record")
    parser.add_argument(
        "--steady-after",
        type=float,
        default=20.0,
        help="replay: seconds after the probe's start where the steady part begins",
    )
    parser.add_argument(
        "--setup-only",
        action="store_true",
        help="replay only up to the steady part (the callgrind baseline)",
    )
    parser.add_argument(
        "--cold",
        type=int,
        default=0,
        metavar="MIB",
        help="copy MIB of memory before each event, untimed: caches as cold as an idle "
        "process's, which wakes after the rest of the machine ran (times only)",
    )
    parser.add_argument(
        "--collect",
        choices=("Syn", "SynAck", "Ack", "round", "sweep", "all", "none"),
        default="none",
        help="run the steady part's steps of this kind inside operator.call, for "
        "valgrind --tool=callgrind --collect-atstart=no --toggle-collect=_operator_call",
    )
    parser.add_argument(
        "--measure",
        metavar="MODULE:NAME",
        help="with --collect none: run this function (gossip_tui.core.MODULE's NAME, or "
        "Class.method) inside operator.call in the steady part, for callgrind's toggle",
    )
    parser.add_argument("--no-gc", action="store_true", help="replay with gc.disable()")
    parser.add_argument("--check", action="store_true", help="compare the datagrams sent")
    parser.add_argument("--describe", action="store_true", help="characterise the datagrams")
    parser.add_argument(
        "--count-calls", action="store_true", help="Python calls per steady datagram, by kind"
    )
    parser.add_argument("--top", type=int, default=30, help="functions listed by --count-calls")
    parser.add_argument("--probe-seed", help=argparse.SUPPRESS)  # set for the recording child
    return parser


# --------------------------------------------------------------------------- recording


def _record_probe(args: argparse.Namespace) -> int:
    """The probe process: the real headless node, with hooks that write down its inputs."""
    from gossip_tui.cli import main
    from gossip_tui.core.engine import GossipEngine
    from gossip_tui.node._loops import NodeLoops
    from gossip_tui.node._node_base import NodeBase

    events: list[Event] = []
    setup: dict[str, Any] = {}
    engine_init = GossipEngine.__init__

    def recorded_init(self: GossipEngine, *init_args: Any, **kwargs: Any) -> None:
        engine_init(self, *init_args, **kwargs)
        setup["engine_args"] = init_args
        setup["engine_kwargs"] = kwargs
        setup["rng_state"] = self.rng.getstate()

    handle = NodeLoops._handle_datagram
    gossip_round = NodeLoops._gossip_round
    judge = NodeLoops._judge_liveness
    send_bytes = NodeBase._send_bytes
    stopped = threading.Event()

    async def recorded_handle(self: NodeLoops, data: bytes, source: Any) -> None:
        if not stopped.is_set():
            events.append(("d", self._now(), data, (source.host, source.port)))
        await handle(self, data, source)

    async def recorded_round(self: NodeLoops, started: float) -> None:
        if not stopped.is_set():
            events.append(("r", started, _NO_DATA, _NO_ADDR))
        await gossip_round(self, started)

    def recorded_judge(self: NodeLoops) -> None:
        if not stopped.is_set():
            events.append(("s", self._now(), _NO_DATA, _NO_ADDR))
        judge(self)

    async def recorded_send(self: NodeBase, data: bytes, addr: Any) -> None:
        if not stopped.is_set():
            events.append(("o", self._now(), data, (addr.host, addr.port)))
        await send_bytes(self, data, addr)

    GossipEngine.__init__ = recorded_init  # type: ignore[method-assign]
    NodeLoops._handle_datagram = recorded_handle  # type: ignore[method-assign]
    NodeLoops._gossip_round = recorded_round  # type: ignore[method-assign]
    NodeLoops._judge_liveness = recorded_judge  # type: ignore[method-assign]
    NodeBase._send_bytes = recorded_send  # type: ignore[method-assign]

    def stop() -> None:
        stopped.set()  # the leave's exchanges are not the idle node's
        os.kill(os.getpid(), signal.SIGTERM)  # the headless node stops on SIGTERM

    threading.Timer(args.seconds, stop).start()
    argv = [
        "--headless",
        "--listen-addr", f"{bench.HOST}:{bench.allocate_ports(1)[0]}",
        "--node-id", "probe",
        "--interval-ms", str(args.interval_ms),
        "--seed", args.probe_seed,
        "--log-level", "warning",
    ]  # fmt: skip
    status = main(argv)
    setup["events"] = events
    setup["interval"] = args.interval_ms / 1000
    setup["nodes"] = args.nodes
    setup["seed"] = args.probe_seed
    with Path(args.record).open("wb") as out:
        pickle.dump(setup, out)
    return status


def _record(args: argparse.Namespace) -> int:
    with bench.cluster(bench.GOSSIP_TUI, args.nodes - 1, args.interval_ms) as c:
        seed = f"{bench.HOST}:{c.nodes[0].gossip_port}"
        command = [sys.executable, __file__, *sys.argv[1:], "--probe-seed", seed]
        probe = subprocess.run(
            command, cwd=bench.REPO, env=bench.child_env(), timeout=120 + args.seconds
        )
    if probe.returncode == 0:
        bench.log(f"recorded into {args.record}")
    return probe.returncode


# --------------------------------------------------------------------------- replay


class _ReplayClock:  # trio.abc.Clock, duck-typed (trio is imported by the replay only)
    """The run's clock, set by the replay (a trio.abc.Clock: the node reads it as the
    run's, through one bound method, as it reads trio's own)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return self.now

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return 0.0  # nothing sleeps in a replay


class _ReplaySocket:
    """A DatagramSocket that keeps what is sent, and hands out source addresses as
    UdpSocket does: the very object last sent to at that address (see UdpSocket.send)."""

    def __init__(self, local: Any) -> None:
        self.local_address = local
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self._sources: dict[tuple[str, int], Any] = {}

    def source(self, key: tuple[str, int]) -> Any:
        addr = self._sources.get(key)
        if addr is None:
            import ipaddress

            from gossip_tui.core.models import SocketAddress

            addr = self._sources[key] = SocketAddress(ipaddress.ip_address(key[0]), key[1])
        return addr

    async def send(self, data: bytes, addr: Any) -> None:
        key = (addr.host, addr.port)
        self._sources.setdefault(key, addr)
        self.sent.append((data, key))

    async def recv(self) -> tuple[bytes, Any]:
        raise AssertionError("a replay receives nothing through its socket")

    def close(self) -> None:
        pass


_STEP_KINDS = {"r": "round", "s": "sweep"}
_KINDS = {0: "Syn", 1: "SynAck", 2: "Ack", 3: "BadCluster"}  # by the header's type byte


def _drive(coroutine: Any) -> None:
    """Run a node coroutine that never waits (nothing in a replay does) to its end."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    raise AssertionError("a replayed step waited")


def _kind_of(data: bytes) -> str:
    return _KINDS.get(data[3], "?") if len(data) >= 4 else "?"


class _Description:
    """What the received datagrams were, against the probe's state as each arrived."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self.entries: Counter[str] = Counter()
        # Digest entries by what they say against our state as the message arrives.
        self.entry_kinds: Counter[str] = Counter()
        self.delta_nodes: Counter[str] = Counter()
        self.delta_kvs: Counter[str] = Counter()
        self.nonempty_deltas: Counter[str] = Counter()
        self.digests_with_changes: Counter[str] = Counter()
        self.keys: Counter[str] = Counter()
        self.paths: Counter[str] = Counter()
        self.replies: Counter[str] = Counter()

    def message(self, engine: Any, message: Any, size: int) -> None:
        from gossip_tui.core.messages import Ack, Syn, SynAck

        kind = type(message).__name__
        self.count[kind] += 1
        self.bytes[kind] += size
        if isinstance(message, Syn | SynAck):
            nodes = message.digest.nodes
            self.entries[kind] += len(nodes)
            changed = 0
            states = engine.state.node_states
            for node, nd in nodes.items():
                state = states.get(node)
                if node == engine.self_id:
                    what = "ours"
                elif state is None:
                    what = "unknown node"
                elif nd.max_version > state.max_version:
                    what = "versions ahead"
                elif nd.heartbeat > state.heartbeat:
                    what = "heartbeat risen only"
                elif nd.heartbeat == state.heartbeat and nd.max_version == state.max_version:
                    what = "same"
                else:
                    what = "behind"
                self.entry_kinds[what] += 1
                changed += what not in ("same", "behind", "ours")
            self.digests_with_changes[f"{kind}: {changed // 10 * 10}-{changed // 10 * 10 + 9}"] += 1
            if message.digest.received_entries is not None:
                self.paths[f"{kind} digest: laid out, entries taken whole"] += 1
        if isinstance(message, SynAck | Ack):
            node_deltas = message.delta.node_deltas
            self.delta_nodes[kind] += len(node_deltas)
            self.nonempty_deltas[kind] += bool(node_deltas)
            for node_delta in node_deltas:
                self.delta_kvs[kind] += len(node_delta.key_values)
                for kv in node_delta.key_values:
                    self.keys[kv.key] += 1

    def show(self, seconds: float) -> None:
        print(f"\nreceived over {seconds:.1f} s (the steady part):")
        for kind, count in self.count.most_common():
            rate = count / seconds
            line = f"  {kind:7} {count:5} ({rate:.2f}/s), {self.bytes[kind] / count:,.0f} B avg"
            if self.entries[kind]:
                line += f", {self.entries[kind] / count:.1f} digest entries"
            if kind in self.delta_nodes:
                line += (
                    f", delta: {self.nonempty_deltas[kind]} non-empty, "
                    f"{self.delta_nodes[kind] / count:.2f} nodes and "
                    f"{self.delta_kvs[kind] / count:.2f} key-values a message"
                )
            print(line)
        total = sum(self.entry_kinds.values())
        print("  digest entries against our state as the message arrived:")
        for what, count in self.entry_kinds.most_common():
            print(f"    {what:22} {count:6} ({count / max(total, 1):.1%})")
        print("  digests by entries changed (heartbeat or versions ahead of ours):")
        for what, count in sorted(self.digests_with_changes.items()):
            print(f"    {what:22} {count:6}")
        print("  decode paths:")
        for what, count in self.paths.most_common():
            print(f"    {what:45} {count:6}")
        print("  keys in deltas:", dict(self.keys.most_common(8)))
        print("  replies sent:", dict(self.replies))


def _load(path: str) -> dict[str, Any]:
    with Path(path).open("rb") as source:
        recording: dict[str, Any] = pickle.load(source)
    return recording


def _replay(args: argparse.Namespace) -> int:
    import trio

    from gossip_tui.core.engine import GossipEngine
    from gossip_tui.core.models import SocketAddress
    from gossip_tui.node._config import NodeConfig
    from gossip_tui.node._node import Node

    recording = _load(args.recording)
    events: list[Event] = recording["events"]
    kwargs = dict(recording["engine_kwargs"])
    start = kwargs["now"]
    steady_from = start + args.steady_after
    end = len(events)
    first_steady = next((i for i, e in enumerate(events) if e[1] >= steady_from), end)
    stop = first_steady if args.setup_only else end

    describe = _Description() if args.describe else None
    profilers: dict[str, cProfile.Profile] = {}
    cpu: dict[str, float] = dict.fromkeys((*_KINDS.values(), *_STEP_KINDS.values()), 0.0)
    counted: Counter[str] = Counter()

    async def run() -> None:
        engine_args = recording["engine_args"]
        engine = GossipEngine(*engine_args, **kwargs)
        engine.rng.setstate(recording["rng_state"])
        seed = recording.get("seed")
        first_out = next(e for e in events if e[0] == "o")
        seed_addr = (
            SocketAddress.parse(seed)
            if seed
            else SocketAddress.parse(f"{first_out[3][0]}:{first_out[3][1]}")
        )
        engine.seed_addrs = {seed_addr}
        config = NodeConfig(
            listen_addr=engine.self_id.gossip_addr,
            node_id=engine.self_id.node_id,
            generation=engine.self_id.generation,
            seeds=(str(seed_addr),),
            gossip_interval=recording["interval"],
        )
        socket = _ReplaySocket(engine.self_id.gossip_addr)
        async with trio.open_nursery() as nursery:
            node = Node(config, engine, socket, nursery)
            engine.drain_changes()
            if describe is not None:
                handle = engine.handle_message

                def described(message: Any, now: float, **kw: Any) -> Any:
                    if clock.now >= steady_from:
                        describe.message(engine, message, len(current[0]))
                    return handle(message, now, **kw)

                engine.handle_message = described  # type: ignore[method-assign]
            current = [b""]

            def receive(data: bytes, key: tuple[str, int]) -> None:
                # What the receive loop does with a datagram (NodeLoops._receive_loop).
                node.stats.datagrams_in += 1
                node.stats.bytes_in += len(data)
                _drive(node._handle_datagram(data, socket.source(key)))
                node._sweep_news()

            def gossip_round(when: float) -> None:
                _drive(node._gossip_round(when))

            alarm = trio.CancelScope()

            def sweep(when: float, first: bool) -> None:
                # What the failure-detector loop does at a sweep (its alarm set anew).
                node._judge_liveness()
                node._sweep_slot = when
                if first:
                    node._sweep_alarm = alarm
                alarm.deadline = node._next_sweep_slot()

            with node.subscribe() as subscriber:  # as the headless node's lifecycle log
                swept = False
                for at, (kind, when, data, key) in enumerate(events[:stop]):
                    clock.now = when
                    if thrash:
                        bytes(thrash)
                    steady = at >= first_steady
                    label = _kind_of(data) if kind == "d" else _STEP_KINDS.get(kind, "")
                    if not label:
                        continue  # a datagram sent: the replay sends its own
                    profiler = None
                    if steady and args.count_calls:
                        profiler = profilers.setdefault(label, cProfile.Profile())
                    step: Callable[..., None]
                    step_args: tuple[Any, ...]
                    if kind == "d":
                        step, step_args = receive, (data, key)
                    elif kind == "r":
                        step, step_args = gossip_round, (when,)
                    else:
                        step, step_args = sweep, (when, not swept)
                        swept = True
                    current[0] = data
                    collected = steady and args.collect in (label, "all")
                    started = time.thread_time()
                    if profiler is not None:
                        profiler.enable()
                    if collected:
                        # callgrind --toggle-collect=_operator_call counts only these.
                        operator.call(step, *step_args)
                    else:
                        step(*step_args)
                    if profiler is not None:
                        profiler.disable()
                    if steady:
                        cpu[label] += time.thread_time() - started
                        counted[label] += 1
                    while True:
                        try:
                            subscriber.receive_nowait()
                        except trio.WouldBlock:
                            break
            nursery.cancel_scope.cancel()
        if describe is not None:
            for data, _key in socket.sent:
                describe.replies[_kind_of(data)] += 1
        if args.check:
            _check(events[:stop], socket.sent)

    collections: Counter[int] = Counter()
    gc_cpu = [0.0, 0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if clock.now < steady_from:
            return
        if phase == "start":
            gc_cpu[1] = time.thread_time()
        else:
            collections[info["generation"]] += 1
            gc_cpu[0] += time.thread_time() - gc_cpu[1]

    gc.callbacks.append(on_gc)
    if args.no_gc:
        gc.disable()
    if args.measure:
        _measure(args.measure, lambda: clock.now >= steady_from)
    thrash = bytearray(args.cold << 20)
    clock = _ReplayClock(start)
    trio.run(run, clock=clock)  # type: ignore[arg-type]
    seconds = (events[stop - 1][1] - steady_from) if stop > first_steady else 0.0
    if args.setup_only:
        bench.log(f"replayed {stop} events, up to the steady part")
        return 0
    total = sum(counted[kind] for kind in _KINDS.values())
    bench.log(f"replayed {stop} events")
    print(f"the steady part: {total} datagrams over {seconds:.1f} s, by kind: {dict(counted)}")
    for label, count in counted.most_common():
        print(f"  {label:7} {count:5}: {cpu[label] / count * 1e6:7.1f} µs thread time each")
    print(
        f"  the cyclic collector: {dict(sorted(collections.items()))} collections by "
        f"generation, {gc_cpu[0] * 1e3:.1f} ms thread time"
    )
    if describe is not None:
        describe.show(seconds)
    if args.count_calls:
        _show_calls(profilers, counted, args.top)
    return 0


def _measure(name: str, steady: Callable[[], bool]) -> None:
    """Route calls of ``name`` through operator.call once ``steady()``, wherever the
    modules of gossip_tui.core and gossip_tui.node imported it by name."""
    import importlib
    import pkgutil

    import gossip_tui.core
    import gossip_tui.node

    module_name, _, attr = name.partition(":")
    module = importlib.import_module(f"gossip_tui.core.{module_name}")
    owner: Any = module
    *path, leaf = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, leaf)

    def measured(*call_args: Any, **kwargs: Any) -> Any:
        if steady():
            return operator.call(original, *call_args, **kwargs)
        return original(*call_args, **kwargs)

    setattr(owner, leaf, measured)
    if not path:  # a function: also where it was imported by name
        for package in (gossip_tui.core, gossip_tui.node):
            for info in pkgutil.iter_modules(package.__path__):
                other = importlib.import_module(f"{package.__name__}.{info.name}")
                if getattr(other, leaf, None) is original:
                    setattr(other, leaf, measured)


def _check(events: list[Event], sent: list[tuple[bytes, tuple[str, int]]]) -> None:
    recorded = [(data, key) for kind, _when, data, key in events if kind == "o"]
    same = sum(a == b for a, b in zip(recorded, sent, strict=False))
    first_diff = next(
        (i for i, (a, b) in enumerate(zip(recorded, sent, strict=False)) if a != b), None
    )
    print(
        f"check: {len(sent)} datagrams sent, {len(recorded)} recorded, {same} identical "
        f"in place; first difference at {first_diff}"
    )


def _show_calls(profilers: dict[str, cProfile.Profile], counted: Counter[str], top: int) -> None:
    for label, profiler in profilers.items():
        table = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
        count = counted[label]
        python = sum(row[1] for (file, _l, _f), row in table.items() if file != "~")
        every = sum(row[1] for row in table.values())
        print(
            f"\n{label}: {python / count:.1f} Python calls, {every / count:.1f} in all, a datagram"
        )
        calls = Counter(
            {
                (f"{Path(file).name}:{function}" if file != "~" else function): row[1]
                for (file, _line, function), row in table.items()
            }
        )
        for name, n in calls.most_common(top):
            print(f"  {n / count:8.2f}  {name}")
        own = sorted(table.items(), key=lambda item: -item[1][2])[:top]
        print(f"  by own time (µs a datagram, under cProfile), {label}:")
        for (file, _line, function), row in own:
            name = f"{Path(file).name}:{function}" if file != "~" else function
            print(f"  {row[2] / count * 1e6:8.1f}  {name}")


def main() -> int:
    args = _parser().parse_args()
    if args.probe_seed:
        return _record_probe(args)
    if args.record:
        return _record(args)
    if not args.recording:
        _parser().error("give a recording to replay, or --record FILE")
    return _replay(args)


if __name__ == "__main__":
    raise SystemExit(main())
