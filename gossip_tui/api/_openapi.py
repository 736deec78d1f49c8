"""The hand-written OpenAPI 3.1 description of the HTTP API, served at ``/openapi.json``.

One concern, though over 400 lines (most of it the document's data): the description of
every route and body.
"""

from __future__ import annotations

import copy
from typing import Any

from gossip_tui.core.expiry import MAX_TTL_SECONDS
from gossip_tui.core.models import Liveness

from ._events import MAX_EVENTS_LIMIT, MAX_EVENTS_TIMEOUT

__all__ = ["openapi_document"]

_JSON = "application/json"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _object(properties: dict[str, Any], *, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


def _query(name: str, description: str, *, required: bool, min_length: int = 0) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if min_length:
        schema["minLength"] = min_length
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


_U64 = {"type": "integer", "minimum": 0}
_SECONDS = {
    "type": "number",
    "exclusiveMinimum": 0,
    "maximum": MAX_TTL_SECONDS,
    "description": "seconds the key lives, then the node deletes it (at most ten years)",
}
# A ttl: seconds, or chitchat's flag (true: marked delete-after-TTL, gone after the
# grace period; false: none).
_TTL = {"oneOf": [{"type": "boolean"}, _SECONDS]}
_EXPIRES_AT = {
    "type": ["string", "null"],
    "format": "date-time",
    "description": "when the key expires (UTC); null: it does not",
}
_EXPIRES_IN = {
    "type": ["number", "null"],
    "minimum": 0,
    "description": "seconds until it expires (0: due, deleted at the next round); null: never",
}
_ADDRESS = {
    "type": "string",
    "description": "ip:port, [ipv6]:port for IPv6",
    "examples": ["127.0.0.1:10000"],
}

_SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": {"type": "string"}}),
    "Status": _object({"status": {"type": "boolean", "const": True}}),
    "ChitchatId": _object(
        {
            "node_id": {"type": "string"},
            "generation_id": _U64,
            "gossip_advertise_addr": _ADDRESS,
        }
    ),
    "DeletionStatus": {"type": "string", "enum": ["Set", "Delete", "DeleteAfterTtl"]},
    "VersionedValue": _object(
        {"value": {"type": "string"}, "version": _U64, "status": _ref("DeletionStatus")}
    ),
    "KeyValues": {
        "type": "object",
        "description": "key -> versioned value, keys in byte order",
        "additionalProperties": _ref("VersionedValue"),
    },
    "NodeState": _object(
        {
            "chitchat_id": _ref("ChitchatId"),
            "heartbeat": _U64,
            "key_values": _ref("KeyValues"),
            "max_version": _U64,
            "last_gc_version": _U64,
        }
    ),
    "ClusterStateSnapshot": _object(
        {
            "node_states": {"type": "array", "items": _ref("NodeState")},
            "seed_addrs": {"type": "array", "items": _ADDRESS},
        }
    ),
    "ClusterState": _object(
        {
            "cluster_id": {"type": "string"},
            "cluster_state": _ref("ClusterStateSnapshot"),
            "live_nodes": {"type": "array", "items": _ref("ChitchatId")},
            "dead_nodes": {"type": "array", "items": _ref("ChitchatId")},
        }
    ),
    "Liveness": {"type": "string", "enum": [liveness.value for liveness in Liveness]},
    "NodeSummary": _object(
        {
            "chitchat_id": _ref("ChitchatId"),
            "is_self": {"type": "boolean"},
            "liveness": _ref("Liveness"),
            "phi": {"type": ["number", "null"], "description": "null until measured"},
            "heartbeat": _U64,
            "max_version": _U64,
            "last_gc_version": _U64,
            "key_count": {"type": "integer", "description": "keys not deleted"},
            "seconds_since_update": {
                "type": ["number", "null"],
                "description": "seconds since its heartbeat last rose (null: never heard)",
            },
            "restarted": {
                "oneOf": [_ref("Restarted"), {"type": "null"}],
                "description": "an older generation of this node id is still known",
            },
        }
    ),
    "Restarted": _object(
        {
            "previous_generation": _U64,
            "seconds_since_restart": {"type": ["number", "null"]},
        }
    ),
    "Forgotten": _object(
        {
            "forgotten": {"type": "array", "items": _ref("ChitchatId")},
            "status": {"type": "boolean", "const": True},
        }
    ),
    "NodeList": _object(
        {
            "cluster_id": {"type": "string"},
            "self_node": _ref("ChitchatId"),
            "nodes": {"type": "array", "items": _ref("NodeSummary")},
        }
    ),
    "Expiry": _object(
        {
            "expires_at": {"type": "string", "format": "date-time"},
            "expires_in": {"type": "number", "minimum": 0},
        }
    ),
    "Expiries": {
        "type": "object",
        "description": "key -> when it expires, for this node's keys set with a ttl in seconds",
        "additionalProperties": _ref("Expiry"),
    },
    "NodeDetail": _object(
        {
            "node": _ref("NodeSummary"),
            "key_values": _ref("KeyValues"),
            "expiries": {
                **_ref("Expiries"),
                "description": "this node's own expiring keys; always empty for a peer",
            },
        }
    ),
    "KeyList": _object(
        {
            "chitchat_id": _ref("ChitchatId"),
            "keys": _ref("KeyValues"),
            "expiries": _ref("Expiries"),
        }
    ),
    "Key": _object(
        {
            "key": {"type": "string"},
            "value": {"type": "string"},
            "version": _U64,
            "status": _ref("DeletionStatus"),
            "expires_at": _EXPIRES_AT,
            "expires_in": _EXPIRES_IN,
        }
    ),
    "PutKey": _object(
        {
            "value": {"type": "string"},
            "ttl": {
                **_TTL,
                "default": False,
                "description": (
                    "seconds the key lives (then it is deleted; setting the key again "
                    "replaces or clears that), or true: chitchat's TTL, deleted after the "
                    "node's grace period"
                ),
            },
        },
        optional=("ttl",),
    ),
    "KeyWritten": _object(
        {
            "key": {"type": "string"},
            "value": {"type": "string"},
            "ttl": {**_TTL, "description": "as asked"},
            "status": {"type": "boolean", "const": True},
            "expires_at": _EXPIRES_AT,
            "expires_in": _EXPIRES_IN,
        }
    ),
    "KeyDeleted": _object(
        {
            "key": {"type": "string"},
            "after_ttl": {"type": "boolean"},
            "status": {"type": "boolean", "const": True},
        }
    ),
    "Subscribed": _object(
        {
            "type": {"const": "subscribed"},
            "chitchat_id": _ref("ChitchatId"),
            "prefix": {"type": "string"},
        }
    ),
    "Event": {
        "description": (
            "node_joined: became live; node_left: announced its leave; node_dead: declared dead; "
            "node_removed: forgotten after the dead-node grace period; node_updated: its "
            "max_version moved; key_changed: set (or marked delete-after-TTL); "
            "key_deleted: a tombstone arrived (reason expired: a key of this node set "
            "with a ttl in seconds reached its deadline)"
        ),
        "oneOf": [
            _object(
                {
                    "type": {"enum": ["node_joined", "node_left", "node_dead", "node_removed"]},
                    "node": _ref("ChitchatId"),
                }
            ),
            _object(
                {"type": {"const": "node_updated"}, "node": _ref("ChitchatId"), "max_version": _U64}
            ),
            _object(
                {
                    "type": {"const": "key_changed"},
                    "node": _ref("ChitchatId"),
                    "key": {"type": "string"},
                    "value": {"type": "string"},
                    "version": _U64,
                }
            ),
            _object(
                {
                    "type": {"const": "key_deleted"},
                    "node": _ref("ChitchatId"),
                    "key": {"type": "string"},
                    "version": _U64,
                    "reason": {"enum": ["deleted", "expired"]},
                }
            ),
        ],
    },
    "End": _object(
        {
            "type": {"const": "end"},
            "reason": {
                "enum": [
                    "node leaving",
                    "node closed",
                    "internal error",
                    "limit reached",
                    "timeout",
                ]
            },
        }
    ),
    "StreamLine": {"oneOf": [_ref("Subscribed"), _ref("Event"), _ref("End")]},
    "Health": _object(
        {
            "status": {"type": "string", "const": "ok"},
            "cluster_id": {"type": "string"},
            "chitchat_id": _ref("ChitchatId"),
            "live_nodes": {"type": "integer"},
            "dead_nodes": {"type": "integer", "description": "dead, not left; restarts folded"},
            "left_nodes": {"type": "integer", "description": "announced their departure"},
        }
    ),
}

