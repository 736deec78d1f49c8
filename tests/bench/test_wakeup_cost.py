"""Smoke test of scripts/bench/wakeup_cost.py: it runs each mode and prints a row for it;
never its figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench"

pytestmark = pytest.mark.slow


def test_every_mode_prints_a_row() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "wakeup_cost.py"), "--rate", "50", "--seconds", "0.2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[1:]}
    assert set(rows) == {"epoll", "trio-sleep", "trio-readable"}
    assert all(float(cells[0]) >= 0 for cells in rows.values()), done.stdout


def test_a_bad_rate_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "wakeup_cost.py"), "--rate", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "must be positive" in done.stderr
