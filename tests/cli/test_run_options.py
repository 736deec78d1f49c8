"""The run command's quick parser reads its arguments exactly as the typer app does, or
leaves them to it; both read the one option table."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import attrs
import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossip_tui import cli
from gossip_tui._config_file import CliSettings
from gossip_tui._run_options import RUN_OPTIONS, RunArgs, parse_run_args
from gossip_tui._typer_app import app

_COMMAND = typer.main.get_command(app)


def _typer_reads(args: list[str]) -> RunArgs | None:
    """What the typer app hands the run command for ``args``; None when it does not run
    it (a usage error, help, a subcommand)."""
    seen: list[RunArgs] = []

    def run_node(invocation: RunArgs) -> int:
        seen.append(invocation)
        return 0

    original = cli.run_node
    cli.run_node = run_node
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            _COMMAND.main(list(args), prog_name=cli.PROG, standalone_mode=False)
    except Exception:  # click's usage errors
        return None
    finally:
        cli.run_node = original
    return seen[0] if seen else None


_FLAGS = [flag for option in RUN_OPTIONS for flag in option.flags]
_VALUES = [
    "127.0.0.1:1",
    "[::1]:9000",
    "seed.example:3",
    "nope",
    "300.0.0.1:1",
    "5",
    "0",
    "1.5",
    "-1",
    "x",
    "",
    "debug",
    "JSON",
    "a,b",
    "*",
    "/nonexistent/file",
    "/tmp",
    "/dev/null",
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
]
_OTHERS = ["--", "-h", "--help", "demo", "version", "--bogus", "--headles", "-n"]
_TOKENS = st.one_of(
    st.sampled_from(_FLAGS),
    st.sampled_from(_VALUES),
    st.sampled_from(_OTHERS),
    st.builds(
        lambda flag, value: f"{flag}={value}", st.sampled_from(_FLAGS), st.sampled_from(_VALUES)
    ),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_TOKENS, max_size=8))
def test_the_quick_parser_reads_what_typer_reads_or_leaves_it_to_typer(args: list[str]) -> None:
    quick = parse_run_args(args, {})
    if quick is not None:
        assert quick == _typer_reads(args)


# A few options given many times over: which occurrence counts, and in what order.
_REPEATED = st.tuples(
    st.sampled_from(
        ["--node-id", "--node_id", "--seed", "--interval-ms", "--log-level", "--headless"]
    ),
    st.sampled_from(["n1", "n2", "127.0.0.1:1", "seed.example:2", "5", "7", "debug", "info"]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_REPEATED, max_size=6))
def test_repeated_options_are_read_as_typer_reads_them(pairs: list[tuple[str, str]]) -> None:
    args = [
        token
        for flag, value in pairs
        for token in ((flag,) if flag == "--headless" else (flag, value))
    ]
    quick = parse_run_args(args, {})
    if quick is not None:
        assert quick == _typer_reads(args)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--headless"],
        ["--headless", "--no-http", "--listen-addr", "127.0.0.1:10001"],
        ["--listen_addr=127.0.0.1:1", "--node_id", "n1", "--interval_ms", "250"],
        ["--seed", "127.0.0.1:1", "--seed=seed.example:2", "--cluster-id", "c"],
        ["--node-id", "a", "--node-id", "b"],  # the last one wins, as in click
        ["--phi-threshold", "5.5", "--acceptable-pause=0.5", "--dead-node-grace-period", "10"],
        ["--log-level", "DEBUG", "--log-format", "json", "--protocol-version", "1"],
        ["--http-addr", "127.0.0.1:0", "--http-allowed-hosts", "a.example,b.example"],
        ["--partial-digests", "--api-token-protects-reads", "--insecure-http"],
        ["--config", "/nonexistent/gossip.toml", "--state-dir", "/nonexistent/state"],
    ],
)
def test_a_node_starts_without_typer(args: list[str]) -> None:
    quick = parse_run_args(args, {})

    assert quick is not None
    assert quick == _typer_reads(args)


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["-h"],
        ["demo"],
        ["--headless", "version"],
        ["--bogus"],
        ["--headless=yes"],
        ["--node-id"],
        ["--listen-addr", "nope"],
        ["--acceptable-pause", "-1"],  # click reads "-1" as the value; left to it
        ["--", "--headless"],
        ["--config", "/tmp"],  # a directory, which typer refuses
        ["--config="],
    ],
)
def test_what_the_quick_parser_leaves_to_typer(args: list[str]) -> None:
    assert parse_run_args(args, {}) is None


def test_shell_completion_is_left_to_typer() -> None:
    assert parse_run_args([], {"_GOSSIP_TUI_COMPLETE": "bash_complete"}) is None


def test_every_setting_has_an_option_and_every_option_a_setting() -> None:
    fields = {option.field for option in RUN_OPTIONS} - {"config"}
    settings_fields = {field.name for field in attrs.fields(CliSettings)}

    assert fields == settings_fields


def test_the_quick_path_and_typer_give_the_runner_the_same_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[CliSettings] = []

    def runner(settings: CliSettings) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr(cli, "run_dashboard", runner)
    config = tmp_path / "c.toml"
    config.write_text('cluster_id = "toml"\n', encoding="utf-8")
    args = ["--config", str(config), "--node-id", "n", "--seed", "127.0.0.1:1"]

    assert cli.main(args) == 0  # the quick path
    with monkeypatch.context() as patched:
        patched.setattr(cli, "parse_run_args", lambda args: None)  # typer's path
        assert cli.main(args) == 0

    quick, by_typer = seen
    assert quick == by_typer
    assert (quick.cluster_id, quick.node_id, quick.seeds) == ("toml", "n", ("127.0.0.1:1",))
