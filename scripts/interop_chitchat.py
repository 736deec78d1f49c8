#!/usr/bin/env python3
"""Interop with real chitchat: one cluster of chitchat-test and gossip-tui processes.

chitchat's own test server, ``chitchat-test`` (in the chitchat repository, built with
cargo; not part of this project), and ``gossip-tui --headless`` take the same options and
answer the same HTTP routes (``GET /``, ``/set_kv/``, ``/mark_for_deletion/``), so this
script drives both kinds alike. gossip-tui nodes get chitchat-test's settings (dead-node
grace period 10 s, marked-for-deletion grace period 60 s). Every address is 127.0.0.1.

Checks, each with a deadline, in order:

1. the mixed cluster forms: every node lists every node live;
2. a key set on a gossip-tui node and one set on a chitchat node reach every node;
3. deleting both reaches every node;
4. 300 keys of 1 KB set on one node of each kind reach every node (deltas cut to the
   datagram size, zstd-compressed, over many rounds); a 59 KB value set on a gossip-tui
   node reaches every node (chitchat nodes relay it to each other); a key set with a TTL
   shows as ``DeleteAfterTtl`` everywhere; a gossip-tui node of another cluster is known
   to nobody;
5. ``kill -9`` of one node of each kind: every survivor marks both dead, and after the
   10 s grace period forgets them;
6. the killed gossip-tui node restarts (a new generation): every chitchat node lists the
   new generation live;
7. with ``--gc``, 60 s after the deletes the tombstones are collected, and a chitchat node
   and a gossip-tui node that join afterwards get the state without the deleted keys;
8. no node logged an error, and no gossip-tui node dropped a datagram as malformed;
9. with ``--soak MINUTES``, first (right after the cluster formed), no node ever lists
   another as not live while the cluster idles.

Protocol versions: the first chitchat node is asked, before any other node starts, with a
Syn of each version (an empty digest, from a socket of this script): a chitchat that
answers a V1 Syn in V1 (after 0.10.1; chitchat-test then initiates V1 itself) gets
gossip-tui nodes that initiate V1 and V0 in turn (g0 V1, g1 V0, ...), and one more check:
every chitchat node answers a Syn in the Syn's version, its digest listing every node.
chitchat 0.10.1 drops V1 datagrams, so beside it every gossip-tui node initiates V0.
``--gossip-tui-protocol-version 0|1`` forces one version on every gossip-tui node.

    python scripts/interop_chitchat.py --chitchat-test PATH/TO/chitchat-test
    python scripts/interop_chitchat.py --chitchat-test PATH --chitchat 5 --gossip-tui 5 --gc

Exit status 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))
import _cluster as bench

from gossip_tui.core.codec import PROTOCOL_V0, PROTOCOL_V1, DecodeError, decode, encode
from gossip_tui.core.messages import Digest, Message, Syn, SynAck

CHITCHAT = "chitchat"
GOSSIP_TUI = "gossip-tui"
# chitchat-test's fixed settings, given to the gossip-tui nodes too.
DEAD_NODE_GRACE_PERIOD = 10
MARKED_FOR_DELETION_GRACE_PERIOD = 60
BULK_KEYS = 300
# chitchat-test's cluster id, fixed in its source.
CHITCHAT_TEST_CLUSTER_ID = "testing"


def exchange(
    sock: socket.socket, port: int, message: Message, timeout: float = 2.0
) -> tuple[Message, int] | None:
    """Send ``message`` from ``sock`` to the node on 127.0.0.1:``port``; return the first
    reply that decodes and its size in bytes, or None if none came within ``timeout``."""
    sock.sendto(encode(message), (bench.HOST, port))
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65_535)
        except TimeoutError:
            return None
        try:
            return decode(data), len(data)
        except DecodeError:
            continue
    return None


def probe_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((bench.HOST, 0))
    return sock


def ask(port: int, message: Message, timeout: float = 2.0) -> Message | None:
    """:func:`exchange` from a fresh socket, the reply only."""
    with probe_socket() as sock:
        reply = exchange(sock, port, message, timeout)
    return None if reply is None else reply[0]


def empty_syn(protocol_version: int, cluster_id: str = CHITCHAT_TEST_CLUSTER_ID) -> Syn:
    return Syn(cluster_id, Digest(), protocol_version=protocol_version)


def answers_in(port: int, protocol_version: int) -> SynAck | None:
    """The node's SynAck to an empty Syn of ``protocol_version``, if it answered in that
    version (a chitchat that does not speak it drops the Syn)."""
    reply = ask(port, empty_syn(protocol_version))
    if isinstance(reply, SynAck) and reply.protocol_version == protocol_version:
        return reply
    return None


class Member:
    """One node process of either kind; both answer chitchat-test's HTTP routes."""

    def __init__(self, kind: str, name: str, port: int, command_line: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.port = port
        self.command_line = command_line
        self.process: Any = None
        self.log_path: Path | None = None

    def start(self, workdir: Path) -> None:
        self.log_path = workdir / f"{self.name}-{time.monotonic_ns()}.log"
        self.process = bench.spawn(self.command_line, self.log_path)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=5)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def get(self, path: str) -> Any:
        url = f"http://{bench.HOST}:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())

    def view(self) -> dict[str, Any]:
        """The node's ``GET /``: cluster_state, live_nodes, dead_nodes."""
        body = self.get("/")
        assert isinstance(body, dict)
        return body


