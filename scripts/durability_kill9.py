#!/usr/bin/env python3
"""Kill -9 a node during bursts of writes, restart it, and check what it acknowledged.

Each round starts `gossip-tui --headless --state-dir DIR` on 127.0.0.1, checks that its
keys are what the acknowledged writes left, then runs several concurrent HTTP clients
doing PUTs and DELETEs and kills the node with SIGKILL at a random moment. A last start
checks the last round. Every client owns its keys and waits for each answer, so the
expected state of every key is known exactly, but for the one request per client the
kill left unanswered (either outcome is right for that key).

    lost         an acknowledged PUT whose value is not there after the restart
    resurrected  a key whose acknowledged DELETE is undone after the restart

    python scripts/durability_kill9.py --rounds 20
    python scripts/durability_kill9.py --rounds 5 --clients 16 --max-burst 2.0 --seed 7
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 20.0
NODE_ID = "kill9"


@attrs.frozen
class Figures:
    rounds: int
    acknowledged_puts: int
    acknowledged_deletes: int
    unanswered: int  # requests the kill left without an answer: either outcome is right
    refused: int  # answered, but not with a 2xx (503: applied, not saved)
    lost: int
    resurrected: int
    unexpected: int  # keys of ours the node has that no request wrote
    tracebacks: int  # in the node's logs

    def summary(self) -> str:
        return (
            f"{self.rounds} rounds: acknowledged {self.acknowledged_puts} PUTs and "
            f"{self.acknowledged_deletes} DELETEs ({self.unanswered} unanswered at the kill, "
            f"{self.refused} refused); lost {self.lost}, resurrected {self.resurrected}, "
            f"unexpected {self.unexpected}; {self.tracebacks} tracebacks in the logs"
        )


@attrs.define
class _Key:
    acknowledged: str | None = None  # the value the last answered write left; None: absent
    # What an unanswered write would have left, when one is.
    pending: tuple[str | None, ...] = ()

    def allowed(self) -> set[str | None]:
        return {self.acknowledged, *self.pending}


@attrs.define
class _Counts:
    puts: int = 0
    deletes: int = 0
    unanswered: int = 0
    refused: int = 0
    lock: threading.Lock = attrs.field(factory=threading.Lock)


def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP (gossip) and TCP (HTTP)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((HOST, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port on 127.0.0.1")


def _start_node(state_dir: Path, log_path: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSIP_TUI_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-m",
        "gossip_tui",
        "--headless",
        "--listen-addr",
        f"{HOST}:{port}",
        "--node-id",
        NODE_ID,
        "--state-dir",
        str(state_dir),
    ]
    with log_path.open("ab") as log:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, cwd=REPO, env=env)


def _request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _wait_until_serving(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the node exited with {process.returncode}:\n{tail}")
        try:
            if _request(port, "GET", "/health")[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the node did not serve HTTP within {START_TIMEOUT} s")
        time.sleep(0.02)


def _our_keys(port: int) -> dict[str, str]:
    status, body = _request(port, "GET", "/keys")
    if status != 200:
        raise RuntimeError(f"GET /keys answered {status}: {body[:200]!r}")
    keys: dict[str, Any] = json.loads(body)["keys"]
    return {k: v["value"] for k, v in keys.items() if k.startswith("c")}


def _path(key: str) -> str:
    return f"/keys/{key}"  # our keys are plain ASCII names


def _client(
    port: int,
    keys: dict[str, _Key],
    names: list[str],
    counts: _Counts,
    rng: random.Random,
    tag: str,
    stop: threading.Event,
) -> None:
    """Write to our own keys, one request at a time, until the node dies or ``stop``."""
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    serial = 0
    try:
        while not stop.is_set():
            name = rng.choice(names)
            key = keys[name]
            serial += 1
            if key.acknowledged is not None and rng.random() < 0.4:
                method, body, after = "DELETE", None, None
            else:
                value = f"{tag}-{serial}"
                method, body, after = "PUT", value.encode(), value
            key.pending = (after,)  # sent: from now on either outcome may be on disk
            try:
                connection.request(method, _path(name), body=body)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                with counts.lock:
                    counts.unanswered += 1
                return  # the node is gone; the key stays in doubt until the restart
            if response.status == 200:
                key.acknowledged = after
                key.pending = ()
                with counts.lock:
                    if method == "PUT":
                        counts.puts += 1
                    else:
                        counts.deletes += 1
            else:
                # Applied or not, saved or not: the restart tells; the key stays in doubt.
                with counts.lock:
                    counts.refused += 1
                return
    finally:
        connection.close()


def _check(port: int, keys: dict[str, _Key], problems: list[str]) -> tuple[int, int, int]:
    """Compare the node's keys with the model, then take them as the new truth."""
    actual = _our_keys(port)
    lost = resurrected = 0
    for name, key in keys.items():
        found = actual.get(name)
        if found not in key.allowed():
            if key.acknowledged is None:
                resurrected += 1
                problems.append(f"{name}: deleted, but came back as {found!r}")
            else:
                lost += 1
                problems.append(f"{name}: acknowledged {key.acknowledged!r}, found {found!r}")
        key.acknowledged = found
        key.pending = ()
    unexpected = len(set(actual) - set(keys))
    problems.extend(f"{name}: never written, found" for name in sorted(set(actual) - set(keys)))
    return lost, resurrected, unexpected


