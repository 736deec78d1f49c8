"""Drive an ASGI application in-process: one request, the whole response."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any
from urllib.parse import quote

import attrs
import trio

from gossip_tui.api import GossipApi


@attrs.frozen
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers["content-type"].startswith("application/json")
        return json.loads(self.body)


async def acall(
    app: GossipApi,
    method: str,
    path: str,
    *,
    query: str | bytes = "",
    body: bytes | Sequence[bytes] = b"",
    headers: Iterable[tuple[str, str]] = (),
    disconnect: bool = False,
    raw_path: bytes | None = None,
    http_version: str = "1.1",
) -> Reply | None:
    """``raw_path`` replaces the percent-encoding of ``path`` the client would send (the
    server's lossy decoding of it stays in the scope's ``path``, as hypercorn's does)."""
    chunks = [body] if isinstance(body, bytes) else list(body)
    pending: list[dict[str, Any]] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    if disconnect:
        pending = [*pending[:-1], {"type": "http.disconnect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": http_version,
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": quote(path).encode() if raw_path is None else raw_path,
        "query_string": query if isinstance(query, bytes) else query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 10000),
    }
    with trio.fail_after(5):
        await app(scope, receive, send)  # type: ignore[arg-type]
    if not sent:
        return None
    start, *bodies = sent
    assert start["type"] == "http.response.start"
    assert all(b["type"] == "http.response.body" for b in bodies)
    return Reply(
        status=start["status"],
        headers={k.decode(): v.decode() for k, v in start["headers"]},
        body=b"".join(b.get("body", b"") for b in bodies),
    )


def call(app: GossipApi, method: str, path: str, **kwargs: Any) -> Reply:
    reply = trio.run(partial(acall, app, method, path, **kwargs))
    assert reply is not None, "the application sent no response"
    return reply
