"""The HTTP API of a node: chitchat-test's JSON routes and a small REST API.

``make_app(node)`` builds the ASGI application; ``serve_http(node, bind)`` serves it with
hypercorn's Trio worker (hypercorn is imported only when serving); ``serve_node_http(node)``
serves it on the node's gossip address as a service of the node, as the headless runtime
and the dashboard do.
"""

from __future__ import annotations

from gossip_tui.core.converter import converter

from ._app import MAX_BODY_SIZE, ROUTES, GossipApi, HttpError, Route, make_app
from ._security import ApiSecurity, default_host_names
from ._server import ServedNode, serve_http, serve_node_http
from ._types import ApiNode

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
