"""A cluster where some nodes initiate in protocol V0 and others in V1, over real UDP on
127.0.0.1, and the setting that chooses it (option, environment, TOML file)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import attrs
import pytest

from gossip_tui import cli
from gossip_tui._config_file import CliSettings, SettingsError, resolve_settings, to_node_config
from gossip_tui.core.models import SocketAddress
from gossip_tui.node import Node, NodeConfig, open_node
from gossip_tui.node._transport import UdpSocket, UdpTransport

from .helpers import all_see_each_other, fast_config, wait_until

SYN, SYNACK, ACK = 0, 1, 2


class RecordingSocket:
    """A UDP socket that counts what it sends by (protocol version, message type)."""

    def __init__(self, inner: UdpSocket, sent: Counter[tuple[int, int]]) -> None:
        self._inner = inner
        self.sent = sent

    @property
    def local_address(self) -> SocketAddress:
        return self._inner.local_address

    async def send(self, data: bytes, addr: SocketAddress) -> None:
        self.sent[data[2], data[3]] += 1
        await self._inner.send(data, addr)

    async def recv(self) -> tuple[bytes, SocketAddress]:
        return await self._inner.recv()

    def close(self) -> None:
        self._inner.close()


class RecordingTransport:
    def __init__(self) -> None:
        self.sent: Counter[tuple[int, int]] = Counter()

    async def bind(self, addr: SocketAddress) -> RecordingSocket:
        return RecordingSocket(await UdpTransport().bind(addr), self.sent)


@asynccontextmanager
async def mixed_cluster(
    versions: list[int],
) -> AsyncIterator[list[tuple[Node, RecordingTransport]]]:
    """One node per entry of ``versions``, initiating in that version; the first is the
    seed of the others."""
    async with AsyncExitStack() as stack:
        nodes: list[tuple[Node, RecordingTransport]] = []
        for i, version in enumerate(versions):
            seeds = (str(nodes[0][0].gossip_addr),) if nodes else ()
            config = attrs.evolve(
                fast_config(node_id=f"mixed-{i}-v{version}", seeds=seeds),
                protocol_version=version,
            )
            transport = RecordingTransport()
            node = await stack.enter_async_context(open_node(config, transport=transport))
            nodes.append((node, transport))
        yield nodes


@pytest.mark.trio
async def test_a_cluster_of_v0_and_v1_initiators_converges() -> None:
    async with mixed_cluster([0, 1, 0, 1, 1, 0]) as members:
        nodes = [node for node, _ in members]
        await wait_until(lambda: all_see_each_other(nodes), 20, "6 live nodes, V0 and V1")
        for node in nodes:
            node.set("hello", f"from {node.self_id.node_id}")

        def everyone_has_every_key() -> bool:
            return all(
                reader.get("hello", writer.self_id) == f"from {writer.self_id.node_id}"
                for reader in nodes
                for writer in nodes
            )

        await wait_until(everyone_has_every_key, 20, "each node's key on every node")
        assert all(node.stats.dropped["malformed"] == 0 for node in nodes)

        # Each node starts gossip in its own version only, and answers in both: a Syn gets
        # its SynAck, and a SynAck its Ack, in the version the Syn came in.
        def answered_both_versions() -> bool:
            return all(
                transport.sent[1 - node.config.protocol_version, SYNACK] > 0
                and transport.sent[node.config.protocol_version, SYNACK] > 0
                for node, transport in members
            )

        await wait_until(answered_both_versions, 20, "every node answering V0 and V1 Syns")
        for node, transport in members:
            mine = node.config.protocol_version
            other = 1 - mine
            assert transport.sent[mine, SYN] > 0, node.self_id
            assert transport.sent[other, SYN] == 0, node.self_id
            assert transport.sent[mine, ACK] > 0, node.self_id
            assert transport.sent[other, ACK] == 0, node.self_id


def test_protocol_version_is_checked() -> None:
    assert NodeConfig().protocol_version == 0
    with pytest.raises(ValueError, match="protocol_version"):
        NodeConfig(protocol_version=2)


def test_protocol_version_from_option_environment_and_file(tmp_path: Path) -> None:
    def version(cli: dict[str, object], env: dict[str, str], path: Path | None = None) -> int:
        return to_node_config(resolve_settings(cli, env, path)).protocol_version

    toml = tmp_path / "node.toml"
    toml.write_text("protocol_version = 1\n")
    assert version({}, {}) == 0
    assert version({}, {}, toml) == 1
    assert version({}, {"GOSSIP_TUI_PROTOCOL_VERSION": "1"}) == 1
    assert version({"protocol_version": 0}, {"GOSSIP_TUI_PROTOCOL_VERSION": "1"}, toml) == 0
    with pytest.raises(SettingsError, match="GOSSIP_TUI_PROTOCOL_VERSION"):
        version({}, {"GOSSIP_TUI_PROTOCOL_VERSION": "2"})
    toml.write_text("protocol_version = true\n")
    with pytest.raises(SettingsError, match="protocol_version"):
        version({}, {}, toml)


def test_the_command_line_option(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GOSSIP_TUI_PROTOCOL_VERSION", raising=False)
    monkeypatch.delenv("GOSSIP_TUI_CONFIG", raising=False)
    seen: list[CliSettings] = []
    monkeypatch.setattr(cli, "run_dashboard", lambda settings: seen.append(settings) or 0)
    assert cli.main(["--protocol-version", "1"]) == 0
    assert [s.protocol_version for s in seen] == [1]
    assert cli.main(["--protocol-version", "3"]) == cli.USAGE_ERROR
    assert "protocol version 0 or 1" in capsys.readouterr().err
