"""ttl=SECONDS on the set routes, its validation, and the expiry in the read answers
(in-process over the shared fake node, whose clock stands at helpers.TAKEN_AT)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest
import trio
from jsonschema import Draft202012Validator

from gossip_tui.api import make_app
from gossip_tui.api._openapi import openapi_document
from gossip_tui.core.models import KeyStatus
from gossip_tui.node import KeyDeleted
from gossip_tui.testing import FakeNode

from .asgi_client import acall, call
from .helpers import TAKEN_AT, add_peer, api_node

JSON = [("content-type", "application/json")]


def _conforms(body: Any, schema: str) -> None:
    document = openapi_document()
    validator = Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema}", "components": document["components"]}
    )
    validator.validate(body)


@pytest.fixture
def node() -> FakeNode:
    return api_node()


def test_put_with_a_json_ttl_sets_a_deadline_that_reads_show(node: FakeNode) -> None:
    app = make_app(node)
    before = time.time()
    reply = call(app, "PUT", "/keys/lease", body=b'{"value": "a", "ttl": 30}', headers=JSON)
    assert reply.status == 200, reply.body
    written = reply.json()
    _conforms(written, "KeyWritten")
    assert written["ttl"] == 30 and written["expires_in"] == 30
    assert node.calls == [("set", "lease", "a", "ttl=30")]
    assert node.key_expiries() == {"lease": TAKEN_AT + 30}

    key = call(app, "GET", "/keys/lease").json()
    _conforms(key, "Key")
    assert key["expires_in"] == 30
    at = datetime.fromisoformat(key["expires_at"].replace("Z", "+00:00")).timestamp()
    assert before + 29 <= at <= time.time() + 31

    listed = call(app, "GET", "/keys").json()
    _conforms(listed, "KeyList")
    assert set(listed["expiries"]) == {"lease"}
    detail = call(app, "GET", "/nodes/node-0").json()
    _conforms(detail, "NodeDetail")
    assert detail["expiries"]["lease"]["expires_in"] == 30


def test_a_peers_keys_show_no_expiry(node: FakeNode) -> None:
    node.set("lease", "a", ttl=30)
    add_peer(node, "node-1", "127.0.0.1:10001")
    node.cluster.set_peer_key(node.cluster.peer("node-1"), "lease", "b")
    detail = call(make_app(node), "GET", "/nodes/node-1").json()
    assert detail["expiries"] == {}


def test_set_again_without_ttl_clears_the_expiry(node: FakeNode) -> None:
    app = make_app(node)
    call(app, "PUT", "/keys/k", body=b"v", query="ttl=5")
    assert node.calls == [("set", "k", "v", "ttl=5")]
    reply = call(app, "PUT", "/keys/k", body=b'{"value": "v"}', headers=JSON)
    assert reply.json()["expires_in"] is None
    assert call(app, "GET", "/keys/k").json()["expires_at"] is None
    assert not node.key_expiries()


def test_set_kv_takes_ttl_seconds_and_keeps_ttl_true(node: FakeNode) -> None:
    app = make_app(node)
    assert call(app, "GET", "/set_kv/", query="key=a&value=1&ttl=2.5").status == 200
    assert call(app, "GET", "/set_kv/", query="key=b&value=2&ttl=true").status == 200
    assert call(app, "GET", "/set_kv/", query="key=c&value=3").status == 200
    assert node.calls == [
        ("set", "a", "1", "ttl=2.5"),
        ("set_with_ttl", "b", "2"),
        ("set", "c", "3"),
    ]
    assert node.member.key_values["b"].status is KeyStatus.DELETE_AFTER_TTL


def test_ttl_true_in_a_json_body_is_still_chitchats_ttl(node: FakeNode) -> None:
    reply = call(
        make_app(node), "PUT", "/keys/t", body=b'{"value": "v", "ttl": true}', headers=JSON
    )
    assert reply.json()["ttl"] is True and reply.json()["expires_in"] is None
    assert node.calls == [("set_with_ttl", "t", "v")]


BAD_QUERY_TTLS = ["0", "-1", "nan", "inf", "-inf", "1e12", "abc", "", "0x10", "1e999"]
BAD_JSON_TTLS = [b"0", b"-5", b"NaN", b"Infinity", b"1e400", b"1e12", b'"30"', b"null", b"[]"]


@pytest.mark.parametrize("ttl", BAD_QUERY_TTLS)
@pytest.mark.parametrize("route", ["set_kv", "put"])
def test_a_bad_query_ttl_is_a_400_and_changes_nothing(node: FakeNode, route: str, ttl: str) -> None:
    app = make_app(node)
    if route == "set_kv":
        reply = call(app, "GET", "/set_kv/", query=f"key=k&value=v&ttl={ttl}")
    else:
        reply = call(app, "PUT", "/keys/k", body=b"v", query=f"ttl={ttl}")
    assert reply.status == 400, reply.body
    assert set(reply.json()) == {"error"} and "ttl" in reply.json()["error"].lower()
    assert node.calls == [] and node.get("k") is None


@pytest.mark.parametrize("ttl", BAD_JSON_TTLS)
def test_a_bad_json_ttl_is_a_400_and_changes_nothing(node: FakeNode, ttl: bytes) -> None:
    body = b'{"value": "v", "ttl": ' + ttl + b"}"
    reply = call(make_app(node), "PUT", "/keys/k", body=body, headers=JSON)
    assert reply.status == 400, reply.body
    assert set(reply.json()) == {"error"}
    assert node.calls == [] and node.get("k") is None


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=-1", "limit=x", "limit=1.5", "timeout=0", "timeout=nan", "timeout=1e9"],
)
def test_bad_events_bounds_are_a_400(node: FakeNode, query: str) -> None:
    reply = call(make_app(node), "GET", "/events", query=query)
    assert reply.status == 400, reply.body
    assert set(reply.json()) == {"error"}


def _lines(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


@pytest.mark.trio
async def test_events_end_after_limit_and_show_an_expiry(node: FakeNode) -> None:
    node.set("lease", "a", ttl=1)
    result: list[Any] = []

    async def request() -> None:
        result.append(await acall(make_app(node), "GET", "/events", query="limit=2"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(request)
        with trio.fail_after(5):
            while not node.events._subscribers:
                await trio.sleep(0)
        node.publish(KeyDeleted(node.self_id, "lease", 2, "expired"))
        node.publish(KeyDeleted(node.self_id, "other", 3))
        node.publish(KeyDeleted(node.self_id, "never-sent", 4))
    lines = _lines(result[0].body)
    assert [line["type"] for line in lines] == ["subscribed", "key_deleted", "key_deleted", "end"]
    assert lines[1]["reason"] == "expired" and lines[2]["reason"] == "deleted"
    assert lines[-1]["reason"] == "limit reached"
    for line in lines:
        _conforms(line, "StreamLine")


@pytest.mark.trio
async def test_events_end_after_the_timeout(node: FakeNode, autojump_clock: trio.abc.Clock) -> None:
    started = trio.current_time()
    reply = await acall(make_app(node), "GET", "/events", query="timeout=3")
    assert reply is not None
    lines = _lines(reply.body)
    assert [line["type"] for line in lines] == ["subscribed", "end"]
    assert lines[-1]["reason"] == "timeout"
    assert trio.current_time() - started == pytest.approx(3, abs=0.1)


def test_a_bad_query_ttl_is_refused_even_beside_a_json_body(node: FakeNode) -> None:
    # Found by schemathesis: the JSON body's ttl wins, yet the query's must be valid too.
    reply = call(
        make_app(node),
        "PUT",
        "/keys/k",
        body=b'{"value": "v"}',
        headers=JSON,
        query="ttl=315360001.0",
    )
    assert reply.status == 400, reply.body
    assert node.calls == []
