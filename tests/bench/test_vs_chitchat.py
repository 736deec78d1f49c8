"""scripts/bench/vs_chitchat.py: how it counts chitchat's datagrams from an strace log, and a
smoke run beside real chitchat nodes when a chitchat-test binary is at hand.

chitchat-test is chitchat's own test server, built with cargo from the chitchat repository
(quickwit-oss/chitchat); it is not part of this project and CI does not build it, so the
smoke run happens only where CHITCHAT_TEST_BIN names one, and skips otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "scripts" / "bench"
CHITCHAT_TEST_BIN = os.environ.get("CHITCHAT_TEST_BIN", "")

sys.path.insert(0, str(BENCH))
from vs_chitchat import count_datagrams  # noqa: E402

UDP_SEND = (
    '4242 sendto(6, ""..., {size}, MSG_NOSIGNAL, {{sa_family=AF_INET, '
    'sin_port=htons(20001), sin_addr=inet_addr("127.0.0.1")}}, 16) = {sent}'
)


def test_udp_sends_are_counted_with_the_bytes_the_kernel_took() -> None:
    lines = [UDP_SEND.format(size=93, sent=93), UDP_SEND.format(size=1200, sent=1200)]
    assert count_datagrams(lines) == (1293, 2)


def test_sends_without_an_address_are_tcp_and_not_counted() -> None:
    lines = [
        '4243 sendto(8, ""..., 1041, MSG_NOSIGNAL, NULL, 0) = 1041',
        UDP_SEND.format(size=50, sent=50),
    ]
    assert count_datagrams(lines) == (50, 1)


def test_a_failed_send_is_not_counted() -> None:
    lines = [UDP_SEND.format(size=50, sent=-1) + " EAGAIN (Resource temporarily unavailable)"]
    assert count_datagrams(lines) == (0, 0)


def test_a_call_split_by_another_thread_is_counted_once_when_it_resumes() -> None:
    udp_start = UDP_SEND.format(size=70, sent=70).rsplit(" = ", 1)[0]
    lines = [
        udp_start.replace(", 16)", ", 16 <unfinished ...>"),
        UDP_SEND.format(size=30, sent=30).replace("4242", "4244"),
        '4245 sendto(8, ""..., 500, MSG_NOSIGNAL, NULL, 0 <unfinished ...>',
        "4242 <... sendto resumed>)             = 70",
        "4245 <... sendto resumed>)             = 500",
    ]
    assert count_datagrams(lines) == (100, 2)


@pytest.mark.slow
@pytest.mark.skipif(
    not Path(CHITCHAT_TEST_BIN).is_file(),
    reason="no chitchat-test binary: set CHITCHAT_TEST_BIN to one built from "
    "quickwit-oss/chitchat to benchmark gossip-tui beside real chitchat nodes",
)
def test_a_quick_side_by_side_run(tmp_path: Path) -> None:
    out = tmp_path / "vs_chitchat.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSIP_TUI_")}
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "vs_chitchat.py"),
            *("--chitchat-test", CHITCHAT_TEST_BIN, "--quick", "--json", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert "chitchat-test vs gossip-tui" in done.stdout
    data = json.loads(out.read_text())
    assert data["failures"] == []
    results = {r["impl"]: r for r in data["results"]}
    assert set(results) == {"chitchat", "gossip-tui"}
    tools = shutil.which("strace") and shutil.which("setpriv")
    counted = {"gossip-tui"} | ({"chitchat"} if tools else set())
    for impl, result in results.items():
        assert result["join_seconds"] > 0
        assert result["idle"]["rss_mib"]["mean"] > 1
        assert all(run["complete"] for run in result["spread_runs"] + result["kill_runs"])
        traffic = result["idle"]["traffic"]
        if impl in counted:
            assert traffic["bytes_per_node_per_interval"] > 0, impl
            assert traffic["datagrams_per_node_per_interval"] > 0, impl
