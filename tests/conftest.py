"""Shared fixtures for the whole test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

# The chitchat golden vectors live beside the repository, not inside it.
VECTORS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "chitchat-vectors"


@pytest.fixture
def as_if_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs of the command line have stdin, stdout and stderr captured: this
    lets them pass as a terminal, so that they reach what they test
    (tests/cli/test_no_terminal.py runs the real check, in subprocesses)."""
    from gossip_tui import cli

    monkeypatch.setattr(cli, "_streams_without_terminal", list)


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """The directory of wire vectors captured from the real Rust chitchat 0.10."""
    if not VECTORS_DIR.is_dir():
        pytest.skip(
            f"golden vectors not found at {VECTORS_DIR}: "
            "they live in the shared/ folder beside the repo"
        )
    return VECTORS_DIR
