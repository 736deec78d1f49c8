"""Every route of the HTTP API, driven in-process over a fake node."""

from __future__ import annotations

import json
import logging
from functools import partial
from typing import Any

import pytest
import trio

from gossip_tui.api import MAX_BODY_SIZE, make_app
from gossip_tui.core.models import KeyStatus, Liveness, SocketAddress, VersionedValue
from gossip_tui.testing import FakeNode

from .asgi_client import Reply, acall, call
from .helpers import add_peer, api_node

JSON = [("content-type", "application/json")]


def _id(node_id: str, generation: int, addr: str) -> dict[str, Any]:
    return {"node_id": node_id, "generation_id": generation, "gossip_advertise_addr": addr}


SELF = _id("node-0", 1_700_000_000, "127.0.0.1:10000")


@pytest.fixture
def node() -> FakeNode:
    return api_node(seeds=[SocketAddress.parse("127.0.0.1:10002")])


def _error(reply: Reply, status: int) -> str:
    assert reply.status == status, reply.body
    body = reply.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    assert body["error"]
    return str(body["error"])


# --------------------------------------------------------------------------- GET /


def test_index_has_chitchat_test_shape(node: FakeNode) -> None:
    node.set("bind", "127.0.0.1:10000")
    node.set("b", "x")
    node.delete("b")
    add_peer(
        node,
        "node-1",
        "127.0.0.1:10001",
        heartbeat=12,
        last_gc_version=2,
        key_values={
            "ttl": VersionedValue("v", 4, KeyStatus.DELETE_AFTER_TTL),
            "a": VersionedValue("1", 3),
        },
    )
    add_peer(node, "node-2", "127.0.0.1:10002", liveness=Liveness.DEAD, heartbeat=1)

    reply = call(make_app(node), "GET", "/")

    assert reply.status == 200
    peer1 = _id("node-1", 1, "127.0.0.1:10001")
    peer2 = _id("node-2", 1, "127.0.0.1:10002")
    assert reply.json() == {
        "cluster_id": "testing",
        "cluster_state": {
            "node_states": [
                {
                    "chitchat_id": SELF,
                    "heartbeat": 7,
                    "key_values": {
                        "b": {"value": "", "version": 3, "status": "Delete"},
                        "bind": {"value": "127.0.0.1:10000", "version": 1, "status": "Set"},
                    },
                    "max_version": 3,
                    "last_gc_version": 0,
                },
                {
                    "chitchat_id": peer1,
                    "heartbeat": 12,
                    "key_values": {
                        "a": {"value": "1", "version": 3, "status": "Set"},
                        "ttl": {"value": "v", "version": 4, "status": "DeleteAfterTtl"},
                    },
                    "max_version": 4,
                    "last_gc_version": 2,
                },
                {
                    "chitchat_id": peer2,
                    "heartbeat": 1,
                    "key_values": {},
                    "max_version": 0,
                    "last_gc_version": 0,
                },
            ],
            "seed_addrs": ["127.0.0.1:10002"],
        },
        "live_nodes": [SELF, peer1],
        "dead_nodes": [peer2],
    }


def test_index_orders_like_chitchat_btreemaps(node: FakeNode) -> None:
    # Nodes by (name, generation, address); keys by UTF-8 bytes, so "Z" < "a" < "é".
    add_peer(node, "b", "127.0.0.1:3", generation=2)
    add_peer(node, "b", "127.0.0.1:2", generation=2)
    add_peer(node, "b", "127.0.0.1:9", generation=1)
    add_peer(node, "a", "[::1]:1")
    add_peer(node, "a", "127.0.0.1:1")
    for key in ("é", "a", "Z", "a/b"):
        node.set(key, key)

    body = call(make_app(node), "GET", "/").json()

    ids = [
        tuple(s["chitchat_id"][f] for f in ("node_id", "generation_id", "gossip_advertise_addr"))
        for s in body["cluster_state"]["node_states"]
    ]
    assert ids == [
        ("a", 1, "127.0.0.1:1"),
        ("a", 1, "[::1]:1"),
        ("b", 1, "127.0.0.1:9"),
        ("b", 2, "127.0.0.1:2"),
        ("b", 2, "127.0.0.1:3"),
        ("node-0", 1_700_000_000, "127.0.0.1:10000"),
    ]
    own = body["cluster_state"]["node_states"][-1]
    assert list(own["key_values"]) == ["Z", "a", "a/b", "é"]


