"""A small ASGI application over a node: chitchat-test's routes and a REST API.

There is no web framework: a route table maps a path template and a method to a
synchronous handler ``(node, request) -> Response``. Handlers only call the node's
synchronous methods, so they run on the event loop without blocking it for long.

A write (PUT and DELETE, and chitchat-test's GET routes that write) is answered once the
node says it is durable (``await node.flush()``): with a state directory, a 2xx means
the change is on disk.

Every failure becomes a JSON body ``{"error": "..."}``: 404 for an unknown path, 405 for
a method the path does not take, 400 for a malformed request (a body the JSON parser
cannot take, a path or query string that is not UTF-8 once percent-decoded), 413 for a
body over :data:`MAX_BODY_SIZE` or a key-value too large for any gossip datagram (or that
the node refuses as too large), 503 for a change applied but not saved, 505 for a
request in another version than HTTP/1.x, and 500 for an unexpected exception (logged,
never propagated to the server or the node).

One concern, though over 400 lines: the routes and their handlers (security, events,
metrics and the OpenAPI document live in their own modules).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote_to_bytes

import attrs
import trio

from gossip_tui.core import converter as converters
from gossip_tui.core.converter import unstructure_node_id
from gossip_tui.core.errors import GossipTuiError
from gossip_tui.core.expiry import InvalidTtl, check_ttl
from gossip_tui.core.fields_repr import fields_repr
from gossip_tui.core.generations import restarts_in, superseded_in
from gossip_tui.core.models import ClusterSnapshot, Liveness, NodeSnapshot, VersionedValue
from gossip_tui.node import KeysNotSaved, KeyValueTooLarge, NodeIsLive

from ._counts import NodeCounts
from ._security import ApiSecurity
from ._types import ApiNode, Message, Receive, Scope, Send

# What a node serving the API does not need until a request does: the response records
# (16 attrs classes), the converter (cattrs, and the hooks it builds per record), the
# event stream, the metrics and the OpenAPI document. Each handler imports what it
# answers with, so a node starts serving without them (~30 ms of an HTTP node's start)
# and the first request that needs one builds it.
if TYPE_CHECKING:
    from ._records import ExpiryView, PutKeyBody

__all__ = ["MAX_BODY_SIZE", "ROUTES", "GossipApi", "HttpError", "Route", "make_app"]

_log = logging.getLogger("gossip_tui.api")

#: Request bodies larger than this are refused with 413.
MAX_BODY_SIZE = 64 * 1024

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# A ttl's flag words: its digits are seconds.
_TRUE_WORDS = _TRUE - {"1"}
_FALSE_WORDS = _FALSE - {"0"}


class HttpError(GossipTuiError):
    """Ends a request with ``status`` and the JSON body ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = tuple(headers)


@attrs.frozen
class Request:
    __repr__ = fields_repr
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # lower-cased names; the last of repeated headers wins
    body: bytes
    params: Mapping[str, str] = attrs.field(factory=dict)

    def query_param(self, name: str) -> str:
        values = self.query.get(name)
        if not values:
            raise HttpError(400, f"missing query parameter {name!r}")
        return values[-1]

    def query_ttl(self, name: str) -> bool | float:
        """A TTL in the query: a number of seconds, or a flag word (true: chitchat's
        delete-after-grace-period mark; false: none). Absent: False. Digits are seconds,
        so ``ttl=1`` is one second and ``ttl=0`` is refused (by the node's check)."""
        values = self.query.get(name)
        if values is None:
            return False
        text = values[-1].strip().lower()
        if text in _TRUE_WORDS:
            return True
        if text in _FALSE_WORDS:
            return False
        try:
            seconds = float(text)
        except ValueError:
            raise HttpError(
                400, f"query parameter {name!r} must be a number of seconds or true, not {text!r}"
            ) from None
        # Checked here, not only by the node: a JSON body's ttl wins over this one, and a
        # bad parameter is a bad request even then.
        try:
            return check_ttl(seconds)
        except InvalidTtl as exc:
            raise HttpError(400, f"query parameter {name!r}: {exc}") from None

    def query_bound(self, name: str, maximum: float, *, integer: bool) -> float | None:
        """An optional positive number at most ``maximum``; None when absent."""
        values = self.query.get(name)
        if values is None:
            return None
        text = values[-1].strip()
        try:
            number = int(text) if integer else float(text)
        except ValueError:
            number = math.nan
        if not 0 < number <= maximum:  # NaN fails too
            kind = "an integer" if integer else "a number"
            raise HttpError(
                400, f"query parameter {name!r} must be {kind} above 0, at most {maximum:g}"
            )
        return number

    def query_flag(self, name: str) -> bool:
        values = self.query.get(name)
        if values is None:
            return False
        text = values[-1].strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise HttpError(400, f"query parameter {name!r} must be true or false, not {text!r}")

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@attrs.frozen
class Response:
    __repr__ = fields_repr
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"
    # A streamed body: chunks sent as they come (chunked encoding), ``body`` unused.
    stream: Callable[[], AsyncIterator[bytes]] | None = None


