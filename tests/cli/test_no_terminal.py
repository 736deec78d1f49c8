"""The dashboard refuses to start without a terminal on stdin, stdout and stderr (where
Textual draws): one line on stderr naming the stream and --headless, exit status 2, nothing
written to stdout. Real processes; the sides that are a terminal are a pty."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gossip_tui import cli
from gossip_tui.cli import CliError
from tests.processes import REPO

ARGS = ["--listen-addr", "127.0.0.1:0", "--no-http", "--node-id", "no-tty"]
# Enough for the refusal (an import and a check); a dashboard that started would hang here.
TIMEOUT = 30.0


@pytest.fixture
def pty_end() -> Iterator[int]:
    """The terminal side of a fresh pty (its other side kept open meanwhile)."""
    controller, terminal = pty.openpty()
    try:
        yield terminal
    finally:
        os.close(terminal)
        os.close(controller)


def _run(
    args: list[str], *, stdin: int, stdout: int, stderr: int = subprocess.PIPE
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSIP_TUI_")}
    return subprocess.run(
        [sys.executable, "-m", "gossip_tui", *args],
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        cwd=REPO,
        env=env,
        timeout=TIMEOUT,
        check=False,
    )


def _assert_refused(
    result: subprocess.CompletedProcess[bytes], streams: str, error: bytes | None = None
) -> None:
    lines = (result.stderr if error is None else error).decode().splitlines()
    assert result.returncode == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("gossip-tui: error: ")
    assert f"and {streams} " in lines[0]  # the stream(s) that are no terminal, by name
    assert "--headless" in lines[0]


@pytest.mark.parametrize("command", [[], ["demo", "-n", "1"]], ids=["dashboard", "demo"])
def test_piped_stdin_is_refused(pty_end: int, command: list[str]) -> None:
    # `echo hi | gossip-tui`: the text would land in the filter and `q` could not reach it.
    read_end, write_end = os.pipe()
    os.write(write_end, b"hi\n")
    os.close(write_end)
    try:
        result = _run([*ARGS, *command], stdin=read_end, stdout=pty_end)
    finally:
        os.close(read_end)
    _assert_refused(result, "stdin and stderr")


@pytest.mark.parametrize("command", [[], ["demo", "-n", "1"]], ids=["dashboard", "demo"])
def test_stdout_to_a_file_is_refused_and_the_file_stays_empty(
    pty_end: int, tmp_path: Path, command: list[str]
) -> None:
    out = tmp_path / "out.txt"
    with out.open("wb") as file:
        result = _run([*ARGS, *command], stdin=pty_end, stdout=file.fileno())
    _assert_refused(result, "stdout and stderr")
    assert out.read_bytes() == b""  # no escape codes


@pytest.mark.parametrize("command", [[], ["demo", "-n", "1"]], ids=["dashboard", "demo"])
def test_stderr_to_a_file_is_refused(pty_end: int, tmp_path: Path, command: list[str]) -> None:
    # Textual draws on stderr: `gossip-tui 2> log` would fill the log with escape codes.
    err = tmp_path / "err.txt"
    with err.open("wb") as file:
        result = _run([*ARGS, *command], stdin=pty_end, stdout=pty_end, stderr=file.fileno())
    _assert_refused(result, "stderr", err.read_bytes())


def test_a_dashboard_drawn_by_textual_serve_needs_no_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `gossip-tui serve` runs the dashboard on pipes, with textual-serve's web driver named
    # in TEXTUAL_DRIVER: the check must let it through, and refuse the same streams without.
    monkeypatch.setattr(cli, "_streams_without_terminal", lambda: ["stdin", "stdout", "stderr"])
    monkeypatch.delenv("TEXTUAL_DRIVER", raising=False)
    with pytest.raises(CliError):
        cli.check_terminal()
    monkeypatch.setenv("TEXTUAL_DRIVER", "textual.drivers.web_driver:WebDriver")
    cli.check_terminal()
