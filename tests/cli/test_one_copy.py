"""The command line restates nothing the node knows: defaults, rules, seeds, HTTP serving."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

from gossip_tui._config_file import CliSettings, structure_setting, to_node_config
from gossip_tui._run_options import RUN_OPTIONS
from gossip_tui.core.failure_detector import FailureDetectorConfig
from gossip_tui.core.models import SocketAddress
from gossip_tui.node import NodeConfig
from gossip_tui.node._seeds import _split_seeds
from tests.processes import get_json

from .fake_runtime import fake_open_node


def test_the_help_shows_the_node_configs_defaults() -> None:
    node = NodeConfig()
    shown = {option.field: option.help() for option in RUN_OPTIONS}
    expected = {
        "listen_addr": str(node.listen_addr),
        "interval_ms": str(round(node.gossip_interval * 1000)),
        "cluster_id": node.cluster_id,
        "marked_for_deletion_grace_period": f"{node.marked_for_deletion_grace_period:g}",
        "protocol_version": str(node.protocol_version),
        "dead_node_grace_period": f"{node.failure_detector.dead_node_grace_period:g}",
        "phi_threshold": f"{node.failure_detector.phi_threshold:g}",
        "acceptable_pause": f"{node.failure_detector.acceptable_pause:g}",
        "log_level": CliSettings().log_level,
        "log_format": CliSettings().log_format,
    }
    for field, default in expected.items():
        assert f"[default: {default}; env: " in shown[field]


def test_unset_settings_make_the_default_node_config() -> None:
    assert to_node_config(CliSettings()) == NodeConfig()


@pytest.mark.parametrize(
    ("name", "value", "config"),
    [
        ("phi_threshold", 0.0, {"failure_detector": {"phi_threshold": 0.0}}),
        ("acceptable_pause", -1.0, {"failure_detector": {"acceptable_pause": -1.0}}),
        ("dead_node_grace_period", -1.0, {"failure_detector": {"dead_node_grace_period": -1.0}}),
        ("marked_for_deletion_grace_period", -1.0, {"marked_for_deletion_grace_period": -1.0}),
        ("protocol_version", 2, {"protocol_version": 2}),
    ],
)
def test_a_setting_is_refused_exactly_when_the_config_refuses_it(
    name: str, value: Any, config: dict[str, Any]
) -> None:
    with pytest.raises(ValueError) as by_the_config:
        detector = config.pop("failure_detector", None)
        if detector is not None:
            config["failure_detector"] = FailureDetectorConfig(**detector)
        NodeConfig(**config)
    with pytest.raises(ValueError) as by_the_cli:
        structure_setting(name, str(value))

    assert str(by_the_cli.value) == str(by_the_config.value)


@pytest.mark.parametrize(
    "seed",
    [
        "127.0.0.1:1",
        "[::1]:2",
        "seed.example:3",
        " seed.example:4 ",
        "no-port",
        "host:",
        ":5",
        "host:70000",
        "[::1:6",
        "my host:7",
        "host:x",
    ],
)
def test_seeds_the_command_line_accepts_are_the_ones_the_node_uses(
    seed: str, caplog: pytest.LogCaptureFixture
) -> None:
    try:
        structure_setting("seeds", [seed])
    except ValueError:
        accepted = False
    else:
        accepted = True
    with caplog.at_level(logging.WARNING):
        literal, hosts = _split_seeds((seed,))

    assert bool(literal or hosts) == accepted


@pytest.mark.trio
async def test_the_dashboard_serves_http_with_the_headless_helper() -> None:
    from gossip_tui.ui.app import serve_node_http

    settings = CliSettings(listen_addr=SocketAddress.parse("127.0.0.1:0"))
    with trio.fail_after(10):
        async with fake_open_node(settings) as node:
            addr = await serve_node_http(node)

            assert addr is not None and addr.port != 0
            assert node.http_addr == addr
            health = await trio.to_thread.run_sync(get_json, f"http://{addr}/health")
            assert health["status"] == "ok"