Handler = Callable[[ApiNode, Request], Response]


@attrs.frozen
class Route:
    """A path template and its handlers by method.

    A template ending in ``{name}`` takes the whole rest of the path as ``name`` (slashes
    included, at least one character), so keys and node ids may hold any character.
    HEAD is answered like GET, except on the routes whose GET changes state (chitchat-test's
    ``/set_kv/`` and ``/mark_for_deletion/``).
    """

    __repr__ = fields_repr

    template: str
    methods: Mapping[str, Handler]
    documented: bool = True
    get_is_safe: bool = True

    def match(self, path: str) -> dict[str, str] | None:
        brace = self.template.find("{")
        if brace < 0:
            return {} if path == self.template else None
        prefix = self.template[:brace]
        if not path.startswith(prefix) or len(path) == len(prefix):
            return None
        return {self.template[brace + 1 : -1]: path[len(prefix) :]}

    def allowed(self) -> list[str]:
        methods = set(self.methods)
        if "GET" in methods and self.get_is_safe:
            methods.add("HEAD")
        return sorted(methods)

    def handler(self, method: str) -> Handler | None:
        if method == "HEAD" and self.get_is_safe:
            method = "GET"
        return self.methods.get(method)

    def writes(self, method: str) -> bool:
        """Whether ``method`` on this route changes the node's keys."""
        return method not in ("GET", "HEAD") or not self.get_is_safe


# --------------------------------------------------------------------------- responses


def json_response(value: Any, status: int = 200, *, pretty: bool = False) -> Response:
    return _json_data_response(converters.converter.unstructure(value), status, pretty=pretty)


def _json_data_response(data: Any, status: int = 200, *, pretty: bool = False) -> Response:
    """``data`` (JSON types already: dicts, lists, text, numbers) as a JSON response."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, indent=2 if pretty else None)
    return Response(status, text.encode())


def _error_response(error: HttpError) -> Response:
    from ._records import ErrorView

    response = json_response(ErrorView(error.message), error.status)
    return attrs.evolve(response, headers=error.headers)


# --------------------------------------------------------------------------- helpers


def _self_state(snapshot: ClusterSnapshot) -> NodeSnapshot:
    own = snapshot.node(snapshot.self_node)
    if own is None:  # a node always knows itself; guard against a broken runtime anyway
        raise RuntimeError("the node's snapshot does not hold the node itself")
    return own


def _live_value(snapshot: ClusterSnapshot, key: str) -> VersionedValue | None:
    value = _self_state(snapshot).key_values.get(key)
    if value is None or value.is_deleted:
        return None
    return value


def _expiry(node: ApiNode, key: str, taken_at: float) -> ExpiryView | None:
    from ._records import ExpiryView

    deadline = node.key_expiries().get(key)
    return None if deadline is None else ExpiryView.of(deadline, taken_at, time.time())


def _expiries(node: ApiNode, keys: Iterable[str], taken_at: float) -> dict[str, ExpiryView]:
    from ._records import ExpiryView

    deadlines = node.key_expiries()
    wall_now = time.time()
    return {
        key: ExpiryView.of(deadlines[key], taken_at, wall_now)
        for key in sorted(set(keys) & set(deadlines))
    }


def _write(node: ApiNode, key: str, value: str, *, ttl: bool | float) -> None:
    """``ttl``: True for chitchat's mark (set_with_ttl), a number for seconds to live."""
    try:
        if ttl is True:
            node.set_with_ttl(key, value)
        elif ttl is False:
            node.set(key, value)
        else:
            node.set(key, value, ttl=ttl)
    except KeyValueTooLarge as exc:
        raise HttpError(413, str(exc)) from None
    except ValueError as exc:  # e.g. an empty key, a ttl of 0 (InvalidTtl)
        raise HttpError(400, str(exc)) from None


