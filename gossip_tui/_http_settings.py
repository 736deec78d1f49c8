"""The HTTP API's settings as the node and the client commands both read them.

Beside gossip_tui.client, not in it: a node that serves the API reads these settings, and
the client package brings http.client and email (~15 ms of every HTTP node's start).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from gossip_tui._config_file import CliSettings, SettingsError
from gossip_tui.core.errors import os_error_in
from gossip_tui.core.http_access import (
    ApiTokenError,
    default_http_addr,
    exposure_error,
    parse_api_token,
)
from gossip_tui.core.models import SocketAddress

if TYPE_CHECKING:
    from gossip_tui.api import ApiSecurity

__all__ = ["api_security", "api_token", "check_http_exposure", "http_addr", "http_service"]


def http_addr(settings: CliSettings) -> SocketAddress:
    """Where the node serves its API: ``--http-addr``, else the default for its gossip
    address (the loopback one, or 127.0.0.1 on the gossip port)."""
    return settings.http_addr or default_http_addr(settings.listen_addr)


def api_token(settings: CliSettings) -> str | None:
    path = settings.api_token_file
    if path is None:
        return None
    try:
        return parse_api_token(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read API token file {path}: {exc}") from None
    except ApiTokenError as exc:
        raise SettingsError(str(exc)) from None


def check_http_exposure(settings: CliSettings) -> None:
    """Refuse (one line, usage error) to serve the API off the loopback without a token."""
    if not settings.http:
        return
    problem = exposure_error(
        http_addr(settings),
        has_token=settings.api_token_file is not None,
        insecure=settings.insecure_http,
    )
    if problem is not None:
        raise SettingsError(problem)


def api_security(settings: CliSettings) -> ApiSecurity:
    from gossip_tui.api import ApiSecurity

    return ApiSecurity.with_extra_hosts(
        settings.http_allowed_hosts,
        token=api_token(settings),
        protect_reads=settings.api_token_protects_reads,
    )


def http_service(settings: CliSettings) -> Any:
    """``async (node) -> SocketAddress``: serve the API as a service of ``node``, where and
    how the settings say (for the headless runtime and the dashboard)."""
    from gossip_tui.api import serve_node_http

    security = api_security(settings)

    async def serve(node: Any) -> SocketAddress:
        # From the address bound, not the one asked: port 0 means the port gossip got.
        addr = settings.http_addr or default_http_addr(node.gossip_addr)
        try:
            return await serve_node_http(node, addr, security=security)
        except (OSError, ExceptionGroup) as error:
            # Asked for any port, the node got a UDP one whose TCP twin another program may
            # hold (a client connection's ephemeral port, on a busy host): any TCP port
            # serves then, and node.http_addr says which. A port asked for stays an error.
            if (
                settings.http_addr is not None
                or settings.listen_addr.port != 0
                or os_error_in(error, (errno.EADDRINUSE,)) is None
            ):
                raise
            return await serve_node_http(node, SocketAddress(addr.ip, 0), security=security)

    return serve