def test_index_lists_nodes_scheduled_for_deletion_as_dead(node: FakeNode) -> None:
    add_peer(node, "gone", "127.0.0.1:1", liveness=Liveness.SCHEDULED_FOR_DELETION)
    add_peer(node, "new", "127.0.0.1:2", liveness=Liveness.UNKNOWN)

    body = call(make_app(node), "GET", "/").json()

    assert [n["node_id"] for n in body["live_nodes"]] == ["node-0"]
    assert [n["node_id"] for n in body["dead_nodes"]] == ["gone"]
    assert len(body["cluster_state"]["node_states"]) == 3


def test_index_is_pretty_printed_json(node: FakeNode) -> None:
    reply = call(make_app(node), "GET", "/")

    assert reply.headers["content-type"] == "application/json; charset=utf-8"
    assert reply.body.startswith(b'{\n  "cluster_id": "testing",\n')
    assert int(reply.headers["content-length"]) == len(reply.body)


# --------------------------------------------------------------------------- chitchat-test


def test_set_kv_sets_the_key(node: FakeNode) -> None:
    app = make_app(node)

    reply = call(app, "GET", "/set_kv/", query="key=color&value=blue")

    assert reply.status == 200
    assert reply.json() == {"status": True}
    assert node.calls == [("set", "color", "blue")]
    own = call(app, "GET", "/").json()["cluster_state"]["node_states"][0]
    assert own["key_values"] == {"color": {"value": "blue", "version": 1, "status": "Set"}}


def test_set_kv_decodes_the_query(node: FakeNode) -> None:
    reply = call(make_app(node), "GET", "/set_kv/", query="key=caf%C3%A9&value=a+b%26c%3D")

    assert reply.status == 200
    assert node.calls == [("set", "café", "a b&c=")]


def test_set_kv_accepts_an_empty_value_and_the_path_without_slash(node: FakeNode) -> None:
    reply = call(make_app(node), "GET", "/set_kv", query="key=k&value=")

    assert reply.json() == {"status": True}
    assert node.calls == [("set", "k", "")]


@pytest.mark.parametrize(
    ("query", "missing"), [("value=v", "key"), ("key=k", "value"), ("", "key")]
)
def test_set_kv_without_a_parameter_is_400(node: FakeNode, query: str, missing: str) -> None:
    reply = call(make_app(node), "GET", "/set_kv/", query=query)

    assert repr(missing) in _error(reply, 400)
    assert node.calls == []


def test_set_kv_with_a_bad_query_encoding_is_400(node: FakeNode) -> None:
    _error(call(make_app(node), "GET", "/set_kv/", query="key=%FF&value=v"), 400)
    assert node.calls == []


def test_mark_for_deletion_deletes_the_key(node: FakeNode) -> None:
    node.set("k", "v")
    app = make_app(node)

    reply = call(app, "GET", "/mark_for_deletion/", query="key=k")

    assert reply.json() == {"status": True}
    assert node.calls[-1] == ("delete", "k")
    own = call(app, "GET", "/").json()["cluster_state"]["node_states"][0]
    assert own["key_values"]["k"]["status"] == "Delete"


def test_mark_for_deletion_of_an_absent_key_is_a_no_op(node: FakeNode) -> None:
    reply = call(make_app(node), "GET", "/mark_for_deletion", query="key=nope")

    assert reply.json() == {"status": True}
    assert node.calls == []


def test_mark_for_deletion_without_key_is_400(node: FakeNode) -> None:
    _error(call(make_app(node), "GET", "/mark_for_deletion/"), 400)
    assert "empty" in _error(call(make_app(node), "GET", "/mark_for_deletion/", query="key="), 400)


# --------------------------------------------------------------------------- REST: nodes


