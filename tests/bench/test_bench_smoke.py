"""Smoke tests of scripts/bench/: each script runs with --quick on tiny clusters, prints its
table and writes valid JSON. They check that the benchmarks run, never their figures."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "scripts" / "bench"
HAS_SWIM = importlib.util.find_spec("swimprotocol") is not None
IMPLS = ["gossip-tui", "swim"] if HAS_SWIM else ["gossip-tui"]

pytestmark = pytest.mark.slow


def run_bench(script: str, tmp_path: Path, *args: str, timeout: float = 90) -> tuple[str, Any]:
    out = tmp_path / f"{script}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSIP_TUI_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(BENCH / f"{script}.py"), "--quick", "--json", str(out), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"results written to {out}" in done.stdout
    return done.stdout, json.loads(out.read_text())


def test_convergence(tmp_path: Path) -> None:
    stdout, data = run_bench("convergence", tmp_path, "--impl", *IMPLS)
    assert "convergence: a key set on one node" in stdout
    assert data["machine"]["cpus"] >= 1
    assert [r["impl"] for r in data["results"]] == IMPLS
    for result in data["results"]:
        assert result["nodes"] == 3
        assert result["converged_runs"] == 1, result
        assert result["rounds"]["median"] >= 0


def test_failure_detection(tmp_path: Path) -> None:
    stdout, data = run_bench(
        "failure_detection", tmp_path, "--impl", "gossip-tui", "--idle-minutes", "0.01"
    )
    assert "failure detection: seconds from kill -9" in stdout
    assert "false deaths in an idle cluster" in stdout
    (detection,) = data["detection"]
    assert detection["complete_runs"] == 1, detection
    assert detection["all_dead_seconds"]["max"] > 0
    (idle,) = data["false_deaths"]
    assert idle["polls"] > 0
    assert idle["false_deaths"] == 0


def test_failure_detection_pause(tmp_path: Path) -> None:
    # A 1 s warm-up, not the quick default of 3: the pause path runs all the same, and a
    # younger detector (a larger mean interval) only keeps phi further from a false death.
    stdout, data = run_bench(
        "failure_detection", tmp_path, "--mode", "pause", "--pause", "0.5", "--warmup", "1"
    )
    assert "SIGSTOP at steady state" in stdout
    (pauses,) = data["pauses"]
    (run,) = pauses["runs_detail"]
    assert run["polls"] >= run["observers"]
    assert run["declared_dead_by"] == 0
    assert 0 < pauses["largest_phi"] < 8


def test_cost(tmp_path: Path) -> None:
    stdout, data = run_bench(
        "cost", tmp_path, "--impl", "gossip-tui", "--window", "1", "--settle", "0"
    )
    assert "cost per node process" in stdout
    assert "bytes sent per node" in stdout
    (processes,) = data["processes"]
    assert processes["idle"]["rss_mib"]["mean"] > 1
    (inproc,) = data["inproc"]
    assert inproc["idle"]["bytes_per_node_per_interval"] > 0
    assert inproc["updates"]["updates"] >= 1


def test_core(tmp_path: Path) -> None:
    stdout, data = run_bench("core", tmp_path)
    assert "codec and core: one call" in stdout
    cases = {r["case"] for r in data["results"]}
    assert "syn 10-node digest: encode" in cases
    assert all(r["median_us"] > 0 for r in data["results"])