def _describe_structure_error(exc: Exception) -> str:
    import cattrs

    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc, path="body"))
    return str(exc)


# --------------------------------------------------------------------------- handlers


def _index(node: ApiNode, _request: Request) -> Response:
    from ._records import ClusterStateView

    return json_response(ClusterStateView.of(node.snapshot()), pretty=True)


def _set_kv(node: ApiNode, request: Request) -> Response:
    from ._records import StatusView

    key = request.query_param("key")
    value = request.query_param("value")
    _write(node, key, value, ttl=request.query_ttl("ttl"))
    return json_response(StatusView())


def _mark_for_deletion(node: ApiNode, request: Request) -> Response:
    from ._records import StatusView

    key = request.query_param("key")
    if not key:
        raise HttpError(400, "a key must not be empty")
    # Like chitchat, marking a key that is absent (or already deleted) is not an error.
    if _live_value(node.snapshot(), key) is not None:
        node.delete(key)
    return json_response(StatusView())


def _list_nodes(node: ApiNode, _request: Request) -> Response:
    from ._records import NodeListView, NodeSummary

    snapshot = node.snapshot()
    # One row per node: a restarted node's older generations fold into its live one, which
    # says it restarted. GET / still lists every generation, as chitchat-test does.
    folded = superseded_in(snapshot.nodes)
    restarts = restarts_in(snapshot.nodes)
    nodes = sorted(
        (n for n in snapshot.nodes if n.node not in folded), key=lambda n: n.node.sort_key()
    )
    view = NodeListView(
        cluster_id=snapshot.cluster_id,
        self_node=snapshot.self_node,
        nodes=tuple(
            NodeSummary.of(n, snapshot.self_node, snapshot.taken_at, restarts.get(n.node))
            for n in nodes
        ),
    )
    return json_response(view)


def _preference(node: NodeSnapshot) -> tuple[bool, float, tuple[str, int, tuple[int, bytes, int]]]:
    heard = node.last_update if node.last_update is not None else float("-inf")
    return (node.liveness in (Liveness.SELF, Liveness.LIVE), heard, node.node.sort_key())


def _matching_nodes(snapshot: ClusterSnapshot, wanted: str) -> list[NodeSnapshot]:
    """The nodes ``wanted`` names: every generation of a bare name, or one full id."""
    matches = [n for n in snapshot.nodes if wanted in (n.node.node_id, str(n.node))]
    if not matches:
        raise HttpError(404, f"no node {wanted!r}")
    return matches


def _get_node(node: ApiNode, request: Request) -> Response:
    from ._records import NodeDetailView, NodeSummary

    snapshot = node.snapshot()
    # A bare name may match several generations of a restarted node: show the live one,
    # else the one heard from last. Not simply the highest generation: anyone can gossip a
    # made-up generation (2^64-1) of a real name, a ghost with no keys.
    found = max(_matching_nodes(snapshot, request.params["node_id"]), key=_preference)
    view = NodeDetailView(
        node=NodeSummary.of(
            found,
            snapshot.self_node,
            snapshot.taken_at,
            restarts_in(snapshot.nodes).get(found.node),
        ),
        key_values={k: found.key_values[k] for k in sorted(found.key_values)},
        # Deadlines are this node's own: a peer's keys show none.
        expiries=(
            _expiries(node, found.key_values, snapshot.taken_at)
            if found.node == snapshot.self_node
            else {}
        ),
    )
    return json_response(view)


def _forget_node(node: ApiNode, request: Request) -> Response:
    """Forget the dead and left generations the id names (a bare name: all of them),
    here only; 409 when it names only live nodes."""
    from ._records import ForgottenView

    wanted = request.params["node_id"]
    matches = _matching_nodes(node.snapshot(), wanted)
    gone = [n.node for n in matches if n.liveness not in (Liveness.SELF, Liveness.LIVE)]
    if not gone:
        raise HttpError(409, f"{wanted!r} is live: only a dead or left node can be forgotten")
    forgotten = []
    for candidate in sorted(gone):
        try:
            if node.forget(candidate):
                forgotten.append(candidate)
        except NodeIsLive:  # came back to life since the snapshot
            continue
    if not forgotten:
        raise HttpError(409, f"{wanted!r} is live: only a dead or left node can be forgotten")
    return json_response(ForgottenView(tuple(forgotten)))


