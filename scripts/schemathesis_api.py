"""Run schemathesis against a real headless node's HTTP API, on 127.0.0.1 only.

schemathesis is not a dependency of the project: install it in a venv of its own and
point this script at its ``st`` command (or have ``st`` on the PATH)::

    python3 -m venv /tmp/st-venv && /tmp/st-venv/bin/pip install schemathesis
    .venv/bin/python scripts/schemathesis_api.py --st /tmp/st-venv/bin/st [--max-examples 200]

The node runs with an API token (sent by schemathesis, so the writes are exercised too) and
its state in a temporary directory. Every route is run, ``GET /events`` included: it is a
stream that stays open by design, so the hooks in scripts/_schemathesis_hooks.py bound
each of its requests to at most a second (its ``timeout`` query parameter) where the
generated query is valid. Exit status: schemathesis's (0 when no check failed: no 5xx,
every response matches the document).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKEN = "schemathesis-token-0123456789"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port = int(udp.getsockname()[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", port))  # free for TCP too, or this raises
    return port


def _wait_for(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with _OPENER.open(url, timeout=2) as response:
                json.loads(response.read())
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"the node did not answer at {url} within {timeout}s") from None
            time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--st", default=shutil.which("st") or "st", help="schemathesis's st")
    parser.add_argument("--max-examples", type=int, default=100)
    # One worker: with several, schemathesis 4.32 on Python 3.11 can crash in its own
    # coverage phase (a CPython ast.parse race), which says nothing about the API.
    parser.add_argument("--workers", default="1")
    parser.add_argument("--report-dir", type=Path, default=None)
    args, extra = parser.parse_known_args()

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="gossip-st-") as tmp:
        token = Path(tmp) / "token"
        token.write_text(TOKEN + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSIP_TUI_")}
        env["PYTHONPATH"] = str(REPO)
        st_env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSIP_TUI_")}
        st_env["PYTHONPATH"] = str(REPO / "scripts")
        st_env["SCHEMATHESIS_HOOKS"] = "_schemathesis_hooks"
        node_command = [
            sys.executable,
            "-m",
            "gossip_tui",
            "--headless",
            "--listen-addr",
            f"127.0.0.1:{port}",
            "--node-id",
            "schemathesis",
            "--state-dir",
            str(Path(tmp) / "state"),
            "--api-token-file",
            str(token),
        ]
        log = (Path(tmp) / "node.log").open("wb")
        with log, subprocess.Popen(node_command, env=env, stdout=log, stderr=log) as node:
            try:
                _wait_for(f"{base}/health", 30)
                st_command = [
                    args.st,
                    "run",
                    f"{base}/openapi.json",
                    "--url",
                    base,
                    "--checks",
                    "all",
                    "--header",
                    f"Authorization: Bearer {TOKEN}",
                    "--request-timeout",
                    "10",
                    "--max-examples",
                    str(args.max_examples),
                    "--workers",
                    args.workers,
                    *(
                        ["--report", "junit", "--report-dir", str(args.report_dir)]
                        * bool(args.report_dir)
                    ),
                    *extra,
                ]
                print("+", " ".join(st_command), flush=True)
                # From the temporary directory: st leaves a .schemathesis/ folder behind.
                code = subprocess.call(st_command, cwd=tmp, env=st_env)
                alive = node.poll() is None
            finally:
                node.terminate()
                node.wait(timeout=30)
        server_errors = [
            line
            for line in (Path(tmp) / "node.log").read_text(errors="replace").splitlines()
            if "Traceback" in line or " ERROR " in line
        ]
    print(
        f"node still running after the run: {alive}; error lines in its log: {len(server_errors)}"
    )
    for line in server_errors[:20]:
        print("  ", line)
    return code if alive and not server_errors else max(code, 1)


if __name__ == "__main__":
    raise SystemExit(main())
