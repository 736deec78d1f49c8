"""The demo is a cluster of its own: a node left at the defaults can neither join it nor be
joined by it (issue 13), and node 0 binds no default port.

Real nodes over real UDP on 127.0.0.1: the cluster id check is the runtime's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest
import trio

from gossip_tui import cli
from gossip_tui.core.models import SocketAddress
from gossip_tui.node import NodeConfig, open_node
from gossip_tui.ui.demo import DEMO_CLUSTER_PREFIX, DemoCluster, demo_overrides

_DEFAULTS = NodeConfig()


def _demo_config(monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    """Node 0's config as ``gossip-tui [args] demo`` hands it to the dashboard (run in
    process: its tests run as_if_on_a_terminal)."""
    seen: list[Any] = []

    def run_demo(nodes: int, config: Any, *, workers: int | None = None) -> int:
        seen.append(config)
        return 0

    ui = pytest.importorskip("gossip_tui.ui")
    monkeypatch.setattr(ui, "run_demo", run_demo)
    assert cli.main([*args, "demo", "-n", "2"]) == 0
    (config,) = seen
    return config


@pytest.mark.usefixtures("as_if_on_a_terminal")
def test_the_demo_takes_its_own_cluster_id_and_an_ephemeral_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("GOSSIP_TUI_LISTEN_ADDR", "GOSSIP_TUI_CLUSTER_ID", "GOSSIP_TUI_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    first = _demo_config(monkeypatch)
    second = _demo_config(monkeypatch)
    assert first.listen_addr == SocketAddress.parse("127.0.0.1:0")
    assert first.listen_addr != _DEFAULTS.listen_addr
    assert first.cluster_id.startswith(DEMO_CLUSTER_PREFIX)
    assert first.cluster_id != _DEFAULTS.cluster_id
    assert first.cluster_id != second.cluster_id  # drawn per run


@pytest.mark.usefixtures("as_if_on_a_terminal")
def test_what_the_operator_names_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GOSSIP_TUI_LISTEN_ADDR", "GOSSIP_TUI_CLUSTER_ID", "GOSSIP_TUI_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    given = _demo_config(monkeypatch, "--listen-addr", "127.0.0.1:10000", "--cluster-id", "testing")
    assert (str(given.listen_addr), given.cluster_id) == ("127.0.0.1:10000", "testing")
    monkeypatch.setenv("GOSSIP_TUI_CLUSTER_ID", "mine")
    from_env = _demo_config(monkeypatch)
    assert from_env.cluster_id == "mine"
    assert from_env.listen_addr.port == 0


async def _until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.02)
    assert condition(), what


@pytest.mark.trio
async def test_a_default_node_seeded_at_the_demo_never_joins_it() -> None:
    demo_config = attrs.evolve(NodeConfig(gossip_interval=0.05), **demo_overrides(()))
    assert demo_config.listen_addr.port == 0
    demo = DemoCluster(2)
    async with open_node(demo_config) as node0, trio.open_nursery() as nursery:
        nursery.start_soon(demo.run, node0, open_node, demo_config, lambda _message: True)
        await _until(lambda: len(node0.live_nodes()) == 3, "the demo's 3 nodes")
        # A node at the defaults but for an ephemeral port (the default one may be taken on
        # this machine), seeded with the demo's address both ways round.
        outsider_config = NodeConfig(
            listen_addr=SocketAddress.parse("127.0.0.1:0"),
            seeds=(str(node0.gossip_addr),),
            gossip_interval=0.05,
        )
        assert outsider_config.cluster_id == _DEFAULTS.cluster_id
        async with open_node(outsider_config) as outsider:
            node0.engine.seed_addrs.add(outsider.gossip_addr)
            received_by_node0 = node0.stats.datagrams_in

            # Many rounds each way: the outsider's Syns reach node 0 and are answered
            # (refused), and node 0's reach the outsider.
            def exchanged() -> bool:
                return (
                    outsider.stats.datagrams_in >= 10
                    and node0.stats.datagrams_in - received_by_node0 >= 10
                    and outsider.stats.rounds >= 10
                )

            await _until(exchanged, "rounds of Syns between the two")
            known = {n.self_id: {s.node for s in n.snapshot().nodes} for n in (node0, outsider)}
            assert len(known[node0.self_id]) == 3
            assert outsider.self_id not in known[node0.self_id]
            assert known[outsider.self_id] == {outsider.self_id}
        nursery.cancel_scope.cancel()
