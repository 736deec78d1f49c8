"""A node asked for any port serves its API even when its gossip port's TCP twin is taken.

With ``--listen-addr 127.0.0.1:0`` the node gets an ephemeral UDP port and serves HTTP on
the same number over TCP, as chitchat-test does. On a busy host that TCP port may already
be some other connection's: the node then serves on another TCP port rather than fail to
start. A port the operator named stays an error (two nodes must not share it silently).
"""

from __future__ import annotations

import errno
import socket

import pytest
import trio

from gossip_tui._config_file import CliSettings
from gossip_tui._http_settings import http_service
from gossip_tui.core.models import SocketAddress
from gossip_tui.node import NodeConfig, open_node


def _holding_tcp(port: int) -> socket.socket:
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", port))
    held.listen()
    return held


@pytest.mark.trio
async def test_any_port_asked_serves_http_elsewhere_when_the_twin_is_taken() -> None:
    any_port = SocketAddress.parse("127.0.0.1:0")
    async with open_node(NodeConfig(listen_addr=any_port, node_id="twin")) as node:
        with _holding_tcp(node.gossip_addr.port):
            addr = await http_service(CliSettings(listen_addr=any_port))(node)
        assert addr.port not in (0, node.gossip_addr.port)
        assert node.http_addr == addr
        stream = await trio.open_tcp_stream("127.0.0.1", addr.port)
        async with stream:
            await stream.send_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert (await stream.receive_some(100)).startswith(b"HTTP/1.1 200")


@pytest.mark.trio
async def test_a_named_port_whose_twin_is_taken_stays_an_error() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    named = SocketAddress.parse(f"127.0.0.1:{port}")
    async with open_node(NodeConfig(listen_addr=named, node_id="named")) as node:
        with _holding_tcp(port), pytest.raises((OSError, ExceptionGroup)) as raised:
            await http_service(CliSettings(listen_addr=named))(node)
    error = raised.value
    while isinstance(error, ExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, OSError) and error.errno == errno.EADDRINUSE