def test_nodes_lists_every_node_with_its_liveness(node: FakeNode) -> None:
    node.set("k", "v")
    add_peer(node, "node-1", "127.0.0.1:10001", phi=1.25, key_values={"x": VersionedValue("y", 2)})
    add_peer(node, "node-2", "127.0.0.1:10002", liveness=Liveness.DEAD, phi=float("inf"))

    body = call(make_app(node), "GET", "/nodes").json()

    assert body["cluster_id"] == "testing"
    assert body["self_node"] == SELF
    assert body["nodes"] == [
        {
            "chitchat_id": SELF,
            "is_self": True,
            "liveness": "self",
            "phi": None,
            "heartbeat": 7,
            "max_version": 1,
            "last_gc_version": 0,
            "key_count": 1,
            "seconds_since_update": None,
            "restarted": None,
        },
        {
            "chitchat_id": _id("node-1", 1, "127.0.0.1:10001"),
            "is_self": False,
            "liveness": "live",
            "phi": 1.25,
            "heartbeat": 3,
            "max_version": 2,
            "last_gc_version": 0,
            "key_count": 1,
            "seconds_since_update": 50.0,  # taken at 100.0, updated at 50.0
            "restarted": None,
        },
        {
            "chitchat_id": _id("node-2", 1, "127.0.0.1:10002"),
            "is_self": False,
            "liveness": "dead",
            "phi": None,  # infinite phi has no JSON spelling
            "heartbeat": 3,
            "max_version": 0,
            "last_gc_version": 0,
            "key_count": 0,
            "seconds_since_update": 50.0,
            "restarted": None,
        },
    ]


def test_node_by_name_shows_its_newest_generation_and_all_keys(node: FakeNode) -> None:
    add_peer(node, "node-1", "127.0.0.1:10001", generation=5)
    add_peer(
        node,
        "node-1",
        "127.0.0.1:10001",
        generation=9,
        key_values={"b": VersionedValue("", 2, KeyStatus.DELETED), "a": VersionedValue("1", 1)},
    )

    body = call(make_app(node), "GET", "/nodes/node-1").json()

    assert body["node"]["chitchat_id"] == _id("node-1", 9, "127.0.0.1:10001")
    assert body["node"]["key_count"] == 1
    assert body["key_values"] == {
        "a": {"value": "1", "version": 1, "status": "Set"},
        "b": {"value": "", "version": 2, "status": "Delete"},
    }


def test_node_by_full_id_picks_that_generation(node: FakeNode) -> None:
    add_peer(node, "node-1", "127.0.0.1:10001", generation=5)
    add_peer(node, "node-1", "127.0.0.1:10001", generation=9)

    body = call(make_app(node), "GET", "/nodes/node-1:5:127.0.0.1:10001").json()

    assert body["node"]["chitchat_id"]["generation_id"] == 5


def test_node_unknown_is_404(node: FakeNode) -> None:
    assert "nobody" in _error(call(make_app(node), "GET", "/nodes/nobody"), 404)


# --------------------------------------------------------------------------- REST: keys


def test_keys_lists_the_local_keys_that_are_not_deleted(node: FakeNode) -> None:
    node.set("b", "2")
    node.set("a", "1")
    node.set("gone", "x")
    node.delete("gone")
    node.set_with_ttl("t", "soon")
    add_peer(node, "node-1", "127.0.0.1:10001", key_values={"peer": VersionedValue("p", 1)})

    body = call(make_app(node), "GET", "/keys").json()

    assert body == {
        "chitchat_id": SELF,
        "keys": {
            "a": {"value": "1", "version": 2, "status": "Set"},
            "b": {"value": "2", "version": 1, "status": "Set"},
            "t": {"value": "soon", "version": 5, "status": "DeleteAfterTtl"},
        },
        "expiries": {},
    }


def test_get_key(node: FakeNode) -> None:
    node.set("dir/name", "v")

    reply = call(make_app(node), "GET", "/keys/dir/name")

    assert reply.json() == {
        "key": "dir/name",
        "value": "v",
        "version": 1,
        "status": "Set",
        "expires_at": None,
        "expires_in": None,
    }


def test_get_key_absent_or_deleted_is_404(node: FakeNode) -> None:
    node.set("gone", "x")
    node.delete("gone")
    app = make_app(node)

    _error(call(app, "GET", "/keys/gone"), 404)
    _error(call(app, "GET", "/keys/never"), 404)


def test_put_key_with_a_json_body(node: FakeNode) -> None:
    app = make_app(node)

    reply = call(app, "PUT", "/keys/color", body=b'{"value": "bl\\u00fce"}', headers=JSON)

    assert reply.json() == {
        "key": "color",
        "value": "blüe",
        "ttl": False,
        "status": True,
        "expires_at": None,
        "expires_in": None,
    }
    assert node.calls == [("set", "color", "blüe")]
    assert call(app, "GET", "/keys/color").json()["value"] == "blüe"