def _list_keys(node: ApiNode, _request: Request) -> Response:
    from ._records import KeyListView

    snapshot = node.snapshot()
    own = _self_state(snapshot)
    keys = {k: own.key_values[k] for k in sorted(own.key_values)}
    live = {k: v for k, v in keys.items() if not v.is_deleted}
    view = KeyListView(
        chitchat_id=own.node, keys=live, expiries=_expiries(node, live, snapshot.taken_at)
    )
    return json_response(view)


def _get_key(node: ApiNode, request: Request) -> Response:
    from ._records import KeyView

    key = request.params["key"]
    snapshot = node.snapshot()
    value = _live_value(snapshot, key)
    if value is None:
        raise HttpError(404, f"no key {key!r}")
    expiry = _expiry(node, key, snapshot.taken_at)
    return json_response(
        KeyView(
            key,
            value.value,
            value.version,
            value.status,
            expires_at=None if expiry is None else expiry.expires_at,
            expires_in=None if expiry is None else expiry.expires_in,
        )
    )


def _put_body(request: Request) -> PutKeyBody:
    from ._records import PutKeyBody

    # Checked whatever the body: a malformed ttl is a bad request, not one to ignore.
    ttl = request.query_ttl("ttl")
    media = request.media_type
    if media == "application/json" or media.endswith("+json"):
        try:
            data = json.loads(request.body)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise HttpError(400, f"invalid JSON body: {exc}") from None
        except RecursionError:
            raise HttpError(400, "invalid JSON body: nested too deeply") from None
        if not isinstance(data, dict):
            raise HttpError(400, 'the JSON body must be an object like {"value": "..."}')
        try:
            return converters.converter.structure(data, PutKeyBody)
        except Exception as exc:
            raise HttpError(400, _describe_structure_error(exc)) from None
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, "the body is not valid UTF-8 text") from None
    return PutKeyBody(value=text, ttl=ttl)


def _put_key(node: ApiNode, request: Request) -> Response:
    from ._records import KeyWrittenView

    key = request.params["key"]
    body = _put_body(request)
    _write(node, key, body.value, ttl=body.ttl)
    expiry = _expiry(node, key, node.snapshot().taken_at)
    view = KeyWrittenView(
        key=key,
        value=body.value,
        ttl=body.ttl,
        expires_at=None if expiry is None else expiry.expires_at,
        expires_in=None if expiry is None else expiry.expires_in,
    )
    return json_response(view)


def _delete_key(node: ApiNode, request: Request) -> Response:
    from ._records import KeyDeletedView

    key = request.params["key"]
    after_ttl = request.query_flag("after_ttl")
    if _live_value(node.snapshot(), key) is None:
        raise HttpError(404, f"no key {key!r}")
    if after_ttl:
        node.delete_after_ttl(key)
    else:
        node.delete(key)
    return json_response(KeyDeletedView(key=key, after_ttl=after_ttl))


def _events(node: ApiNode, request: Request) -> Response:
    from ._events import MAX_EVENTS_LIMIT, MAX_EVENTS_TIMEOUT, event_lines
    from ._events import MEDIA_TYPE as EVENTS_MEDIA_TYPE

    values = request.query.get("prefix")
    prefix = values[-1] if values else ""
    # Optional bounds that end the stream (for scripts, and for testing it as a request
    # that answers): after ``limit`` events, or ``timeout`` seconds.
    limit = request.query_bound("limit", MAX_EVENTS_LIMIT, integer=True)
    timeout = request.query_bound("timeout", MAX_EVENTS_TIMEOUT, integer=False)
    return Response(
        200,
        b"",
        content_type=EVENTS_MEDIA_TYPE,
        stream=lambda: event_lines(
            node, prefix, limit=None if limit is None else int(limit), timeout=timeout
        ),
    )


def _metrics(node: ApiNode, _request: Request) -> Response:
    from ._metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
    from ._metrics import render_metrics

    text = render_metrics(node.snapshot(), node.stats)
    return Response(200, text.encode(), content_type=METRICS_CONTENT_TYPE)


