"""The served OpenAPI document describes exactly the routes the app answers."""

from __future__ import annotations

from typing import Any

import pytest

from gossip_tui.api import ROUTES, make_app

from .asgi_client import call
from .helpers import api_node

_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    reply = call(make_app(api_node()), "GET", "/openapi.json")
    assert reply.status == 200
    body = reply.json()
    assert isinstance(body, dict)
    return body


def test_is_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"]
    assert document["info"]["version"]


def test_lists_every_route_and_method(document: dict[str, Any]) -> None:
    served = {
        (route.template, method.lower())
        for route in ROUTES
        if route.documented
        for method in route.methods
    }
    described = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in _METHODS
    }

    assert described == served
    assert {
        "/",
        "/set_kv/",
        "/mark_for_deletion/",
        "/nodes",
        "/nodes/{node_id}",
        "/keys",
        "/keys/{key}",
        "/events",
        "/health",
        "/metrics",
        "/openapi.json",
    } == set(document["paths"])


def _walk(value: Any) -> Any:
    if isinstance(value, dict):
        yield value
        for inner in value.values():
            yield from _walk(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _walk(inner)


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    refs = [node["$ref"] for node in _walk(document) if "$ref" in node]
    schemas = document["components"]["schemas"]

    assert refs
    for ref in refs:
        prefix, _, name = ref.rpartition("/")
        assert prefix == "#/components/schemas"
        assert name in schemas, ref


def test_operations_have_ids_responses_and_declare_path_parameters(
    document: dict[str, Any],
) -> None:
    ids = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            ids.append(operation["operationId"])
            assert "200" in operation["responses"], (path, method)
            declared = {p["name"] for p in operation.get("parameters", ()) if p["in"] == "path"}
            templated = {part[1:-1] for part in path.split("/") if part.startswith("{")}
            assert declared == templated, (path, method)
    assert len(ids) == len(set(ids))


def test_error_responses_use_the_error_schema(document: dict[str, Any]) -> None:
    for item in document["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                if status.startswith("4"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}


def test_liveness_lists_every_state_a_node_can_report(document: dict[str, Any]) -> None:
    enum = document["components"]["schemas"]["Liveness"]["enum"]
    assert set(enum) == {"self", "live", "dead", "left", "scheduled_for_deletion", "unknown"}


def test_the_document_validates(document: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(document)


def test_every_operation_documents_the_access_checks(document: dict[str, Any]) -> None:
    writes = {
        (route.template, method.lower())
        for route in ROUTES
        if route.documented
        for method in route.methods
        if route.writes(method)
    }
    assert "bearerToken" in document["components"]["securitySchemes"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert {"401", "403"} <= set(operation["responses"]), (path, method)
            if (path, method) in writes:
                assert operation["security"] == [{"bearerToken": []}], (path, method)
            else:
                assert {} in operation["security"], (path, method)
