"""--partial-digests, GOSSIP_TUI_PARTIAL_DIGESTS and ``partial_digests`` in the TOML file
all reach NodeConfig.partial_digests; unset, the node keeps the extension off."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gossip_tui import cli
from gossip_tui._config_file import CliSettings, to_node_config


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[CliSettings]:
    for name in list(os.environ):
        if name.startswith("GOSSIP_TUI_"):
            monkeypatch.delenv(name)
    seen: list[CliSettings] = []

    def runner(settings: CliSettings) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr(cli, "run_headless", runner)
    monkeypatch.setattr(cli, "run_dashboard", runner)
    return seen


def _partial(settings: CliSettings) -> bool:
    return to_node_config(settings).partial_digests


def test_off_unless_asked(captured: list[CliSettings]) -> None:
    assert cli.main([]) == 0
    assert [_partial(s) for s in captured] == [False]


def test_the_flag_turns_it_on(captured: list[CliSettings]) -> None:
    assert cli.main(["--partial-digests"]) == 0
    assert [_partial(s) for s in captured] == [True]


def test_the_variable_and_the_config_file(
    captured: list[CliSettings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.toml"
    config.write_text("partial_digests = true\n", encoding="utf-8")
    assert cli.main(["--config", str(config)]) == 0
    monkeypatch.setenv("GOSSIP_TUI_PARTIAL_DIGESTS", "yes")
    assert cli.main([]) == 0
    monkeypatch.setenv("GOSSIP_TUI_PARTIAL_DIGESTS", "0")
    assert cli.main(["--config", str(config)]) == 0  # the variable wins over the file
    assert [_partial(s) for s in captured] == [True, True, False]


def test_help_names_the_flag_and_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--partial-digests" in out
    assert "GOSSIP_TUI_PARTIAL_DIGESTS" in out