def _health(node: ApiNode, _request: Request) -> Response:
    # _records.HealthView as the converter shows it, built by hand: /health is what a
    # supervisor or a load balancer asks a fresh node first, and through the converter
    # it cost that node cattrs, the response records and the converter's hooks (~80 M
    # instructions, two fifths of what its first request cost). The field order is
    # HealthView's; a test compares the bytes with the converter's for the same states.
    snapshot = node.snapshot()
    counts = NodeCounts.of(snapshot)
    body = {
        "status": "ok",
        "cluster_id": snapshot.cluster_id,
        "chitchat_id": unstructure_node_id(snapshot.self_node),
        "live_nodes": counts.live,
        "dead_nodes": counts.dead,
        "left_nodes": counts.left,
    }
    return _json_data_response(body)


_OPENAPI_BODY: bytes | None = None


def _openapi(_node: ApiNode, _request: Request) -> Response:
    global _OPENAPI_BODY
    if _OPENAPI_BODY is None:
        from ._openapi import openapi_document

        _OPENAPI_BODY = json.dumps(openapi_document(), indent=2).encode()
    return Response(200, _OPENAPI_BODY)


ROUTES: tuple[Route, ...] = (
    Route("/", {"GET": _index}),
    Route("/set_kv/", {"GET": _set_kv}, get_is_safe=False),
    Route("/set_kv", {"GET": _set_kv}, documented=False, get_is_safe=False),
    Route("/mark_for_deletion/", {"GET": _mark_for_deletion}, get_is_safe=False),
    Route("/mark_for_deletion", {"GET": _mark_for_deletion}, documented=False, get_is_safe=False),
    Route("/nodes", {"GET": _list_nodes}),
    Route("/nodes/{node_id}", {"GET": _get_node, "DELETE": _forget_node}),
    Route("/keys", {"GET": _list_keys}),
    Route("/keys/{key}", {"GET": _get_key, "PUT": _put_key, "DELETE": _delete_key}),
    Route("/events", {"GET": _events}),
    Route("/health", {"GET": _health}),
    Route("/metrics", {"GET": _metrics}),
    Route("/openapi.json", {"GET": _openapi}),
)


# --------------------------------------------------------------------------- ASGI


def _headers(scope: Scope) -> dict[str, str]:
    return {
        bytes(name).decode("latin-1").lower(): bytes(value).decode("latin-1")
        for name, value in scope.get("headers", ())
    }


_NON_ASCII = re.compile(rb"[\x80-\xff]")


def _path(scope: Scope) -> str:
    # The server's own decoding of the path replaces invalid UTF-8 with U+FFFD, so that
    # "%ff" and "%fe" would name the same key: decode the raw path strictly instead.
    raw = scope.get("raw_path")
    if raw is None:  # optional in ASGI
        return str(scope["path"])
    try:
        return unquote_to_bytes(bytes(raw)).decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, "the path is not valid UTF-8 once percent-decoded") from None


