"""Client commands: ``members``, ``get``, ``set``, ``delete`` and ``watch`` talk to a
running node over its HTTP API.

Standard library only (http.client), so they start in a blink: no Trio, no hypercorn.
Output is plain text for people or JSON for programs (``--format json``; ``watch`` prints
one JSON object a line); nothing is coloured. A failed request is one line on stderr and
exit status 1; bad usage is exit status 2 (from the command line).
"""

from __future__ import annotations

import http.client
import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO
from urllib.parse import quote, urlencode

import attrs

from gossip_tui._config_file import CliSettings
from gossip_tui._http_settings import (
    api_security,
    api_token,
    check_http_exposure,
    http_addr,
    http_service,
)
from gossip_tui.core.http_access import LOOPBACK_HOST
from gossip_tui.core.models import AddressError, SocketAddress

__all__ = [
    "MEMBER_STATUSES",
    "NODE_ENV",
    "ClientError",
    "NodeClient",
    "api_security",
    "api_token",
    "check_http_exposure",
    "client_for",
    "delete_key",
    "get_key",
    "http_addr",
    "http_service",
    "member_records",
    "members",
    "parse_node_address",
    "set_key",
    "watch",
]

NODE_ENV = "GOSSIP_TUI_NODE"
REQUEST_FAILED = 1
BAD_USAGE = 2
#: What ``--status`` accepts; ``status`` in the JSON of ``members`` is one of these or
#: ``unknown`` (a node known from a digest, not yet judged).
MEMBER_STATUSES = ("live", "dead", "left")
# The node's own liveness names, folded into the statuses operators filter on.
_STATUS_OF_LIVENESS = {
    "self": "live",
    "live": "live",
    "dead": "dead",
    "scheduled_for_deletion": "dead",
    "left": "left",
    "unknown": "unknown",
}


