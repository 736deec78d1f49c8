"""Serving the API with hypercorn's Trio worker."""

from __future__ import annotations

import importlib
import logging
import socket
import sys
import types
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, NewType, Protocol

import trio

from gossip_tui.core.models import SocketAddress

from ._security import ApiSecurity
from ._types import ApiNode

if TYPE_CHECKING:
    import hypercorn.config

__all__ = ["ServedNode", "serve_http", "serve_node_http"]

_log = logging.getLogger("gossip_tui.api.http")
_BACKLOG = 100


# What hypercorn's Trio worker imports but serving HTTP/1.1 without TLS never runs: HTTP/2
# (h2, hpack, hyperframe, priority: the API refuses h2c and the preface, see
# _serve_http11_only), the websocket stream (wsproto: the API refuses websockets, so it
# is built for a websocket request only, to answer it as before), the multiprocessing
# event of hypercorn's own multi-worker runner, logging.config and tomllib (for log and
# config files, never given), the statsd logger (only with a statsd host, never given).
# Together ~40 ms of every HTTP node's start. Each module is stood in for by one whose
# names, the ones hypercorn takes from it, import the real module and call the real name
# on first use (h2.events is only named in annotations).
# The stand-ins leave sys.modules once hypercorn is imported (a synchronous moment on the
# thread that serves, which runs nothing else meanwhile): whoever imports one of these
# modules later gets the real one.
_DEFERRED: dict[str, tuple[str, ...]] = {
    "hypercorn.protocol.h2": ("H2Protocol",),
    "hypercorn.protocol.ws_stream": ("WSStream",),
    "h2.events": (),
    "multiprocessing.synchronize": ("Event",),
    "logging.config": ("dictConfig", "fileConfig"),
    "tomllib": ("load",),
    "hypercorn.trio.statsd": ("StatsdLogger",),
}

# hypercorn's typing module (TypedDicts and Protocols, ~2 ms to build), whose names the
# worker's modules use only in annotations (postponed), in cast() and in a channel's
# type parameter, except ConnectionState, a NewType they call: it stands in as one.
_TYPING = "hypercorn.typing"
_TYPING_NAMES = (
    "AppWrapper",
    "ASGIFramework",
    "ASGIReceiveCallable",
    "ASGIReceiveEvent",
    "ASGISendCallable",
    "ASGISendEvent",
    "Event",
    "Framework",
    "H11SendableEvent",
    "HTTPResponseStartEvent",
    "HTTPScope",
    "LifespanScope",
    "LifespanState",
    "Scope",
    "SingleTask",
    "TaskGroup",
    "WorkerContext",
    "WSGIFramework",
)


def _built_on_first_use(module: str, name: str) -> type:
    """A stand-in for ``module.name``: calling it imports the real one and calls that."""

    def build(_cls: type, *args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    return type(name, (), {"__new__": build, "__module__": module})


@contextmanager
def _deferred_imports() -> Iterator[None]:
    stand_ins = [module for module in _DEFERRED if module not in sys.modules]
    for module in stand_ins:
        stand_in = types.ModuleType(module)
        for name in _DEFERRED[module]:
            setattr(stand_in, name, _built_on_first_use(module, name))
        sys.modules[module] = stand_in
    if _TYPING not in sys.modules:
        stand_in = types.ModuleType(_TYPING)
        vars(stand_in).update(
            dict.fromkeys(_TYPING_NAMES, Any),
            ConnectionState=NewType("ConnectionState", dict[str, Any]),
        )
        sys.modules[_TYPING] = stand_in
        stand_ins.append(_TYPING)
    try:
        yield
    finally:
        for module in stand_ins:
            del sys.modules[module]


def _import_worker() -> tuple[
    type[hypercorn.config.Config],
    type[hypercorn.config.Sockets],
    Callable[..., Awaitable[None]],
    Callable[..., Any],
]:
    """hypercorn's Config, Sockets, Trio worker_serve and wrap_app, set to serve HTTP/1.1
    only, imported without what HTTP/1.1 in cleartext never runs (see _DEFERRED)."""
    imported_before = set(sys.modules)
    try:
        with _deferred_imports():
            from hypercorn.config import Config, Sockets
            from hypercorn.trio.run import worker_serve
            from hypercorn.utils import wrap_app
    except (ImportError, AttributeError):
        # A hypercorn release that takes other names from a deferred module: forget what
        # this attempt half-imported and import hypercorn whole. Such a node starts ~40 ms
        # dearer and serves exactly the same.
        for module in set(sys.modules) - imported_before:
            if module.partition(".")[0] == "hypercorn":
                del sys.modules[module]
        from hypercorn.config import Config, Sockets
        from hypercorn.trio.run import worker_serve
        from hypercorn.utils import wrap_app
    _serve_http11_only()
    return Config, Sockets, worker_serve, wrap_app


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
    when ``bind`` asks for port 0) once the socket accepts connections. A busy address
    raises :class:`OSError` (``EADDRINUSE``) before anything starts. ``security`` is the
    token and the Host and Origin checks (see :class:`ApiSecurity`; the default has no
    token).

    hypercorn (and the application) is started when the first connection waits: a node
    that nobody asks anything does without it (~30 ms of every HTTP node's start), and
    the kernel holds that connection in the socket's backlog meanwhile, so the first
    request is answered as every other, a few milliseconds later.
    """
    # We bind the socket ourselves and hand it to hypercorn's Trio worker: a busy port is
    # then a plain OSError (not wrapped in hypercorn's nurseries), we know the port chosen
    # for port 0, and the socket is closed here however the server ends.
    sock, actual = _listening_socket(bind)
    with sock:
        # hypercorn's own words, said when it starts, which is now later (see
        # _AnnouncedLogger).
        _log.info("Running on http://%s (CTRL + C to quit)", _url_authority(actual))
        task_status.started(actual)
        await trio.lowlevel.wait_readable(sock)
        Config, Sockets, worker_serve, wrap_app = _import_worker()
        from ._app import make_app  # as hypercorn: on the first connection (see gossip_tui.api)

        config = Config()
        config.errorlog = _log
        config.accesslog = None
        config.graceful_timeout = 1.0
        config.logger_class = _announced_logger_class(config.logger_class)
        app: Any = make_app(
            node, security
        )  # hypercorn types apps as a union of TypedDict signatures
        sockets = Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[])
        # No shutdown trigger: the server runs until the surrounding scope is cancelled.
        await worker_serve(wrap_app(app, 0, "asgi"), config, sockets=sockets)


def _url_authority(addr: SocketAddress) -> str:
    # As hypercorn writes a bound address: [v6]:port.
    return f"[{addr.host}]:{addr.port}" if addr.ip.version == 6 else f"{addr.host}:{addr.port}"


def _announced_logger_class(logger_class: type[Any]) -> type[Any]:
    """hypercorn's logger class, less the "Running on" line it logs as it starts:
    serve_http said it when the socket began to listen, before hypercorn was imported."""

    class _AnnouncedLogger(logger_class):  # type: ignore[misc]
        async def info(self, message: str, *args: Any, **kwargs: Any) -> None:
            if message.startswith("Running on "):
                return
            await super().info(message, *args, **kwargs)

    return _AnnouncedLogger


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
