"""The API's access checks: the token on every write, Host against DNS rebinding, no
cross-site GET writes, and the rule that keeps a public API from starting without a token."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from functools import partial
from typing import Any

import pytest
import trio

from gossip_tui.api import ROUTES, ApiSecurity, make_app, serve_http
from gossip_tui.api import _security as security_module
from gossip_tui.core.http_access import (
    ApiTokenError,
    default_http_addr,
    exposure_error,
    parse_api_token,
)
from gossip_tui.core.models import Liveness, SocketAddress
from gossip_tui.testing import FakeNode

from .asgi_client import Reply, call
from .helpers import add_peer, api_node

TOKEN = "s3cret-token-0123456789"
GOOD = ("authorization", f"Bearer {TOKEN}")
HOST = ("host", "127.0.0.1:10000")

# One concrete request per (route, method) that writes; the set is checked against ROUTES.
_WRITES: dict[tuple[str, str], tuple[str, str, bytes]] = {
    ("/set_kv/", "GET"): ("/set_kv/", "key=k&value=v", b""),
    ("/set_kv", "GET"): ("/set_kv", "key=k&value=v", b""),
    ("/mark_for_deletion/", "GET"): ("/mark_for_deletion/", "key=k", b""),
    ("/mark_for_deletion", "GET"): ("/mark_for_deletion", "key=k", b""),
    ("/keys/{key}", "PUT"): ("/keys/k", "", b"v"),
    ("/keys/{key}", "DELETE"): ("/keys/k", "", b""),
    ("/nodes/{node_id}", "DELETE"): ("/nodes/peer", "", b""),
}


def test_the_table_lists_every_write_route() -> None:
    writes = {
        (route.template, method)
        for route in ROUTES
        for method in route.methods
        if route.writes(method)
    }
    assert writes == set(_WRITES)


def _node() -> FakeNode:
    node = api_node()
    add_peer(node, "peer", "127.0.0.1:10001", liveness=Liveness.DEAD)
    node.set("k", "old")
    node.calls.clear()
    return node


def _write(app: Any, key: tuple[str, str], *headers: tuple[str, str]) -> Reply:
    path, query, body = _WRITES[key]
    return call(app, key[1], path, query=query, body=body, headers=[HOST, *headers])


@pytest.mark.parametrize("write", sorted(_WRITES))
def test_every_write_needs_the_token(write: tuple[str, str]) -> None:
    node = _node()
    app = make_app(node, ApiSecurity(token=TOKEN))

    missing = _write(app, write)
    wrong = _write(app, write, ("authorization", "Bearer s3cret-token-0123456788"))
    basic = _write(app, write, ("authorization", f"Basic {TOKEN}"))
    refused_calls = list(node.calls)
    right = _write(app, write, GOOD)

    for reply in (missing, wrong, basic):
        assert reply.status == 401
        assert "token" in reply.json()["error"]
        assert reply.headers["www-authenticate"].startswith("Bearer")
    assert refused_calls == []
    assert right.status == 200
    assert node.calls


def test_reads_stay_open_unless_protected() -> None:
    node = _node()
    open_reads = make_app(node, ApiSecurity(token=TOKEN))
    closed_reads = make_app(node, ApiSecurity(token=TOKEN, protect_reads=True))

    assert call(open_reads, "GET", "/keys/k", headers=[HOST]).status == 200
    assert call(closed_reads, "GET", "/keys/k", headers=[HOST]).status == 401
    assert call(closed_reads, "GET", "/keys/k", headers=[HOST, GOOD]).status == 200


def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return a == b

    monkeypatch.setattr(security_module.hmac, "compare_digest", spy)
    app = make_app(_node(), ApiSecurity(token=TOKEN))
    assert _write(app, ("/keys/{key}", "PUT"), GOOD).status == 200
    assert compared == [(TOKEN.encode(), TOKEN.encode())]


@pytest.mark.parametrize(
    "headers",
    [
        [("sec-fetch-site", "cross-site")],
        [("sec-fetch-site", "same-site")],
        [("origin", "http://evil.example")],
        [("origin", "http://127.0.0.1:9999")],  # another port: another application
        [("origin", "null")],
    ],
)
def test_cross_site_get_writes_are_refused(headers: list[tuple[str, str]]) -> None:
    node = _node()
    app = make_app(node)  # no token: the browser check stands on its own
    for key in [("/set_kv/", "GET"), ("/mark_for_deletion/", "GET")]:
        reply = _write(app, key, *headers)
        assert reply.status == 403
        assert "cross-site" in reply.json()["error"]
    assert node.calls == []


def test_same_origin_and_plain_clients_may_write() -> None:
    node = _node()
    app = make_app(node)
    same = _write(app, ("/set_kv/", "GET"), ("origin", "http://127.0.0.1:10000"))
    fetch = _write(app, ("/set_kv/", "GET"), ("sec-fetch-site", "same-origin"))
    typed = _write(app, ("/set_kv/", "GET"), ("sec-fetch-site", "none"))
    plain = _write(app, ("/set_kv/", "GET"))
    assert [r.status for r in (same, fetch, typed, plain)] == [200, 200, 200, 200]


def test_a_cross_site_read_is_not_refused() -> None:
    # Reads are protected from rebinding by the Host check; a cross-site page cannot read
    # the answer of a plain GET without CORS, which the API never grants.
    app = make_app(_node())
    assert call(app, "GET", "/keys/k", headers=[HOST, ("origin", "http://x.example")]).status == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:10000", "127.0.0.1.nip.io:1"])
def test_a_foreign_host_is_refused_on_every_route(host: str) -> None:
    node = _node()
    app = make_app(node)
    for route in ROUTES:
        path = route.template.replace("{key}", "k").replace("{node_id}", "node-0")
        for method in route.methods:
            reply = call(app, method, path, headers=[("host", host)])
            assert reply.status == 403, (method, path)
            assert "host" in reply.json()["error"]
    assert node.calls == []


@pytest.mark.parametrize(
    "host", ["127.0.0.1:10000", "[::1]:10000", "10.1.2.3", "localhost:10000", "LOCALHOST."]
)
def test_addresses_and_local_names_are_accepted(host: str) -> None:
    reply = call(make_app(_node()), "GET", "/health", headers=[("host", host)])
    assert reply.status == 200


def test_more_host_names_or_any_can_be_allowed() -> None:
    named = make_app(_node(), ApiSecurity.with_extra_hosts(["node.example"]))
    anything = make_app(_node(), ApiSecurity.with_extra_hosts(["*"]))
    other = [("host", "other.example")]
    assert call(named, "GET", "/health", headers=[("host", "node.example:1")]).status == 200
    assert call(named, "GET", "/health", headers=other).status == 403
    assert call(anything, "GET", "/health", headers=other).status == 200


@pytest.mark.parametrize("host", ["[::1", "a:b", "[::1]x"])
def test_a_malformed_host_is_refused(host: str) -> None:
    assert call(make_app(_node()), "GET", "/health", headers=[("host", host)]).status == 403


# --------------------------------------------------------------------------- exposure


def test_the_default_http_address_is_never_public() -> None:
    loopback = SocketAddress.parse("127.0.0.2:7000")
    public = SocketAddress.parse("192.0.2.10:7000")
    anywhere = SocketAddress.parse("0.0.0.0:7000")
    assert default_http_addr(loopback) == loopback
    assert default_http_addr(public) == SocketAddress.parse("127.0.0.1:7000")
    assert default_http_addr(anywhere) == SocketAddress.parse("127.0.0.1:7000")


def test_a_public_api_without_a_token_is_refused() -> None:
    public = SocketAddress.parse("0.0.0.0:7000")
    problem = exposure_error(public, has_token=False, insecure=False)
    assert problem is not None
    assert "--api-token-file" in problem and "--insecure-http" in problem
    assert exposure_error(public, has_token=True, insecure=False) is None
    assert exposure_error(public, has_token=False, insecure=True) is None
    loopback = SocketAddress.parse("127.0.0.1:7000")
    assert exposure_error(loopback, has_token=False, insecure=False) is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("", "one line"), ("a\nb\n", "one line"), ("short", "16"), ("with space inside!", "ASCII")],
)
def test_bad_token_files_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(ApiTokenError, match=fragment):
        parse_api_token(text, "token")
    assert parse_api_token(f"\n {TOKEN} \n", "token") == TOKEN


# --------------------------------------------------------------------------- over real TCP


def _over_tcp(
    url: str, method: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=body or None, method=method, headers=headers)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


@pytest.mark.trio
async def test_over_tcp_every_write_needs_the_token_and_cross_site_gets_are_refused() -> None:
    node = _node()
    results: dict[tuple[str, str], list[int]] = {}
    async with trio.open_nursery() as nursery:
        addr = await nursery.start(
            partial(serve_http, security=ApiSecurity(token=TOKEN)),
            node,
            SocketAddress.parse("127.0.0.1:0"),
        )
        for key, (path, query, body) in sorted(_WRITES.items()):
            url = f"http://{addr}{path}" + (f"?{query}" if query else "")
            statuses = []
            for headers in (
                {},
                {"Authorization": "Bearer wrong-token-0123456789"},
                {"Authorization": f"Bearer {TOKEN}", "Host": "evil.example"},
                {"Authorization": f"Bearer {TOKEN}", "Sec-Fetch-Site": "cross-site"},
                {"Authorization": f"Bearer {TOKEN}"},
            ):
                reply = await trio.to_thread.run_sync(_over_tcp, url, key[1], body, headers)
                statuses.append(reply[0])
            results[key] = statuses
        read = await trio.to_thread.run_sync(_over_tcp, f"http://{addr}/keys", "GET", b"", {})
        nursery.cancel_scope.cancel()

    for key, statuses in results.items():
        assert statuses == [401, 401, 403, 403, 200], key
    assert read[0] == 200