def test_put_key_with_ttl(node: FakeNode) -> None:
    app = make_app(node)
    headers = [("Content-Type", "application/json; charset=utf-8")]

    reply = call(app, "PUT", "/keys/t", body=b'{"value": "v", "ttl": true}', headers=headers)

    assert reply.json()["ttl"] is True
    assert node.calls == [("set_with_ttl", "t", "v")]
    assert call(app, "GET", "/keys/t").json()["status"] == "DeleteAfterTtl"


def test_put_key_with_a_text_body(node: FakeNode) -> None:
    app = make_app(node)

    call(app, "PUT", "/keys/a", body=b'{"not": "json"}', headers=[("content-type", "text/plain")])
    call(app, "PUT", "/keys/b", body=[b"chunk", b"ed"], query="ttl=true")

    assert node.calls == [("set", "a", '{"not": "json"}'), ("set_with_ttl", "b", "chunked")]


@pytest.mark.parametrize(
    ("body", "headers", "fragment"),
    [
        (b'{"value": ', JSON, "invalid JSON"),
        (b"\xff\xfe", JSON, "invalid JSON"),
        (b'["v"]', JSON, "object"),
        (b'{"value": 3}', JSON, "body.value"),
        (b'{"value": "v", "ttl": "yes"}', JSON, "body.ttl"),
        (b'{"value": "v", "extra": 1}', JSON, "extra"),
        (b"{}", JSON, "body.value"),
        (b"\xff", [("content-type", "text/plain")], "UTF-8"),
    ],
)
def test_put_key_with_a_bad_body_is_400(
    node: FakeNode, body: bytes, headers: list[tuple[str, str]], fragment: str
) -> None:
    reply = call(make_app(node), "PUT", "/keys/k", body=body, headers=headers)

    assert fragment in _error(reply, 400)
    assert node.calls == []


def test_put_key_with_a_bad_ttl_flag_is_400(node: FakeNode) -> None:
    app = make_app(node)
    _error(call(app, "PUT", "/keys/k", body=b"v", query="ttl=maybe"), 400)
    _error(call(app, "PUT", "/keys/k", body=b"v", query="ttl="), 400)  # say which
    # Even beside a JSON body, which carries its own ttl.
    _error(call(app, "PUT", "/keys/k", body=b'{"value": "v"}', query="ttl=null", headers=JSON), 400)
    assert node.calls == []


def test_put_key_body_over_the_cap_is_413(node: FakeNode) -> None:
    app = make_app(node)
    # Valid JSON with a tiny value: only the size of the body is wrong with it.
    big = b'{"value": "v"}' + b" " * (MAX_BODY_SIZE + 1 - 14)
    length = [("content-length", str(len(big)))]

    declared = call(app, "PUT", "/keys/k", body=big, headers=[*JSON, *length])
    streamed = call(app, "PUT", "/keys/k", body=[big[:40_000], big[40_000:]], headers=JSON)
    at_cap = call(app, "PUT", "/keys/k", body=big[:-1], headers=JSON)

    _error(declared, 413)
    _error(streamed, 413)
    assert at_cap.status == 200
    assert node.calls == [("set", "k", "v")]


def test_set_kv_value_too_large_for_any_datagram_is_413(node: FakeNode) -> None:
    # The node decides what fits (gossip_tui.core.engine.fits_in_one_delta); the fake
    # refuses like the runtime above MAX_KEY_VALUE_BYTES.
    reply = call(make_app(node), "GET", "/set_kv/", query="key=k&value=" + "v" * 65_500)

    assert "gossip datagram" in _error(reply, 413)
    assert node.calls == []


def test_a_key_value_the_node_refuses_as_too_large_is_413() -> None:
    node = api_node(max_key_value_bytes=100)
    app = make_app(node)

    by_query = call(app, "GET", "/set_kv/", query="key=k&value=" + "v" * 100)
    by_put = call(app, "PUT", "/keys/k", body=b"v" * 100, query="ttl=1")
    fits = call(app, "PUT", "/keys/k", body=b"v" * 99)

    assert "too large" in _error(by_query, 413)
    assert "too large" in _error(by_put, 413)
    assert fits.status == 200
    assert node.calls == [("set", "k", "v" * 99)]


