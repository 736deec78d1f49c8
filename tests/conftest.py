"""Shared fixtures for the whole test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

# The chitchat golden vectors live beside the repository, not inside it.
VECTORS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "chitchat-vectors"


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """The directory of wire vectors captured from the real Rust chitchat 0.10."""
    if not VECTORS_DIR.is_dir():
        pytest.skip(
            f"golden vectors not found at {VECTORS_DIR}: "
            "they live in the shared/ folder beside the repo"
        )
    return VECTORS_DIR
