"""The HTTP API of a node: chitchat-test's JSON routes and a small REST API.

``make_app(node)`` builds the ASGI application; ``serve_http(node, bind)`` serves it with
hypercorn's Trio worker (hypercorn is imported only when serving); ``serve_node_http(node)``
serves it on the node's gossip address as a service of the node, as the headless runtime
and the dashboard do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._security import ApiSecurity, default_host_names
from ._server import ServedNode, serve_http, serve_node_http
from ._types import ApiNode

if TYPE_CHECKING:
    from gossip_tui.core.converter import converter

    from ._app import MAX_BODY_SIZE, ROUTES, GossipApi, HttpError, Route, make_app

# The application's module (its routes, and json, re, urllib.parse with it), imported when
# first named: serve_http builds the application once the first connection waits, so a
# node that nobody asks anything does without it, as it does without hypercorn.
_APP_NAMES = frozenset({"MAX_BODY_SIZE", "ROUTES", "GossipApi", "HttpError", "Route", "make_app"})

__all__ = [
    "MAX_BODY_SIZE",
    "ROUTES",
    "ApiNode",
    "ApiSecurity",
    "GossipApi",
    "HttpError",
    "Route",
    "ServedNode",
    "converter",
    "default_host_names",
    "make_app",
    "serve_http",
    "serve_node_http",
]


def __getattr__(name: str) -> Any:
    if name in _APP_NAMES:
        from . import _app

        return getattr(_app, name)
    # The converter is made (and cattrs imported) when first asked for, as in
    # gossip_tui.core.converter: serving the API does not need it before a request does.
    if name == "converter":
        from gossip_tui.core.converter import converter

        return converter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