def run(
    *,
    rounds: int,
    clients: int,
    keys_per_client: int,
    max_burst: float,
    seed: int,
    work_dir: Path,
    echo: bool = False,
) -> tuple[Figures, list[str]]:
    """Run the rounds in ``work_dir`` (state directory and logs); the figures and the
    problems found, one line each."""
    rng = random.Random(seed)
    state_dir = work_dir / "state"
    log_path = work_dir / "node.log"
    keys = {f"c{c}-k{k}": _Key() for c in range(clients) for k in range(keys_per_client)}
    counts = _Counts()
    problems: list[str] = []
    lost = resurrected = unexpected = 0
    for round_number in range(rounds + 1):
        port = free_port()
        process = _start_node(state_dir, log_path, port)
        try:
            _wait_until_serving(process, port, log_path)
            found = _check(port, keys, problems)
            lost, resurrected, unexpected = (
                lost + found[0],
                resurrected + found[1],
                unexpected + found[2],
            )
            if round_number == rounds:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=20)
                break
            stop = threading.Event()
            threads = [
                threading.Thread(
                    target=_client,
                    args=(
                        port,
                        keys,
                        [n for n in keys if n.startswith(f"c{c}-")],
                        counts,
                        random.Random(rng.random()),
                        f"r{round_number}c{c}",
                        stop,
                    ),
                    daemon=True,
                )
                for c in range(clients)
            ]
            for thread in threads:
                thread.start()
            # The random moment of the kill: what the whole script is about.
            time.sleep(rng.uniform(0.05, max_burst))
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=20)
            stop.set()
            for thread in threads:
                thread.join(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=20)
        if echo:
            print(
                f"round {round_number + 1}/{rounds}: {counts.puts} PUTs and {counts.deletes} "
                f"DELETEs acknowledged so far; lost {lost}, resurrected {resurrected}",
                file=sys.stderr,
            )
    log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
    figures = Figures(
        rounds=rounds,
        acknowledged_puts=counts.puts,
        acknowledged_deletes=counts.deletes,
        unanswered=counts.unanswered,
        refused=counts.refused,
        lost=lost,
        resurrected=resurrected,
        unexpected=unexpected,
        tracebacks=log_text.count("Traceback"),
    )
    return figures, problems


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="kill -9 a headless node with --state-dir during write bursts; check "
        "that every acknowledged PUT and DELETE survives"
    )
    parser.add_argument("--rounds", type=int, default=20, help="kills (default 20)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (8)")
    parser.add_argument("--keys-per-client", type=int, default=40, help="(default 40)")
    parser.add_argument(
        "--max-burst", type=float, default=1.5, help="longest burst before a kill, s (1.5)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--work-dir", type=Path, help="keep the state directory and the log here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kill9-") as scratch:
        work_dir = args.work_dir or Path(scratch)
        work_dir.mkdir(parents=True, exist_ok=True)
        figures, problems = run(
            rounds=args.rounds,
            clients=args.clients,
            keys_per_client=args.keys_per_client,
            max_burst=args.max_burst,
            seed=args.seed,
            work_dir=work_dir,
            echo=True,
        )
    for problem in problems[:50]:
        print(f"  {problem}")
    print(figures.summary())
    failed = figures.lost or figures.resurrected or figures.unexpected or figures.tracebacks
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
