"""A mixed cluster with real chitchat nodes, when a chitchat-test binary is at hand.

chitchat-test is chitchat's own test server, built with cargo from the chitchat
repository (quickwit-oss/chitchat); it is not part of this project and CI does not build
it, so this test runs only where CHITCHAT_TEST_BIN names one, and skips otherwise.
scripts/interop_chitchat.py does the work; its docstring lists the checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHITCHAT_TEST_BIN = os.environ.get("CHITCHAT_TEST_BIN", "")


@pytest.mark.slow
@pytest.mark.skipif(
    not Path(CHITCHAT_TEST_BIN).is_file(),
    reason="no chitchat-test binary: set CHITCHAT_TEST_BIN to one built from "
    "quickwit-oss/chitchat to run gossip-tui nodes beside real chitchat nodes",
)
def test_a_mixed_cluster_with_real_chitchat_nodes(tmp_path: Path) -> None:
    out = tmp_path / "interop.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "interop_chitchat.py"),
            *("--chitchat-test", CHITCHAT_TEST_BIN, "--chitchat", "2", "--gossip-tui", "2"),
            *("--json", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    checks = json.loads(out.read_text())["checks"]
    assert len(checks) >= 8
    assert all(check["ok"] for check in checks), checks
