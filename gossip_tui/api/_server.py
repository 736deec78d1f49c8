"""Serving the API with hypercorn's Trio worker."""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

import trio

from gossip_tui.core.models import SocketAddress

from ._app import make_app
from ._security import ApiSecurity
from ._types import ApiNode

__all__ = ["ServedNode", "serve_http", "serve_node_http"]

_log = logging.getLogger("gossip_tui.api.http")
_BACKLOG = 100


def _serve_http11_only() -> None:
    """Stop hypercorn from switching a connection to HTTP/2 in cleartext (h2c).

    hypercorn answers ``Upgrade: h2c`` with 101 and speaks HTTP/2 from then on, and takes
    a connection that opens with HTTP/2's preface as HTTP/2 too; no setting turns either
    off. The API is HTTP/1.1 only, a smaller surface to defend, so the one check that
    starts both switches is replaced by one that never switches: an upgrade request is
    answered in HTTP/1.1 like any other (h11 then drops the proposed upgrade), and a
    preface reaches the application as a request it refuses. hypercorn serves nothing
    else in this process, so replacing the method on the class is contained.
    """
    import h11
    from hypercorn.protocol.h11 import H11Protocol

    async def never_switch(_protocol: H11Protocol, _request: h11.Request) -> None:
        return None

    H11Protocol._check_protocol = never_switch  # type: ignore[method-assign,assignment]


def _listening_socket(bind: SocketAddress) -> tuple[socket.socket, SocketAddress]:
    family = socket.AF_INET6 if bind.ip.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((bind.host, bind.port))
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock, SocketAddress(bind.ip, int(sock.getsockname()[1]))


async def serve_http(
    node: ApiNode,
    bind: SocketAddress,
    *,
    security: ApiSecurity | None = None,
    task_status: trio.TaskStatus[SocketAddress] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the HTTP API of ``node`` on ``bind`` (TCP) until cancelled.

    Meant for ``nursery.start``: it reports the address actually bound (the port resolved
    when ``bind`` asks for port 0) once the server accepts connections. A busy address
    raises :class:`OSError` (``EADDRINUSE``) before anything starts. ``security`` is the
    token and the Host and Origin checks (see :class:`ApiSecurity`; the default has no
    token).
    """
    from hypercorn.config import Config, Sockets
    from hypercorn.trio.run import worker_serve
    from hypercorn.utils import wrap_app

    # We bind the socket ourselves and hand it to hypercorn's Trio worker: a busy port is
    # then a plain OSError (not wrapped in hypercorn's nurseries), we know the port chosen
    # for port 0, and the socket is closed here however the server ends.
    _serve_http11_only()
    sock, actual = _listening_socket(bind)
    with sock:
        config = Config()
        config.errorlog = _log
        config.accesslog = None
        config.graceful_timeout = 1.0
        app: Any = make_app(
            node, security
        )  # hypercorn types apps as a union of TypedDict signatures
        sockets = Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[])
        async with trio.open_nursery() as nursery:
            # No shutdown trigger: the server runs until the surrounding scope is cancelled.
            await nursery.start(
                partial(worker_serve, wrap_app(app, 0, "asgi"), config, sockets=sockets)
            )
            task_status.started(actual)


class ServedNode(Protocol):
    """What :func:`serve_node_http` needs of a running node, besides what the API reads."""

    @property
    def gossip_addr(self) -> SocketAddress: ...

    # Where the API answers, once served; None while it is not.
    http_addr: SocketAddress | None

    async def start_service(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """``nursery.start(async_fn, *args)`` in the node's nursery."""


async def serve_node_http(
    node: ServedNode,
    bind: SocketAddress | None = None,
    *,
    security: ApiSecurity | None = None,
) -> SocketAddress:
    """Serve ``node``'s HTTP API over TCP on ``bind`` (default: its gossip address), as a
    service of the node, with ``security``'s checks.

    The server ends when the node closes. The address bound is recorded in
    ``node.http_addr`` and returned. The headless runtime and the dashboard both serve
    the API through here, so the two cannot drift apart.
    """
    addr: SocketAddress = await node.start_service(
        partial(serve_http, security=security), node, bind or node.gossip_addr
    )
    node.http_addr = addr
    return addr