class ClientError(Exception):
    """Ends a client command with a one-line message and an exit status."""

    def __init__(self, message: str, code: int = REQUEST_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def parse_node_address(text: str) -> SocketAddress:
    """``ip:port``, or ``http://ip:port/`` as the node prints it."""
    bare = text.strip().removeprefix("http://").rstrip("/")
    try:
        return SocketAddress.parse(bare)
    except AddressError as exc:
        raise ClientError(f"invalid node address {text!r}: {exc}", BAD_USAGE) from None


@attrs.frozen
class NodeClient:
    """One node's HTTP API. ``token`` goes in ``Authorization: Bearer`` when set."""

    addr: SocketAddress
    token: str | None = attrs.field(default=None, repr=False)
    timeout: float = 10.0

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.addr.host, self.addr.port, timeout=timeout)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", **(extra or {})}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _unreachable(self, exc: OSError) -> ClientError:
        reason = exc.strerror or str(exc) or type(exc).__name__
        return ClientError(
            f"no node answers at http://{self.addr}/ ({reason}); is it running? "
            f"(choose another with --node or {NODE_ENV})"
        )

    def _failure(self, status: int, body: bytes) -> ClientError:
        try:
            message = str(json.loads(body)["error"])
        except (ValueError, KeyError, TypeError):
            message = body.decode("utf-8", "replace").strip()[:200] or "no details"
        if status == 401:
            given = "the API token was refused" if self.token else "the node wants an API token"
            return ClientError(f"{given} (--api-token-file or GOSSIP_TUI_API_TOKEN_FILE)")
        return ClientError(f"the node answered {status}: {message}")

    def request(
        self, method: str, path: str, query: dict[str, str] | None = None, body: Any = None
    ) -> Any:
        """The decoded JSON answer of a 2xx; else :class:`ClientError`."""
        target = path + (f"?{urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        extra = {"Content-Type": "application/json"} if data is not None else None
        connection = self._connection(self.timeout)
        try:
            connection.request(method, target, body=data, headers=self._headers(extra))
            response = connection.getresponse()
            payload = response.read()
        except OSError as exc:
            raise self._unreachable(exc) from None
        except http.client.HTTPException as exc:
            raise ClientError(f"bad answer from http://{self.addr}/: {exc!r}") from None
        finally:
            connection.close()
        if not 200 <= response.status < 300:
            raise self._failure(response.status, payload)
        try:
            return json.loads(payload)
        except ValueError:
            raise ClientError(f"http://{self.addr}{path} did not answer JSON") from None

    def events(self, prefix: str = "") -> Iterator[dict[str, Any]]:
        """The node's events (``GET /events``) until the stream ends."""
        target = "/events" + (f"?{urlencode({'prefix': prefix})}" if prefix else "")
        # No read timeout: a quiet cluster is silent for long (keep-alive lines aside).
        connection = self._connection(None)
        try:
            try:
                connection.request("GET", target, headers=self._headers())
                response = connection.getresponse()
            except OSError as exc:
                raise self._unreachable(exc) from None
            if response.status != 200:
                raise self._failure(response.status, response.read())
            try:
                for raw in response:
                    line = raw.strip()
                    if line:  # empty lines are keep-alives
                        yield json.loads(line)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                broke = f"the event stream of http://{self.addr}/ broke: {exc!r}"
                raise ClientError(broke) from None
        finally:
            connection.close()


def client_for(settings: CliSettings, node: str | None) -> NodeClient:
    """The client of the node at ``node`` (else the address the settings give the API),
    with the token of the settings' token file."""
    addr = parse_node_address(node) if node else http_addr(settings)
    if addr.ip.is_unspecified:  # a node listening on every address answers on the loopback
        addr = SocketAddress(LOOPBACK_HOST, addr.port)
    return NodeClient(addr, api_token(settings))


# --------------------------------------------------------------------------- commands


def member_records(nodes: dict[str, Any]) -> list[dict[str, Any]]:
    """The stable JSON of ``members``: one object per node, sorted by node id."""
    records = []
    for node in nodes["nodes"]:
        chitchat_id = node["chitchat_id"]
        records.append(
            {
                "node_id": chitchat_id["node_id"],
                "generation_id": chitchat_id["generation_id"],
                "gossip_advertise_addr": chitchat_id["gossip_advertise_addr"],
                "status": _STATUS_OF_LIVENESS.get(node["liveness"], "unknown"),
                "is_self": node["is_self"],
                "heartbeat": node["heartbeat"],
                "max_version": node["max_version"],
                "key_count": node["key_count"],
                "phi": node["phi"],
            }
        )
    return records


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def members(
    client: NodeClient, *, output_format: str = "table", status: str | None = None, out: TextIO
) -> None:
    records = member_records(client.request("GET", "/nodes"))
    if status is not None:
        records = [r for r in records if r["status"] == status]
    if output_format == "json":
        out.write(json.dumps(records, ensure_ascii=False) + "\n")
        return
    rows = [["NODE", "GENERATION", "ADDRESS", "STATUS", "HEARTBEAT", "KEYS"]]
    for r in records:
        name = r["node_id"] + (" (self)" if r["is_self"] else "")
        rows.append(
            [
                name,
                str(r["generation_id"]),
                r["gossip_advertise_addr"],
                r["status"],
                str(r["heartbeat"]),
                str(r["key_count"]),
            ]
        )
    out.write(_table(rows) + "\n")


def _key_path(key: str) -> str:
    if not key:
        raise ClientError("a key must not be empty", BAD_USAGE)
    return "/keys/" + quote(key, safe="")


def _expiry_line(answer: dict[str, Any]) -> str | None:
    """``expires in 29.5 s (at 2026-12-01T13:05:03.123Z)`` for a key that expires."""
    seconds, at = answer.get("expires_in"), answer.get("expires_at")
    if not isinstance(seconds, int | float) or not isinstance(at, str):
        return None
    return f"expires in {seconds:g} s (at {at})"


def get_key(
    client: NodeClient,
    key: str,
    *,
    node_id: str | None = None,
    output_format: str = "text",
    out: TextIO,
    err: TextIO | None = None,
) -> None:
    """Print the value of ``key`` (of this node, or of ``node_id`` as this node sees it).
    A key of this node that expires says when on ``err`` (stdout stays the bare value, for
    scripts); ``output_format="json"`` prints the whole answer as one JSON object."""
    if node_id is None:
        answer = client.request("GET", _key_path(key))
        if output_format == "json":
            out.write(json.dumps(answer, ensure_ascii=False) + "\n")
            return
        value = answer["value"]
        expiry = _expiry_line(answer)
        if expiry is not None and err is not None:
            err.write(expiry + "\n")
    else:
        detail = client.request("GET", "/nodes/" + quote(node_id, safe=""))
        found = detail["key_values"].get(key)
        if found is None or found["status"] == "Delete":
            raise ClientError(f"node {node_id!r} has no key {key!r}")
        value = found["value"]
    out.write(f"{value}\n")


def set_key(
    client: NodeClient,
    key: str,
    value: str,
    *,
    ttl: float | None = None,
    chitchat_ttl: bool = False,
) -> None:
    """Set ``key``; ``ttl``: seconds it lives; ``chitchat_ttl``: chitchat's mark (deleted
    after the node's grace period) instead."""
    if ttl is not None and chitchat_ttl:
        raise ClientError("--ttl and --chitchat-ttl do not go together", BAD_USAGE)
    body: dict[str, Any] = {"value": value}
    if ttl is not None:
        body["ttl"] = ttl
    elif chitchat_ttl:
        body["ttl"] = True
    client.request("PUT", _key_path(key), body=body)


def delete_key(client: NodeClient, key: str) -> None:
    client.request("DELETE", _key_path(key))


def _describe(event: dict[str, Any]) -> str:
    kind = event.get("type", "?")
    node = event.get("node") or event.get("chitchat_id") or {}
    name = node.get("node_id", "?") if isinstance(node, dict) else "?"
    if kind == "key_changed":
        return f"{kind} {name} {event['key']}={event['value']} (v{event['version']})"
    if kind == "key_deleted":
        why = " expired" if event.get("reason") == "expired" else ""
        return f"{kind} {name} {event['key']} (v{event['version']}){why}"
    if kind == "node_updated":
        return f"{kind} {name} max_version={event['max_version']}"
    if kind == "end":
        return f"{kind} {event.get('reason', '')}"
    return f"{kind} {name}"


def watch(
    client: NodeClient, *, prefix: str = "", output_format: str = "text", out: TextIO
) -> None:
    """Print the node's events as they come, until the node leaves or closes."""
    for event in client.events(prefix):
        if output_format == "json":
            out.write(json.dumps(event, ensure_ascii=False) + "\n")
        else:
            out.write(_describe(event) + "\n")
        out.flush()  # a pipe reader sees each event at once
        if event.get("type") == "end":
            return
    raise ClientError(f"the event stream of http://{client.addr}/ ended without a word")


def run(command: Any, *args: Any, **kwargs: Any) -> int:
    """Run a command; 0, or the one-line error on stderr and its exit status."""
    try:
        command(*args, **kwargs)
    except ClientError as exc:
        print(f"gossip-tui: error: {' '.join(exc.message.split())}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:  # `... | head`: the reader is done, so are we
        return 0
    except KeyboardInterrupt:
        return 130
    return 0