def test_an_empty_key_refused_by_the_node_is_400(node: FakeNode) -> None:
    assert "empty" in _error(call(make_app(node), "GET", "/set_kv/", query="key=&value=v"), 400)


def test_delete_key(node: FakeNode) -> None:
    node.set("k", "v")
    app = make_app(node)

    reply = call(app, "DELETE", "/keys/k")
    again = call(app, "DELETE", "/keys/k")

    assert reply.json() == {"key": "k", "after_ttl": False, "status": True}
    assert node.calls[-1] == ("delete", "k")
    _error(again, 404)
    _error(call(app, "GET", "/keys/k"), 404)


def test_delete_key_after_ttl_keeps_it_visible(node: FakeNode) -> None:
    node.set("k", "v")
    app = make_app(node)

    reply = call(app, "DELETE", "/keys/k", query="after_ttl=1")

    assert reply.json() == {"key": "k", "after_ttl": True, "status": True}
    assert node.calls[-1] == ("delete_after_ttl", "k")
    assert call(app, "GET", "/keys/k").json()["status"] == "DeleteAfterTtl"


def test_delete_absent_key_is_404(node: FakeNode) -> None:
    _error(call(make_app(node), "DELETE", "/keys/nope"), 404)
    assert node.calls == []


def test_health(node: FakeNode) -> None:
    add_peer(node, "node-1", "127.0.0.1:10001")
    add_peer(node, "node-2", "127.0.0.1:10002", liveness=Liveness.DEAD)

    reply = call(make_app(node), "GET", "/health")

    assert reply.json() == {
        "status": "ok",
        "cluster_id": "testing",
        "chitchat_id": SELF,
        "live_nodes": 2,
        "dead_nodes": 1,
        "left_nodes": 0,
    }


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("path", ["/nope", "/keys/", "/nodes/", "/set_kv//", "/health/x", ""])
def test_unknown_route_is_404(node: FakeNode, path: str) -> None:
    _error(call(make_app(node), "GET", path), 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/", "GET, HEAD"),
        ("PUT", "/keys", "GET, HEAD"),
        ("POST", "/keys/k", "DELETE, GET, HEAD, PUT"),
        ("DELETE", "/set_kv/", "GET"),
    ],
)
def test_wrong_method_is_405_with_allow(
    node: FakeNode, method: str, path: str, allowed: str
) -> None:
    reply = call(make_app(node), method, path, body=b"x")

    _error(reply, 405)
    assert reply.headers["allow"] == allowed
    assert node.calls == []


@pytest.mark.parametrize("path", ["/set_kv/", "/mark_for_deletion"])
def test_no_head_where_get_changes_state(node: FakeNode, path: str) -> None:
    reply = call(make_app(node), "HEAD", path, query="key=k&value=v")

    assert reply.status == 405
    assert reply.headers["allow"] == "GET"
    assert reply.body == b""
    assert node.calls == []


def test_head_answers_like_get_without_a_body(node: FakeNode) -> None:
    app = make_app(node)

    head = call(app, "HEAD", "/health")
    get = call(app, "GET", "/health")

    assert head.status == 200
    assert head.body == b""
    assert head.headers["content-length"] == str(len(get.body))


def test_an_exception_in_a_handler_is_500_and_the_app_keeps_serving(
    node: FakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(node)
    node.fail_snapshot = RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="gossip_tui.api"):
        failed = call(app, "GET", "/nodes")
    node.fail_snapshot = None
    recovered = call(app, "GET", "/nodes")

    assert _error(failed, 500) == "internal server error"
    assert "boom" in caplog.text
    assert recovered.status == 200


def test_a_client_that_disconnects_gets_no_response(node: FakeNode) -> None:
    request = partial(acall, make_app(node), "PUT", "/keys/k", body=[b"a", b"b"], disconnect=True)
    reply = trio.run(request)

    assert reply is None
    assert node.calls == []


@pytest.mark.trio
async def test_lifespan_startup_and_shutdown(node: FakeNode) -> None:
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(dict(message))

    with trio.fail_after(5):
        await make_app(node)({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)

    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


def test_error_bodies_are_json_objects(node: FakeNode) -> None:
    reply = call(make_app(node), "GET", "/nope")

    assert reply.headers["content-type"] == "application/json; charset=utf-8"
    assert json.loads(reply.body) == {"error": "no route for '/nope'"}