def _query(scope: Scope) -> dict[str, list[str]]:
    raw = bytes(scope.get("query_string", b""))
    # Bytes a client sent unencoded are taken as the UTF-8 they should be, like the
    # percent-encoded ones: escape them, then decode the whole strictly.
    escaped = _NON_ASCII.sub(lambda byte: b"%%%02X" % byte[0][0], raw).decode("ascii")
    try:
        return parse_qs(escaped, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise HttpError(400, "the query string is not valid UTF-8 once percent-decoded") from None


async def _read_body(headers: Mapping[str, str], receive: Receive) -> bytes | None:
    """The request body, or None when the client went away."""
    declared = headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > MAX_BODY_SIZE:
        raise HttpError(413, f"the request body exceeds {MAX_BODY_SIZE} bytes")
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if len(body) > MAX_BODY_SIZE:
            raise HttpError(413, f"the request body exceeds {MAX_BODY_SIZE} bytes")
        if not message.get("more_body", False):
            return bytes(body)


class GossipApi:
    """The ASGI application; build it with :func:`make_app`."""

    def __init__(
        self,
        node: ApiNode,
        routes: Iterable[Route] = ROUTES,
        security: ApiSecurity | None = None,
    ) -> None:
        self.node = node
        self.routes = tuple(routes)
        self.security = ApiSecurity() if security is None else security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1003})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = str(scope["method"]).upper()
        try:
            response = await self._respond(method, scope, receive)
        except HttpError as exc:
            response = _error_response(exc)
        except Exception:
            _log.exception("%s %s failed", method, scope.get("path"))
            response = _error_response(HttpError(500, "internal server error"))
        if response is None:
            return
        if response.stream is not None and method != "HEAD":
            await _send_stream(send, receive, response, response.stream)
            return
        await _send_response(send, response, head=method == "HEAD")

    async def _respond(self, method: str, scope: Scope, receive: Receive) -> Response | None:
        if str(scope.get("http_version", "1.1")) not in ("1.0", "1.1"):
            # What reaches us of HTTP/2's preface once the server no longer switches.
            raise HttpError(505, "only HTTP/1.1 is served")
        path = _path(scope)
        for route in self.routes:
            params = route.match(path)
            if params is not None:
                break
        else:
            raise HttpError(404, f"no route for {path!r}")
        handler = route.handler(method)
        if handler is None:
            allowed = ", ".join(route.allowed())
            raise HttpError(405, f"method {method} not allowed for {path!r}", [("allow", allowed)])
        headers = _headers(scope)
        refusal = self.security.refusal(headers, writes=route.writes(method))
        if refusal is not None:
            status, message = refusal
            extra = [("www-authenticate", 'Bearer realm="gossip-tui"')] if status == 401 else []
            raise HttpError(status, message, extra)
        query = _query(scope)
        body = await _read_body(headers, receive)
        if body is None:
            return None
        request = Request(method, path, query, headers, body, params)
        response = handler(self.node, request)
        if route.writes(method) and 200 <= response.status < 300:
            try:
                await self.node.flush()
            except KeysNotSaved as exc:
                raise HttpError(503, f"the change is applied but not saved: {exc}") from None
        return response


async def _send_response(send: Send, response: Response, *, head: bool) -> None:
    headers = [
        (b"content-type", f"{response.content_type}; charset=utf-8".encode()),
        (b"content-length", str(len(response.body)).encode()),
        (b"cache-control", b"no-store"),
        *((name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers),
    ]
    start: Message = {"type": "http.response.start", "status": response.status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": b"" if head else response.body})


async def _send_stream(
    send: Send,
    receive: Receive,
    response: Response,
    stream: Callable[[], AsyncIterator[bytes]],
) -> None:
    from ._events import end_line  # the one streamed route's, loaded by then

    headers = [
        (b"content-type", f"{response.content_type}; charset=utf-8".encode()),
        (b"cache-control", b"no-store"),
        # Tell proxies not to hold the lines back.
        (b"x-accel-buffering", b"no"),
    ]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})

    async def until_disconnect(cancel_scope: trio.CancelScope) -> None:
        # A client that went away must free its subscription: the server gives no error
        # on a send to a closed connection.
        while (await receive())["type"] != "http.disconnect":
            pass
        cancel_scope.cancel()

    last: bytes | None = None  # the final chunk, or None when there is nobody to tell
    async with trio.open_nursery() as nursery:
        nursery.start_soon(until_disconnect, nursery.cancel_scope)
        try:
            async for chunk in stream():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            last = b""
        except trio.Cancelled:
            if not nursery.cancel_scope.cancel_called:
                # Not the client gone: the server (with the node) is shutting down. End
                # the stream cleanly, as far as the connection still lets us, rather than
                # cut it mid-line.
                with trio.CancelScope(shield=True), trio.move_on_after(0.5):
                    await _end_stream(send, end_line("node closed"))
            raise
        except Exception:
            _log.exception("the event stream failed")
            last = end_line("internal error")
        nursery.cancel_scope.cancel()
    if last is not None:
        await _end_stream(send, last)


async def _end_stream(send: Send, last: bytes) -> None:
    try:
        await send({"type": "http.response.body", "body": last, "more_body": False})
    except Exception:  # the connection is already gone: nothing left to tell
        _log.debug("could not end the event stream", exc_info=True)


def make_app(node: ApiNode, security: ApiSecurity | None = None) -> GossipApi:
    """The ASGI application serving ``node``'s state and key-values.

    ``security`` defaults to no token and the checks of Host and Origin on.
    """
    return GossipApi(node, security=security)
