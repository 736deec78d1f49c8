"""Settings from options, GOSSIP_TUI_* variables and a TOML file, and their precedence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gossip_tui._config_file import (
    CliSettings,
    SettingsError,
    build_settings,
    load_config_file,
    resolve_settings,
    settings_from_env,
    to_node_config,
)
from gossip_tui.core.failure_detector import FailureDetectorConfig
from gossip_tui.core.models import SocketAddress
from gossip_tui.node import NodeConfig

A = SocketAddress.parse


def test_defaults_match_chitchat_test() -> None:
    settings = build_settings({})

    assert settings == CliSettings()
    assert settings.listen_addr == A("127.0.0.1:10000")
    assert settings.interval_ms == 500
    assert settings.cluster_id == "testing"
    assert settings.seeds == ()
    assert settings.http is True
    assert settings.headless is False


def test_every_variable_is_read() -> None:
    env = {
        "GOSSIP_TUI_LISTEN_ADDR": "127.0.0.1:11000",
        "GOSSIP_TUI_PUBLIC_ADDR": "[::1]:11000",
        "GOSSIP_TUI_NODE_ID": "env-node",
        "GOSSIP_TUI_SEEDS": "127.0.0.1:1, seed.example:2,,",
        "GOSSIP_TUI_INTERVAL_MS": "250",
        "GOSSIP_TUI_CLUSTER_ID": "prod",
        "GOSSIP_TUI_HEADLESS": "yes",
        "GOSSIP_TUI_NO_HTTP": "1",
        "GOSSIP_TUI_DEAD_NODE_GRACE_PERIOD": "10",
        "GOSSIP_TUI_MARKED_FOR_DELETION_GRACE_PERIOD": "60.5",
        "GOSSIP_TUI_PHI_THRESHOLD": "5",
        "GOSSIP_TUI_ACCEPTABLE_PAUSE": "0",
        "GOSSIP_TUI_STATE_DIR": "/var/lib/gossip-tui",
        "UNRELATED": "x",
    }

    settings = build_settings({}, settings_from_env(env))

    assert settings == CliSettings(
        listen_addr=A("127.0.0.1:11000"),
        public_addr=A("[::1]:11000"),
        node_id="env-node",
        seeds=("127.0.0.1:1", "seed.example:2"),
        interval_ms=250,
        cluster_id="prod",
        headless=True,
        no_http=True,
        dead_node_grace_period=10.0,
        marked_for_deletion_grace_period=60.5,
        phi_threshold=5.0,
        acceptable_pause=0.0,
        state_dir=Path("/var/lib/gossip-tui"),
    )
    assert to_node_config(settings).state_dir == Path("/var/lib/gossip-tui")


def test_empty_variables_count_as_unset() -> None:
    assert settings_from_env({"GOSSIP_TUI_LISTEN_ADDR": "", "GOSSIP_TUI_SEEDS": " "}) == {}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GOSSIP_TUI_LISTEN_ADDR", "localhost:10000"),
        ("GOSSIP_TUI_LISTEN_ADDR", "127.0.0.1:70000"),
        ("GOSSIP_TUI_SEEDS", "127.0.0.1:1,nope"),
        ("GOSSIP_TUI_INTERVAL_MS", "0"),
        ("GOSSIP_TUI_INTERVAL_MS", "1.5"),
        ("GOSSIP_TUI_HEADLESS", "maybe"),
        ("GOSSIP_TUI_PHI_THRESHOLD", "-1"),
        ("GOSSIP_TUI_DEAD_NODE_GRACE_PERIOD", "nan"),
        ("GOSSIP_TUI_ACCEPTABLE_PAUSE", "soon"),
    ],
)
def test_a_bad_variable_is_named_in_the_error(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name) as raised:
        settings_from_env({name: value})
    assert "\n" not in str(raised.value)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gossip.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_toml_file_uses_the_option_names(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        listen_addr = "127.0.0.1:12000"
        public_addr = "10.0.0.1:12000"
        node_id = "toml-node"
        seeds = ["127.0.0.1:1", "127.0.0.1:2"]
        interval_ms = 100
        cluster_id = "toml"
        headless = true
        no_http = false
        dead_node_grace_period = 30
        marked_for_deletion_grace_period = 1.5
        phi_threshold = 12.0
        """,
    )

    settings = build_settings({}, {}, load_config_file(path))

    assert settings == CliSettings(
        listen_addr=A("127.0.0.1:12000"),
        public_addr=A("10.0.0.1:12000"),
        node_id="toml-node",
        seeds=("127.0.0.1:1", "127.0.0.1:2"),
        interval_ms=100,
        cluster_id="toml",
        headless=True,
        no_http=False,
        dead_node_grace_period=30.0,
        marked_for_deletion_grace_period=1.5,
        phi_threshold=12.0,
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("listen_addr = ", "bad TOML"),
        ("listen_adr = '127.0.0.1:1'", "unknown key 'listen_adr'"),
        ("interval_ms = true", "interval_ms"),
        ("seeds = '127.0.0.1:1,x'", "seeds"),
        ("headless = 'sure'", "headless"),
        ("listen_addr = 10000", "listen_addr"),
    ],
)
def test_a_bad_toml_file_is_one_line_naming_the_file(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = _write(tmp_path, text)

    with pytest.raises(SettingsError) as raised:
        load_config_file(path)

    message = str(raised.value)
    assert fragment in message
    assert str(path) in message
    assert "\n" not in message


def test_toml_values_may_be_written_as_text(tmp_path: Path) -> None:
    path = _write(tmp_path, "interval_ms = '100'\nphi_threshold = '2.5'\nseeds = '127.0.0.1:1'")

    assert load_config_file(path) == {
        "interval_ms": 100,
        "phi_threshold": 2.5,
        "seeds": ("127.0.0.1:1",),
    }


def test_a_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="config file not found"):
        load_config_file(tmp_path / "absent.toml")