def _ids(nodes: Iterable[dict[str, Any]]) -> set[str]:
    return {node["node_id"] for node in nodes}


def _node_state(view: dict[str, Any], name: str) -> dict[str, Any] | None:
    for state in view["cluster_state"]["node_states"]:
        if state["chitchat_id"]["node_id"] == name:
            return dict(state)
    return None


def _value(view: dict[str, Any], name: str, key: str) -> str | None:
    """The live (not deleted) value of ``key`` on node ``name`` in this view."""
    state = _node_state(view, name)
    if state is None:
        return None
    entry = state["key_values"].get(key)
    if entry is None or entry.get("status", "Set") != "Set":
        return None
    return str(entry["value"])


def _has_key(view: dict[str, Any], name: str, key: str) -> bool:
    state = _node_state(view, name)
    return state is not None and key in state["key_values"]


class Interop:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(bench.tempfile.mkdtemp(prefix="interop-chitchat-"))
        self.members: list[Member] = []
        self.results: list[dict[str, Any]] = []
        self._ports = iter(bench.allocate_ports(args.chitchat + args.gossip_tui + 4))
        # Whether the chitchat build speaks V1: found out from the first chitchat node.
        self.chitchat_speaks_v1 = False
        self._gossip_tui_started = 0

    # ---------------------------------------------------------------- nodes

    def command(self, kind: str, name: str, port: int, seed: Member | None) -> list[str]:
        addr = f"{bench.HOST}:{port}"
        interval = str(self.args.interval_ms)
        seed_args = [] if seed is None else ["--seed", f"{bench.HOST}:{seed.port}"]
        if kind == CHITCHAT:
            return [
                self.args.chitchat_test,
                *("--listen_addr", addr, "--node_id", name, "--interval_ms", interval),
                *seed_args,
            ]
        return [
            *(sys.executable, "-m", "gossip_tui", "--headless"),
            *("--listen-addr", addr, "--node-id", name, "--interval-ms", interval),
            *seed_args,
            *("--dead-node-grace-period", str(DEAD_NODE_GRACE_PERIOD)),
            *("--marked-for-deletion-grace-period", str(MARKED_FOR_DELETION_GRACE_PERIOD)),
            *("--protocol-version", str(self.gossip_tui_protocol_version())),
        ]

    def gossip_tui_protocol_version(self) -> int:
        """The version the next gossip-tui node initiates with: forced, or V1 and V0 in
        turn beside a chitchat that speaks V1, else V0."""
        forced = self.args.gossip_tui_protocol_version
        if forced is not None:
            return int(forced)
        if not self.chitchat_speaks_v1:
            return PROTOCOL_V0
        self._gossip_tui_started += 1
        return PROTOCOL_V1 if self._gossip_tui_started % 2 else PROTOCOL_V0

    def probe_versions(self, member: Member) -> bool:
        """Find out whether ``member`` (the first chitchat node) speaks V1; False if it
        does not even answer a V0 Syn."""
        up = self.check(
            f"{member.name} answers a V0 Syn in V0",
            20,
            lambda: answers_in(member.port, PROTOCOL_V0) is not None,
        )
        if not up:
            return False
        self.chitchat_speaks_v1 = answers_in(member.port, PROTOCOL_V1) is not None
        spoken = "V0 and V1" if self.chitchat_speaks_v1 else "V0 only (drops V1 Syns)"
        bench.log(f"        chitchat-test speaks {spoken}")
        return True

    def answers_each_version(self, names: set[str]) -> bool:
        """Every chitchat node answers a Syn of each version in that version, and lists
        every node in its digest."""
        for member in self.of_kind(CHITCHAT):
            for version in (PROTOCOL_V0, PROTOCOL_V1):
                reply = answers_in(member.port, version)
                if reply is None:
                    return False
                if {node.node_id for node in reply.digest.nodes} != names:
                    return False
        return True

    def member(self, kind: str, name: str, seed: Member | None) -> Member:
        port = next(self._ports)
        member = Member(kind, name, port, self.command(kind, name, port, seed))
        member.start(self.workdir)
        self.members.append(member)
        return member

    def put(self, member: Member, key: str, value: str, query: str = "") -> None:
        """gossip-tui's PUT /keys/{key}: values too long for a URL, and TTLs."""
        request = urllib.request.Request(
            f"http://{bench.HOST}:{member.port}/keys/{quote(key)}{query}",
            data=value.encode(),
            method="PUT",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    @property
    def running(self) -> list[Member]:
        return [m for m in self.members if m.running]

    def of_kind(self, kind: str) -> list[Member]:
        return [m for m in self.running if m.kind == kind]

    def views(self) -> dict[str, dict[str, Any]]:
        return {m.name: m.view() for m in self.running}

    # ---------------------------------------------------------------- checks

    def check(self, title: str, timeout: float, predicate: Callable[[], bool]) -> bool:
        started = time.monotonic()
        deadline = started + timeout
        last_error = ""
        while True:
            try:
                if predicate():
                    elapsed = time.monotonic() - started
                    bench.log(f"ok      {title} ({elapsed:.1f} s)")
                    self.results.append({"check": title, "ok": True, "seconds": elapsed})
                    return True
                last_error = ""
            except (OSError, urllib.error.URLError, ValueError, KeyError) as exc:
                last_error = f" (last error: {exc})"
            if time.monotonic() > deadline:
                bench.log(f"FAILED  {title} within {timeout:.0f} s{last_error}")
                self.results.append({"check": title, "ok": False, "seconds": timeout})
                return False
            time.sleep(0.2)

    def all_see_live(self, names: set[str]) -> Callable[[], bool]:
        return lambda: all(_ids(v["live_nodes"]) == names for v in self.views().values())

    def run(self) -> bool:
        args = self.args
        # Alternate the kinds, each seeded by the one before: gossip-tui nodes learn of
        # chitchat nodes through chitchat nodes and the other way round.
        first: Member | None = None
        previous: Member | None = None
        order: list[str] = []
        c, g = args.chitchat, args.gossip_tui
        while c or g:
            if c:
                order.append(CHITCHAT)
                c -= 1
            if g:
                order.append(GOSSIP_TUI)
                g -= 1
        counts = {CHITCHAT: 0, GOSSIP_TUI: 0}
        for kind in order:
            name = f"{'c' if kind == CHITCHAT else 'g'}{counts[kind]}"
            counts[kind] += 1
            previous = self.member(kind, name, previous)
            if first is None:
                first = previous
                if not self.probe_versions(first):
                    return False
        names = {m.name for m in self.members}
        ok = self.check(
            f"{len(names)} nodes ({args.chitchat} chitchat, {args.gossip_tui} gossip-tui) "
            "all live everywhere",
            60,
            self.all_see_live(names),
        )
        if not ok:
            return False
        if self.chitchat_speaks_v1:
            self.check(
                "every chitchat node answers a V0 Syn in V0 and a V1 Syn in V1, "
                "its digest listing every node",
                10,
                lambda: self.answers_each_version(names),
            )
        if args.soak:
            self.check(
                f"idle for {args.soak:g} min: no node ever listed another dead",
                1,
                lambda: self.soak(args.soak * 60, names),
            )

        writer_g, writer_c = self.of_kind(GOSSIP_TUI)[0], self.of_kind(CHITCHAT)[0]
        writer_g.get(f"/set_kv/?key=color&value={quote('deep blue')}")
        writer_c.get(f"/set_kv/?key=shape&value={quote('round & red')}")
        self.check(
            "a key set on each kind reaches every node",
            20,
            lambda: all(
                _value(v, writer_g.name, "color") == "deep blue"
                and _value(v, writer_c.name, "shape") == "round & red"
                for v in self.views().values()
            ),
        )

        writer_g.get("/mark_for_deletion/?key=color")
        writer_c.get("/mark_for_deletion/?key=shape")
        deleted_at = time.monotonic()
        self.check(
            "deleting them reaches every node",
            20,
            lambda: all(
                _value(v, writer_g.name, "color") is None
                and _value(v, writer_c.name, "shape") is None
                for v in self.views().values()
            ),
        )

        for i in range(BULK_KEYS):
            writer_g.get(f"/set_kv/?key=bulk{i:03d}&value={'g' * 1000}{i}")
            writer_c.get(f"/set_kv/?key=bulk{i:03d}&value={'c' * 1000}{i}")
        last = BULK_KEYS - 1
        self.check(
            f"{BULK_KEYS} keys of 1 KB set on each kind reach every node",
            60,
            lambda: all(
                _value(v, writer_g.name, f"bulk{last:03d}") == f"{'g' * 1000}{last}"
                and _value(v, writer_c.name, f"bulk{last:03d}") == f"{'c' * 1000}{last}"
                and all(
                    _value(v, w.name, f"bulk{i:03d}") is not None
                    for w in (writer_g, writer_c)
                    for i in range(BULK_KEYS)
                )
                for v in self.views().values()
            ),
        )

        big = "v" * 59_000
        self.put(writer_g, "big", big)
        self.check(
            "a 59 KB value set on a gossip-tui node reaches every node",
            30,
            lambda: all(_value(v, writer_g.name, "big") == big for v in self.views().values()),
        )
        self.put(writer_g, "temporary", "soon gone", query="?ttl=true")

        def ttl_everywhere() -> bool:
            for view in self.views().values():
                state = _node_state(view, writer_g.name) or {"key_values": {}}
                entry = state["key_values"].get("temporary") or {}
                if entry.get("status") != "DeleteAfterTtl" or entry["value"] != "soon gone":
                    return False
            return True

        self.check("a key set with a TTL shows as DeleteAfterTtl everywhere", 30, ttl_everywhere)
        port = next(self._ports)
        outsider = Member(
            GOSSIP_TUI,
            "outsider",
            port,
            [*self.command(GOSSIP_TUI, "outsider", port, first), "--cluster-id", "other"],
        )
        outsider.start(self.workdir)
        time.sleep(10 * args.interval_ms / 1000)
        self.check(
            "a gossip-tui node of another cluster, seeded with a chitchat node, is refused",
            1,
            lambda: (
                outsider.running
                and _ids(outsider.view()["live_nodes"]) == {"outsider"}
                and all(_node_state(v, "outsider") is None for v in self.views().values())
            ),
        )
        outsider.kill()

        # Kill nodes that are neither the writers nor the first seed.
        spare_g = [m for m in self.of_kind(GOSSIP_TUI) if m is not writer_g]
        spare_c = [m for m in self.of_kind(CHITCHAT) if m not in (writer_c, first)]
        if spare_g and spare_c:
            victims = [spare_g[-1], spare_c[-1]]
            for victim in victims:
                victim.kill()
            killed_at = time.monotonic()
            gone = {v.name for v in victims}
            # chitchat forgets a dead node 10 s after declaring it dead, and the kinds do
            # not declare it at the same moment: remember who saw it dead, and when.
            seen_dead: dict[tuple[str, str], float] = {}

            def all_saw_them_dead() -> bool:
                for observer, view in self.views().items():
                    for name in gone & _ids(view["dead_nodes"]):
                        seen_dead.setdefault((observer, name), time.monotonic() - killed_at)
                return all((m.name, name) in seen_dead for m in self.running for name in gone)

            self.check(
                "kill -9 of one node of each kind: every survivor marks both dead",
                60,
                all_saw_them_dead,
            )
            for (observer, name), seconds in sorted(seen_dead.items()):
                bench.log(f"          {observer} marked {name} dead after {seconds:.1f} s")
            self.check(
                f"both forgotten after the {DEAD_NODE_GRACE_PERIOD} s dead-node grace period",
                DEAD_NODE_GRACE_PERIOD + 30,
                lambda: all(
                    all(_node_state(v, name) is None for name in gone)
                    for v in self.views().values()
                ),
            )
            restarted = victims[0]
            # Its seed may be the chitchat node just killed: join through the first node.
            restarted.command_line = self.command(
                restarted.kind, restarted.name, restarted.port, first
            )
            restarted.start(self.workdir)

            def generation(view: dict[str, Any]) -> object:
                state = _node_state(view, restarted.name)
                return None if state is None else state["chitchat_id"]["generation_id"]

            self.check(
                "the gossip-tui node restarted with a new generation is live on every node",
                30,
                lambda: all(
                    restarted.name in _ids(v["live_nodes"])
                    and generation(v) == generation(restarted.view())
                    for v in self.views().values()
                ),
            )
        else:
            bench.log("skipped the kills: too few nodes of each kind (2 of each needed)")

        if args.gc:
            wait = deleted_at + MARKED_FOR_DELETION_GRACE_PERIOD + 2 * args.interval_ms / 1000
            bench.log(f"waiting {max(0.0, wait - time.monotonic()):.0f} s for tombstone GC")
            bench.sleep_until(wait)
            late_c = self.member(CHITCHAT, "c-late", writer_g)
            late_g = self.member(GOSSIP_TUI, "g-late", writer_c)
            self.check(
                "nodes joining after the tombstone GC get the state without the deleted keys",
                60,
                lambda: all(
                    late.name in _ids(late.view()["live_nodes"])
                    and not _has_key(late.view(), writer_g.name, "color")
                    and not _has_key(late.view(), writer_c.name, "shape")
                    and _value(late.view(), writer_g.name, f"bulk{last:03d}") is not None
                    and _value(late.view(), writer_c.name, f"bulk{last:03d}") is not None
                    for late in (late_c, late_g)
                ),
            )

        self.check("no node logged an error", 1, self.no_errors)
        self.check("no gossip-tui node dropped a datagram as malformed", 1, self.no_malformed)
        return all(r["ok"] for r in self.results)

    def soak(self, seconds: float, names: set[str]) -> bool:
        """Poll every node twice per second for ``seconds``; log every node that one of
        them does not list live (a false death: nobody was stopped)."""
        end = time.monotonic() + seconds
        false_deaths = 0
        while time.monotonic() < end:
            started = time.monotonic()
            for observer, view in self.views().items():
                missing = names - _ids(view["live_nodes"])
                for name in sorted(missing):
                    false_deaths += 1
                    bench.log(f"          {observer} does not list {name} live")
            bench.sleep_until(started + 0.5)
        return false_deaths == 0

    def no_errors(self) -> bool:
        clean = True
        for member in self.members:
            assert member.log_path is not None
            for line in member.log_path.read_text(errors="replace").splitlines():
                if " ERROR " in line or " WARN " in line or "Traceback" in line:
                    bench.log(f"  {member.name}: {line}")
                    clean = False
        return clean

    def no_malformed(self) -> bool:
        for member in self.of_kind(GOSSIP_TUI):
            url = f"http://{bench.HOST}:{member.port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
            for line in text.splitlines():
                malformed = line.startswith('gossip_tui_dropped_total{reason="malformed"}')
                if malformed and float(line.split()[-1]) != 0:
                    bench.log(f"  {member.name}: {line}")
                    return False
        return True

    def stop(self) -> None:
        for member in self.members:
            if member.running:
                member.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chitchat-test", required=True, help="path to chitchat-test")
    parser.add_argument("--chitchat", type=int, default=3, help="chitchat nodes (default 3)")
    parser.add_argument("--gossip-tui", type=int, default=3, help="gossip-tui nodes (default 3)")
    parser.add_argument("--interval-ms", type=int, default=500, help="gossip interval")
    parser.add_argument("--gc", action="store_true", help="also check tombstone GC (+70 s)")
    parser.add_argument(
        "--soak", type=float, default=0, help="minutes to idle first, watching for false deaths"
    )
    parser.add_argument("--json", type=Path, help="where to write the results")
    parser.add_argument(
        "--gossip-tui-protocol-version",
        choices=("0", "1"),
        help="the version every gossip-tui node initiates with (default: V1 and V0 in turn "
        "when chitchat-test speaks V1, else V0)",
    )
    args = parser.parse_args()
    if args.chitchat < 1 or args.gossip_tui < 1:
        parser.error("at least one node of each kind")
    if not Path(args.chitchat_test).is_file():
        parser.error(f"no chitchat-test binary at {args.chitchat_test}")
    interop = Interop(args)
    try:
        ok = interop.run()
    finally:
        interop.stop()
    if args.json:
        bench.write_json(args.json, {"machine": bench.machine_info(), "checks": interop.results})
    passed = sum(r["ok"] for r in interop.results)
    print(f"{passed}/{len(interop.results)} checks passed; logs in {interop.workdir}")
    return 0 if ok else 1


if __name__ == "__main__":
    bench.run_main(main)
