"""The HTTP API's settings: where it listens, and the refusal to expose it without a token.

No test here binds a public address: the refusal is checked before anything starts, and
``trio.run`` is replaced so that a broken check fails the test instead of serving.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from gossip_tui import cli
from gossip_tui._config_file import CliSettings, SettingsError, resolve_settings
from gossip_tui.client import api_security, http_addr
from gossip_tui.core.models import SocketAddress

TOKEN = "settings-token-0123456789"


class _Started(Exception):
    pass


@pytest.fixture
def no_start(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise _Started

    monkeypatch.setattr(trio, "run", refuse)
    monkeypatch.setattr(cli, "run_dashboard", lambda *_: pytest.fail("the dashboard started"))


@pytest.mark.usefixtures("no_start")
@pytest.mark.parametrize(
    "args",
    [
        ["--headless", "--listen-addr", "127.0.0.1:0", "--http-addr", "0.0.0.0:0"],
        ["--headless", "--listen-addr", "127.0.0.1:0", "--http-addr", "192.0.2.1:0"],
    ],
)
def test_a_public_api_without_a_token_refuses_to_start(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "refusing to serve the HTTP API" in err and "--insecure-http" in err


@pytest.mark.usefixtures("no_start")
def test_a_token_or_insecure_http_lets_it_start(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    public = ["--headless", "--listen-addr", "127.0.0.1:0", "--http-addr", "0.0.0.0:0"]
    with pytest.raises(_Started):
        cli.main([*public, "--api-token-file", str(token)])
    with pytest.raises(_Started):
        cli.main([*public, "--insecure-http"])
    with pytest.raises(_Started):
        cli.main([*public, "--no-http"])


def test_the_api_follows_a_loopback_gossip_address_else_takes_the_loopback() -> None:
    loopback = CliSettings(listen_addr=SocketAddress.parse("127.0.0.3:7001"))
    public = CliSettings(listen_addr=SocketAddress.parse("192.0.2.1:7001"))
    chosen = CliSettings(
        listen_addr=SocketAddress.parse("192.0.2.1:7001"),
        http_addr=SocketAddress.parse("127.0.0.1:8080"),
    )
    assert http_addr(loopback) == SocketAddress.parse("127.0.0.3:7001")
    assert http_addr(public) == SocketAddress.parse("127.0.0.1:7001")
    assert http_addr(chosen) == SocketAddress.parse("127.0.0.1:8080")


def test_settings_from_the_environment_and_the_config_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    config = tmp_path / "node.toml"
    config.write_text('http_allowed_hosts = ["node.example"]\napi_token_protects_reads = true\n')
    env = {"GOSSIP_TUI_API_TOKEN_FILE": str(token), "GOSSIP_TUI_HTTP_ADDR": "127.0.0.1:9000"}

    settings = resolve_settings({}, env, config)
    security = api_security(settings)

    assert settings.http_addr == SocketAddress.parse("127.0.0.1:9000")
    assert security.token == TOKEN
    assert security.protect_reads
    assert security.allowed_hosts is not None and "node.example" in security.allowed_hosts


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"GOSSIP_TUI_API_TOKEN_FILE": "/nonexistent/token"}, "cannot read API token file"),
        ({"GOSSIP_TUI_HTTP_ALLOWED_HOSTS": "node.example:80"}, "not a host name"),
    ],
)
def test_bad_http_settings_are_one_line_errors(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        resolve_settings({}, env)


def test_a_short_token_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token = tmp_path / "token"
    token.write_text("short\n")
    assert cli.main(["--api-token-file", str(token), "members"]) == 2
    assert "at least 16" in capsys.readouterr().err