def test_precedence_is_cli_then_env_then_toml_then_default(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        listen_addr = "127.0.0.1:3"
        node_id = "from-toml"
        cluster_id = "from-toml"
        interval_ms = 3
        """,
    )
    env = {
        "GOSSIP_TUI_CONFIG": str(path),
        "GOSSIP_TUI_LISTEN_ADDR": "127.0.0.1:2",
        "GOSSIP_TUI_NODE_ID": "from-env",
    }
    cli: dict[str, Any] = {"listen_addr": A("127.0.0.1:1"), "node_id": None}

    settings = resolve_settings(cli, env)

    assert settings.listen_addr == A("127.0.0.1:1")  # option
    assert settings.node_id == "from-env"  # variable (the option was not given)
    assert settings.cluster_id == "from-toml"  # file
    assert settings.interval_ms == 3
    assert settings.phi_threshold is None  # default
    assert settings.public_addr is None


def test_an_explicit_config_path_wins_over_the_variable(tmp_path: Path) -> None:
    chosen = tmp_path / "chosen.toml"
    chosen.write_text('cluster_id = "chosen"', encoding="utf-8")
    env = {"GOSSIP_TUI_CONFIG": str(tmp_path / "absent.toml")}

    assert resolve_settings({}, env, chosen).cluster_id == "chosen"
    with pytest.raises(SettingsError, match=r"absent\.toml"):
        resolve_settings({}, env)


def test_to_node_config_maps_every_setting(tmp_path: Path) -> None:
    settings = CliSettings(
        listen_addr=A("127.0.0.1:5"),
        public_addr=A("10.1.1.1:5"),
        node_id="n",
        seeds=("h:1",),
        interval_ms=250,
        cluster_id="c",
        dead_node_grace_period=10.0,
        marked_for_deletion_grace_period=60.0,
        phi_threshold=3.0,
        acceptable_pause=1.5,
        state_dir=tmp_path,
    )

    config = to_node_config(settings)

    assert config == NodeConfig(
        listen_addr=A("127.0.0.1:5"),
        public_addr=A("10.1.1.1:5"),
        node_id="n",
        cluster_id="c",
        seeds=("h:1",),
        gossip_interval=0.25,
        failure_detector=FailureDetectorConfig(
            phi_threshold=3.0, dead_node_grace_period=10.0, acceptable_pause=1.5
        ),
        marked_for_deletion_grace_period=60.0,
        state_dir=tmp_path,
    )


def test_to_node_config_keeps_runtime_defaults_when_unset() -> None:
    config = to_node_config(CliSettings())

    assert config.failure_detector == FailureDetectorConfig()
    assert config.marked_for_deletion_grace_period == NodeConfig().marked_for_deletion_grace_period
    assert config.gossip_interval == 0.5
    assert config.state_dir is None


def test_secret_keys_from_options_then_file(tmp_path: Path) -> None:
    from gossip_tui.core.keys import generate_key, parse_key

    first, second, third = generate_key(), generate_key(), generate_key()
    key_file = tmp_path / "keys"
    key_file.write_text(f"# rotated in on Monday\n{second}\n\n{third}\n", encoding="utf-8")
    settings = build_settings({"secret_keys": (first,), "secret_key_file": key_file})
    config = to_node_config(settings)
    assert config.secret_keys == (parse_key(first), parse_key(second), parse_key(third))
    assert first not in repr(settings) and first not in repr(config)
    assert to_node_config(CliSettings()).secret_keys == ()
