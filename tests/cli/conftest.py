"""Fixtures for the command-line tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _a_terminal(as_if_on_a_terminal: None) -> None:
    """Every command-line test runs as if on a terminal (see tests/conftest.py)."""
