"""Fixtures for the command-line tests."""

from __future__ import annotations

import pytest

from gossip_tui import cli


@pytest.fixture(autouse=True)
def _a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process tests run the dashboard's command with stdin, stdout and stderr captured:
    # as if on a terminal, so that they reach what they test (tests/cli/test_no_terminal.py
    # runs the real check, in subprocesses).
    monkeypatch.setattr(cli, "_streams_without_terminal", list)
