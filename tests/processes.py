"""Run real `gossip-tui --headless` processes on 127.0.0.1 and talk to their HTTP API."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Never go through a proxy: every request here is for 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def run_probe(source: str, *args: str, env: Mapping[str, str] | None = None) -> list[str]:
    """Run ``source`` in a fresh interpreter on this tree; its stdout lines.

    The GOSSIP_TUI_ environment of the test run is left out, so a probe that starts a
    node gets the defaults; ``env`` adds variables of the probe's own. The probe must
    exit 0.
    """
    probe_env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSIP_TUI_")}
    probe_env.update(env or {})
    probe_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), probe_env.get("PYTHONPATH")])
    )
    result = subprocess.run(
        [sys.executable, "-c", source, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=probe_env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def get_json(url: str) -> Any:
    with _OPENER.open(url, timeout=5) as response:
        return json.loads(response.read())


def answers(url: str) -> bool:
    try:
        get_json(url)
    except (OSError, urllib.error.URLError, http.client.HTTPException):
        # HTTPException: the ports come from the ephemeral range, so a poll made before the
        # node listens can connect the client to itself (TCP simultaneous open) and read
        # its own request back as the answer ("BadStatusLine: GET / HTTP/1.1", seen once
        # in CI under load). That is "not up yet", like a refused connection.
        return False
    return True


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP (as free as a test can know)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise AssertionError("no free port")


def spawn_node(tmp_path: Path, name: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSIP_TUI_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "gossip_tui", "--headless", "--node-id", name, *args],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=REPO,
            env=env,
        )
    return process, log


@contextmanager
def running_node(
    tmp_path: Path, name: str, *args: str
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A headless node process, killed on exit if it is still running."""
    process, log = spawn_node(tmp_path, name, *args)
    try:
        yield process, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def running_chitchat_test(
    binary: str, tmp_path: Path, name: str, port: int, *args: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A chitchat-test process (chitchat's own test server, built outside this project)
    gossiping on 127.0.0.1:``port`` and answering its HTTP routes on the same port; killed
    on exit if it is still running."""
    log = tmp_path / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [binary, "--listen_addr", f"127.0.0.1:{port}", "--node_id", name, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