_BAD_REQUEST = _error("malformed request")
_TOO_LARGE = _error("body over 64 KiB, or key and value too large for a gossip datagram")
_NOT_SAVED = _error("with --state-dir: the change is applied but could not be saved")
_KEY = _path("key", "the key; may hold slashes")
_TTL_QUERY: dict[str, Any] = {
    "name": "ttl",
    "in": "query",
    "required": False,
    "description": (
        "seconds the key lives (ttl=30), or true for chitchat's TTL (deleted after the "
        "node's grace period); 0, negative, NaN or over ten years is a 400"
    ),
    "schema": {**_TTL, "default": False},
}

_PATHS: dict[str, Any] = {
    "/": {
        "get": {
            "operationId": "clusterState",
            "summary": "The cluster state as chitchat-test shows it",
            "responses": {"200": _json(_ref("ClusterState"), "the cluster state")},
        }
    },
    "/set_kv/": {
        "get": {
            "operationId": "setKv",
            "summary": "Set a key-value on this node (chitchat-test)",
            "parameters": [
                _query("key", "the key", required=True, min_length=1),
                _query("value", "the value", required=True),
                _TTL_QUERY,
            ],
            "responses": {
                "200": _json(_ref("Status"), "the key is set"),
                "400": _BAD_REQUEST,
                "413": _TOO_LARGE,
                "503": _NOT_SAVED,
            },
        }
    },
    "/mark_for_deletion/": {
        "get": {
            "operationId": "markForDeletion",
            "summary": "Delete a key of this node (chitchat-test); an absent key is ignored",
            "parameters": [_query("key", "the key", required=True, min_length=1)],
            "responses": {
                "200": _json(_ref("Status"), "the key is deleted"),
                "400": _BAD_REQUEST,
                "503": _NOT_SAVED,
            },
        }
    },
    "/nodes": {
        "get": {
            "operationId": "listNodes",
            "summary": "Every known node with its liveness",
            "responses": {"200": _json(_ref("NodeList"), "the nodes")},
        }
    },
    "/nodes/{node_id}": {
        "get": {
            "operationId": "getNode",
            "summary": "One node, by name (newest generation) or by name:generation:address",
            "parameters": [_path("node_id", "the node's name, or name:generation:address")],
            "responses": {
                "200": _json(_ref("NodeDetail"), "the node and its key-values"),
                "404": _error("no such node"),
            },
        },
        "delete": {
            "operationId": "forgetNode",
            "summary": "Forget a dead or left node here now (every such generation of a name)",
            "parameters": [_path("node_id", "the node's name, or name:generation:address")],
            "responses": {
                "200": _json(_ref("Forgotten"), "the generations forgotten"),
                "404": _error("no such node"),
                "409": _error("the node is live"),
            },
        },
    },
    "/keys": {
        "get": {
            "operationId": "listKeys",
            "summary": "This node's keys that are not deleted",
            "responses": {"200": _json(_ref("KeyList"), "the keys")},
        }
    },
    "/keys/{key}": {
        "get": {
            "operationId": "getKey",
            "summary": "One key of this node",
            "parameters": [_KEY],
            "responses": {
                "200": _json(_ref("Key"), "the key"),
                "404": _error("no such key, or deleted"),
            },
        },
        "put": {
            "operationId": "putKey",
            "summary": "Set a key of this node",
            "description": (
                "A JSON body (application/json) is a PutKey object; any other body is the "
                "value itself as UTF-8 text, with the ttl query parameter. No body sets the "
                "empty value."
            ),
            "parameters": [
                _KEY,
                {**_TTL_QUERY, "description": "for a text body: " + _TTL_QUERY["description"]},
            ],
            "requestBody": {
                "required": False,
                "content": {
                    _JSON: {"schema": _ref("PutKey")},
                    "text/plain": {"schema": {"type": "string"}},
                },
            },
            "responses": {
                "200": _json(_ref("KeyWritten"), "the key is set"),
                "400": _BAD_REQUEST,
                "413": _TOO_LARGE,
                "503": _NOT_SAVED,
            },
        },
        "delete": {
            "operationId": "deleteKey",
            "summary": "Delete a key of this node",
            "parameters": [
                _KEY,
                {
                    "name": "after_ttl",
                    "in": "query",
                    "required": False,
                    "description": "keep the value visible until the grace period ends",
                    "schema": {"type": "boolean", "default": False},
                },
            ],
            "responses": {
                "200": _json(_ref("KeyDeleted"), "the key is deleted"),
                "400": _BAD_REQUEST,
                "404": _error("no such key, or already deleted"),
                "503": _NOT_SAVED,
            },
        },
    },
    "/events": {
        "get": {
            "operationId": "events",
            "summary": "The node's events as they happen, one JSON object a line (NDJSON)",
            "description": (
                "A stream that stays open: first a Subscribed line, then one Event line per "
                "membership change (every one) and key change (of keys under prefix), with "
                "empty lines as keep-alives every 15 s. It ends with an End line when the "
                "node leaves or closes. A reader more than 10,000 events behind loses events "
                "(counted in the metrics) instead of slowing the node down. With limit or "
                "timeout the stream ends (End line) after that many events or seconds."
            ),
            "parameters": [
                _query("prefix", "key events under this prefix only", required=False),
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": "end the stream after this many events",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_EVENTS_LIMIT},
                },
                {
                    "name": "timeout",
                    "in": "query",
                    "required": False,
                    "description": "end the stream after this many seconds",
                    "schema": {
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "maximum": MAX_EVENTS_TIMEOUT,
                    },
                },
            ],
            "responses": {
                "200": {
                    "description": "NDJSON: Subscribed, then Event lines, then End",
                    "content": {
                        "application/x-ndjson": {
                            "schema": {"type": "string"},
                            # Each line; OpenAPI 3.2 names this itemSchema, 3.1 has no word for it.
                            "x-item-schema": _ref("StreamLine"),
                        }
                    },
                },
                "400": _BAD_REQUEST,
            },
        }
    },
    "/health": {
        "get": {
            "operationId": "health",
            "summary": "Liveness probe",
            "responses": {"200": _json(_ref("Health"), "the node is serving")},
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Counters and cluster health in Prometheus text format",
            "responses": {
                "200": {
                    "description": "Prometheus exposition format 0.0.4",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {"200": {"description": "the OpenAPI document"}},
        }
    },
}


_UNAUTHORIZED = _error(
    "with --api-token-file: no or a wrong Authorization: Bearer token (for reads too with "
    "--api-token-protects-reads)"
)
_FORBIDDEN = _error(
    "a Host that is not one of the node's names (DNS rebinding), or a write a browser "
    "labels cross-site (Origin, Sec-Fetch-Site)"
)
_WRITE_OPERATIONS = {("/set_kv/", "get"), ("/mark_for_deletion/", "get")}


def _with_access_rules(paths: dict[str, Any]) -> dict[str, Any]:
    """Every operation answers 401 and 403 (see :mod:`gossip_tui.api._security`); writes
    need the token when the node has one, reads may send it."""
    for path, item in paths.items():
        for method, operation in item.items():
            writes = method in ("put", "delete") or (path, method) in _WRITE_OPERATIONS
            operation["security"] = [{"bearerToken": []}] if writes else [{}, {"bearerToken": []}]
            operation["responses"].setdefault("401", _UNAUTHORIZED)
            operation["responses"].setdefault("403", _FORBIDDEN)
    return paths


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gossip-tui node API",
            "version": "1",
            "description": (
                "chitchat-test's routes (/, /set_kv/, /mark_for_deletion/) and a REST API "
                'over one gossip node. Errors are {"error": "..."}: 404 unknown path, '
                "405 wrong method, 400 malformed request, 413 too large, 500 server fault, "
                "503 a write not saved, 401 no or a wrong token, 403 a foreign Host or a "
                "cross-site write. With --state-dir a 2xx to a write means it is on disk. "
                "With --api-token-file, writes need Authorization: Bearer <token>."
            ),
        },
        "paths": _with_access_rules(copy.deepcopy(_PATHS)),
        "components": {
            "schemas": copy.deepcopy(_SCHEMAS),
            "securitySchemes": {
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the one line of the node's --api-token-file",
                }
            },
        },
    }
