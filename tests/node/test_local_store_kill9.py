"""scripts/durability_kill9.py, short: real headless nodes with --state-dir, killed with
SIGKILL during bursts of HTTP writes, keep every write they acknowledged."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "durability_kill9.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("durability_kill9", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_no_acknowledged_write_is_lost_to_kill_9(script: Any, tmp_path: Path) -> None:
    figures, problems = script.run(
        rounds=3, clients=6, keys_per_client=10, max_burst=0.6, seed=11, work_dir=tmp_path
    )
    assert problems == []
    assert figures.lost == 0 and figures.resurrected == 0 and figures.unexpected == 0
    assert figures.tracebacks == 0
    # The rounds did write: otherwise there is nothing to have lost.
    assert figures.acknowledged_puts > 20 and figures.acknowledged_deletes > 0
