"""Who may reach a node's HTTP API: the default bind address, the exposure rule, tokens.

Pure: the command line (before Trio is imported), the API and the client commands share it.
"""

from __future__ import annotations

import ipaddress

from .models import SocketAddress

__all__ = [
    "LOOPBACK_HOST",
    "ApiTokenError",
    "default_http_addr",
    "exposure_error",
    "is_loopback",
    "parse_api_token",
]

LOOPBACK_HOST = ipaddress.ip_address("127.0.0.1")


class ApiTokenError(ValueError):
    """A token file that cannot be used; the message is one line."""


def is_loopback(addr: SocketAddress) -> bool:
    return addr.ip.is_loopback


def default_http_addr(listen_addr: SocketAddress) -> SocketAddress:
    """Where the API listens when ``--http-addr`` is not given.

    The gossip address when it is a loopback one (chitchat-test serves both there), else
    127.0.0.1 on the gossip port: a node gossiping on a public address never exposes its
    API by accident.
    """
    if is_loopback(listen_addr):
        return listen_addr
    return SocketAddress(LOOPBACK_HOST, listen_addr.port)


def exposure_error(http_addr: SocketAddress, *, has_token: bool, insecure: bool) -> str | None:
    """Why serving the API on ``http_addr`` is refused, or None when it may start.

    Off the loopback, anyone who can reach the address could write keys: a token is
    required, unless the operator says ``--insecure-http``.
    """
    if is_loopback(http_addr) or has_token or insecure:
        return None
    return (
        f"refusing to serve the HTTP API on {http_addr} without --api-token-file "
        "(anyone who reaches it could change the cluster); pass --insecure-http to do it anyway"
    )


def parse_api_token(text: str, origin: str) -> str:
    """The token in a token file's text: one line of printable ASCII, at least 16 chars.

    Kept strict so that the Authorization header can carry it verbatim and a file holding
    something else (a key file, an empty file) is caught at start, not at the first write.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise ApiTokenError(f"{origin}: expected one line holding the API token")
    token = lines[0]
    if not all("\x21" <= char <= "\x7e" for char in token):
        raise ApiTokenError(f"{origin}: the API token must be printable ASCII without spaces")
    if len(token) < 16:
        raise ApiTokenError(f"{origin}: the API token must be at least 16 characters long")
    return token
