"""Input the HTTP API must refuse cleanly: JSON it cannot parse, paths and query strings
that are not UTF-8, HTTP/2 in cleartext."""

from __future__ import annotations

import socket

import pytest
import trio

from gossip_tui.api import make_app, serve_http
from gossip_tui.core.models import SocketAddress

from .asgi_client import Reply, call
from .helpers import api_node

JSON = [("content-type", "application/json")]


def _error(reply: Reply, status: int) -> str:
    assert reply.status == status, reply.body
    body = reply.json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    return str(body["error"])


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 60_000,  # deeper than the parser's recursion
        b'{"value": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
        b'{"value": "v", "ttl": ' + b"[" * 50_000,
        b'{"value": 1' + b"0" * 5_000 + b"}",  # past int's digit limit
    ],
    ids=["open brackets", "nested value", "nested ttl", "huge number"],
)
def test_a_json_body_the_parser_cannot_take_is_400(
    body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    node = api_node()
    reply = call(make_app(node), "PUT", "/keys/k", body=body, headers=JSON)
    assert "invalid JSON" in _error(reply, 400) or "body.value" in reply.json()["error"]
    assert node.calls == []
    assert "Traceback" not in caplog.text and not caplog.records


@pytest.mark.parametrize("raw", [b"/keys/%ff", b"/keys/%fe", b"/keys/a%c3", b"/keys/\xff"])
def test_a_path_that_is_not_utf8_is_400(raw: bytes) -> None:
    node = api_node()
    app = make_app(node)
    # hypercorn's own decoding turns each of these into U+FFFD.
    for method, body in (("PUT", b"v"), ("GET", b""), ("DELETE", b"")):
        reply = call(app, method, "/keys/\ufffd", raw_path=raw, body=body)
        assert "UTF-8" in _error(reply, 400)
    assert node.calls == []


def test_percent_encoded_utf8_still_names_its_key() -> None:
    node = api_node()
    app = make_app(node)
    reply = call(app, "PUT", "/keys/caf\u00e9", raw_path=b"/keys/caf%C3%A9", body=b"v")
    assert reply.json()["key"] == "caf\u00e9"
    # U+FFFD itself, sent as UTF-8, is a key like any other.
    reply = call(app, "PUT", "/keys/\ufffd", raw_path=b"/keys/%EF%BF%BD", body=b"w")
    assert reply.status == 200
    assert node.calls == [("set", "caf\u00e9", "v"), ("set", "\ufffd", "w")]


@pytest.mark.parametrize("query", [b"key=%ff&value=v", b"key=k&value=%fe", b"key=\xff&value=v"])
def test_a_query_string_that_is_not_utf8_is_400(query: bytes) -> None:
    node = api_node()
    reply = call(make_app(node), "GET", "/set_kv/", query=query)
    assert "UTF-8" in _error(reply, 400)
    assert node.calls == []


def test_raw_utf8_in_a_query_string_is_taken_as_utf8() -> None:
    node = api_node()
    query = "key=caf\u00e9&value=ok".encode()  # unescaped, as a careless client sends it
    assert call(make_app(node), "GET", "/set_kv/", query=query).status == 200
    assert node.calls == [("set", "caf\u00e9", "ok")]


def test_an_http2_request_is_505() -> None:
    node = api_node()
    _error(call(make_app(node), "PUT", "/keys/k", body=b"v", http_version="2"), 505)
    assert node.calls == []


def _exchange(port: int, request: bytes) -> bytes:
    """Send ``request``, then read until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        sock.settimeout(0.5)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
                if b"\r\n\r\n" in reply and reply.endswith(b"}"):
                    break  # one JSON response is all we wait for
        except TimeoutError:
            pass
        return reply


H2C_UPGRADE = (
    b"PUT /keys/k HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 0\r\n\r\n"
)


@pytest.mark.trio
@pytest.mark.parametrize(
    "request_bytes",
    [
        H2C_UPGRADE,
        H2C_UPGRADE.replace(b"PUT", b"GET").replace(b"Content-Length: 0\r\n", b""),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
    ],
    ids=["upgrade with a body", "upgrade without a body", "prior knowledge"],
)
async def test_no_h2c_over_tcp(request_bytes: bytes) -> None:
    node = api_node()
    async with trio.open_nursery() as nursery:
        addr = await nursery.start(serve_http, node, SocketAddress.parse("127.0.0.1:0"))
        reply = await trio.to_thread.run_sync(_exchange, addr.port, request_bytes)
        nursery.cancel_scope.cancel()
    status_line = reply.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 "), reply
    assert b" 101" not in status_line
    assert b"upgrade" not in reply.split(b"\r\n\r\n", 1)[0].lower()
