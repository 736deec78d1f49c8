"""The gossip-tui command line: options, aliases, errors, subcommands, import hygiene."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import pytest

from gossip_tui import cli
from gossip_tui._config_file import CliSettings
from gossip_tui.core.models import SocketAddress

REPO = Path(__file__).resolve().parents[2]
A = SocketAddress.parse

OPTIONS = [
    "--listen-addr",
    "--listen_addr",
    "--public-addr",
    "--public_addr",
    "--node-id",
    "--node_id",
    "--seed",
    "--interval-ms",
    "--interval_ms",
    "--cluster-id",
    "--headless",
    "--no-http",
    "--config",
    "--dead-node-grace-period",
    "--marked-for-deletion-grace-period",
    "--phi-threshold",
]


def _python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSIP_TUI_")}
    full_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])
    )
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=full_env,
        check=False,
    )


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GOSSIP_TUI_"):
            monkeypatch.delenv(name)


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[CliSettings]:
    """Replace the node runners; collect the settings they were given."""
    seen: list[CliSettings] = []

    def runner(settings: CliSettings) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr(cli, "run_headless", runner)
    monkeypatch.setattr(cli, "run_dashboard", runner)
    return seen


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gossip-tui: error: ")
    return lines[0]


# --------------------------------------------------------------------------- help & imports


def test_help_lists_every_option_and_subcommand() -> None:
    started = time.monotonic()
    result = _python("-m", "gossip_tui", "--help")
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stderr
    for option in OPTIONS:
        assert option in result.stdout
    for variable in ("GOSSIP_TUI_LISTEN_ADDR", "GOSSIP_TUI_SEEDS", "GOSSIP_TUI_CONFIG"):
        assert variable in result.stdout
    assert "demo" in result.stdout
    assert "version" in result.stdout
    # Generous: the point is that no heavy import happens (checked exactly below).
    assert elapsed < 15


_HEAVY = ("textual", "hypercorn", "trio", "rich", "gossip_tui.node", "gossip_tui.ui")


@pytest.mark.parametrize(
    "code",
    [
        "import gossip_tui.cli",
        "from gossip_tui.cli import main; main(['--help'])",
        "from gossip_tui.cli import main; main(['--listen-addr', 'nope'])",
        "from gossip_tui.cli import main; main(['version'])",
    ],
)
def test_the_command_line_starts_without_heavy_imports(code: str) -> None:
    probe = (
        f"import sys\n{code}\n"
        f"heavy = sorted(m for m in sys.modules if m.startswith({_HEAVY!r}))\n"
        "print('HEAVY', heavy)\n"
    )

    result = _python("-c", probe)

    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["version"]) == 0

    assert capsys.readouterr().out.startswith("gossip-tui ")


# --------------------------------------------------------------------------- options


def test_defaults_run_the_dashboard(captured: list[CliSettings]) -> None:
    assert cli.main([]) == 0

    assert captured == [CliSettings()]


def test_underscore_spellings_of_chitchat_test_are_accepted(captured: list[CliSettings]) -> None:
    code = cli.main(
        [
            "--headless",
            "--listen_addr",
            "127.0.0.1:10001",
            "--public_addr",
            "10.0.0.1:10001",
            "--node_id",
            "n1",
            "--interval_ms",
            "250",
            "--cluster_id",
            "c",
            "--seed",
            "127.0.0.1:10000",
            "--seed",
            "seed.example:10000",
        ]
    )

    assert code == 0
    assert captured == [
        CliSettings(
            listen_addr=A("127.0.0.1:10001"),
            public_addr=A("10.0.0.1:10001"),
            node_id="n1",
            interval_ms=250,
            cluster_id="c",
            seeds=("127.0.0.1:10000", "seed.example:10000"),
            headless=True,
        )
    ]


def test_dashed_spellings_and_the_failure_detector_options(captured: list[CliSettings]) -> None:
    code = cli.main(
        [
            "--listen-addr",
            "[::1]:9000",
            "--no-http",
            "--dead-node-grace-period",
            "10",
            "--marked-for-deletion-grace-period",
            "60",
            "--phi-threshold",
            "5.5",
            "--acceptable-pause",
            "0",
        ]
    )

    assert code == 0
    assert captured == [
        CliSettings(
            listen_addr=A("[::1]:9000"),
            no_http=True,
            dead_node_grace_period=10.0,
            marked_for_deletion_grace_period=60.0,
            phi_threshold=5.5,
            acceptable_pause=0.0,
        )
    ]


def test_precedence_through_the_command_line(
    captured: list[CliSettings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        'listen_addr = "127.0.0.1:3"\nnode_id = "toml"\ncluster_id = "toml"\nheadless = true\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("GOSSIP_TUI_LISTEN_ADDR", "127.0.0.1:2")
    monkeypatch.setenv("GOSSIP_TUI_NODE_ID", "env")
    monkeypatch.setenv("GOSSIP_TUI_SEEDS", "127.0.0.1:7,127.0.0.1:8")

    code = cli.main(["--config", str(config), "--listen-addr", "127.0.0.1:1"])

    assert code == 0
    assert captured == [
        CliSettings(
            listen_addr=A("127.0.0.1:1"),
            node_id="env",
            cluster_id="toml",
            headless=True,
            seeds=("127.0.0.1:7", "127.0.0.1:8"),
        )
    ]


def test_the_config_file_can_come_from_the_environment(
    captured: list[CliSettings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.toml"
    config.write_text("interval_ms = 42\n", encoding="utf-8")
    monkeypatch.setenv("GOSSIP_TUI_CONFIG", str(config))

    assert cli.main(["--interval-ms", "43"]) == 0
    assert cli.main([]) == 0

    assert [s.interval_ms for s in captured] == [43, 42]


def test_the_runner_exit_status_is_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "run_headless", lambda settings: 3)

    assert cli.main(["--headless"]) == 3


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--listen-addr", "nope"], "--listen-addr"),
        (["--listen_addr", "localhost:10000"], "not an ip:port address"),
        (["--public-addr", "1.2.3.4:99999"], "--public-addr"),
        (["--seed", "no-port"], "--seed"),
        (["--interval-ms", "fast"], "--interval-ms"),
        (["--interval-ms", "0"], "at least 1 ms"),
        (["--phi-threshold", "x"], "--phi-threshold"),
        (["--dead-node-grace-period", "-1"], "negative"),
        (["--acceptable-pause", "-0.5"], "negative"),
        (["--bogus"], "No such option: --bogus"),
        (["--headles"], "--headless"),
        (["--node-id"], "--node-id"),
        (["unknown-command"], "unknown-command"),
        (["demo", "--nodes", "0"], "--nodes"),
        (["--config", "/nonexistent/gossip.toml"], "config file not found"),
        (["--state-dir", "/dev/null"], "not a directory"),
        (["--secret-key", "abc"], "--secret-key"),
        (["--secret-key-file", "/nonexistent/keys"], "cannot read key file"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    args: list[str],
    fragment: str,
    captured: list[CliSettings],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = cli.main(args)

    assert code == 2
    assert fragment in _one_line_error(capsys)
    assert captured == []


def test_a_bad_toml_file_is_one_line_and_exit_2(
    tmp_path: Path, captured: list[CliSettings], capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("listen_addr = [\n", encoding="utf-8")

    assert cli.main(["--config", str(config)]) == 2
    assert "bad TOML" in _one_line_error(capsys)
    assert captured == []


def test_a_bad_environment_variable_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    captured: list[CliSettings],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GOSSIP_TUI_PHI_THRESHOLD", "high")

    assert cli.main([]) == 2
    assert "GOSSIP_TUI_PHI_THRESHOLD" in _one_line_error(capsys)
    assert captured == []


def test_a_bad_address_through_the_real_entry_point() -> None:
    result = _python("-m", "gossip_tui", "--headless", "--listen-addr", "300.0.0.1:1")

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("gossip-tui: error: Invalid value for '--listen-addr'")


# --------------------------------------------------------------------------- subcommands


def test_demo_runs_the_ui_demo_with_the_top_level_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[CliSettings, int]] = []
    workers_asked: list[int | None] = []

    def fake_run_demo(settings: CliSettings, nodes: int, *, workers: int | None = None) -> int:
        calls.append((settings, nodes))
        workers_asked.append(workers)
        return 0

    monkeypatch.setattr(cli, "run_demo", fake_run_demo)

    code = cli.main(["--interval-ms", "200", "demo", "--nodes", "4"])
    # The hidden --workers: how many processes run the peers (default: one per core).
    assert cli.main(["demo", "--nodes", "4", "--workers", "0"]) == 0
    assert workers_asked == [None, 0]

    assert code == 0
    ((settings, nodes), _) = calls
    # Node 0 on a port and a cluster of the demo's own (tests/ui/test_demo_isolation.py).
    expected = CliSettings(interval_ms=200, listen_addr=settings.listen_addr)
    assert (settings, nodes) == (attrs.evolve(expected, cluster_id=settings.cluster_id), 4)
    assert settings.listen_addr.port == 0


def test_dashboard_and_demo_call_the_ui_with_a_node_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ui = pytest.importorskip("gossip_tui.ui")
    from gossip_tui.node import NodeConfig

    calls: list[tuple[str, Any, Any]] = []

    def run_dashboard(config: Any, *, http: bool) -> int:
        calls.append(("d", config, http))
        return 0

    def run_demo(nodes: int, config: Any, *, workers: int | None = None) -> int:
        calls.append(("demo", nodes, config))
        return 5

    monkeypatch.setattr(ui, "run_dashboard", run_dashboard)
    monkeypatch.setattr(ui, "run_demo", run_demo)

    assert cli.main(["--listen-addr", "127.0.0.1:0", "--no-http", "--node-id", "dash"]) == 0
    assert cli.main(["--listen-addr", "127.0.0.1:0", "demo", "-n", "3"]) == 5

    (kind, config, http), (demo_kind, nodes, demo_config) = calls
    assert (kind, http, demo_kind, nodes) == ("d", False, "demo", 3)
    assert isinstance(config, NodeConfig)
    assert config.node_id == "dash"
    assert isinstance(demo_config, NodeConfig)


@pytest.mark.parametrize(
    ("kind", "args"),
    [
        (socket.SOCK_DGRAM, []),
        (socket.SOCK_STREAM, []),
        (socket.SOCK_DGRAM, ["demo"]),
    ],
)
def test_the_dashboard_refuses_a_busy_port_before_starting(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    kind: socket.SocketKind,
    args: list[str],
) -> None:
    ui = pytest.importorskip("gossip_tui.ui")

    def must_not_run(*args: Any, **kwargs: Any) -> int:
        raise AssertionError("the dashboard started")

    monkeypatch.setattr(ui, "run_dashboard", must_not_run)
    monkeypatch.setattr(ui, "run_demo", must_not_run)
    with socket.socket(socket.AF_INET, kind) as blocker:
        blocker.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            blocker.listen()
        port = blocker.getsockname()[1]

        code = cli.main(["--listen-addr", f"127.0.0.1:{port}", *args])

    assert code == 2
    assert _one_line_error(capsys) == (
        f"gossip-tui: error: address 127.0.0.1:{port} is already in use"
    )


def test_keygen_prints_a_usable_key(capsys: pytest.CaptureFixture[str]) -> None:
    from gossip_tui.core.keys import parse_key

    assert cli.main(["keygen"]) == 0
    first = capsys.readouterr().out.strip()
    assert cli.main(["keygen"]) == 0
    second = capsys.readouterr().out.strip()
    assert len(parse_key(first)) == 32
    assert first != second
