"""The API's access checks: a bearer token for writes, and no cross-site or rebound use.

A browser on the node's host is the attacker to think of. Any web page it opens can send
a GET to 127.0.0.1 (so chitchat-test's GET routes that write must refuse a cross-site
request, which browsers label with ``Origin`` and ``Sec-Fetch-Site``), and a page served
from a name the attacker re-points at 127.0.0.1 (DNS rebinding) can even read the answers,
unless the ``Host`` it sends, that name, is refused. Non-browser clients send neither
header and name the node by an address, so they pass.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import attrs

from gossip_tui.core.fields_repr import fields_repr

__all__ = ["ApiSecurity", "default_host_names"]

# Values of Sec-Fetch-Site that mean the request was made by the page itself or typed by
# the user; "same-site" also covers another port of the same host, another application.
_OWN_FETCH_SITES = frozenset({"same-origin", "none"})


def default_host_names() -> frozenset[str]:
    """Names the node answers to besides its addresses: localhost and the host's name."""
    names = {"localhost", "localhost.localdomain"}
    hostname = socket.gethostname().lower().rstrip(".")
    if hostname:
        names.add(hostname)
        names.add(hostname.split(".", 1)[0])
    return frozenset(names)


def _host_name(host_header: str) -> str | None:
    """The name part of a Host header (lower case, no port), or None when malformed."""
    text = host_header.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :] if end > 0 else ":bad"
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        return text[1:end]
    name, _, port = text.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".")


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _lower_names(names: Iterable[str] | None) -> frozenset[str] | None:
    return None if names is None else frozenset(name.lower().rstrip(".") for name in names)


@attrs.frozen
class ApiSecurity:
    """What the API checks before a handler runs.

    ``token``: with one, every route that changes state needs ``Authorization: Bearer
    <token>``; every route does with ``protect_reads``. ``allowed_hosts``: the names (not
    addresses: an IP literal cannot be rebound) a ``Host`` header may carry; None accepts
    any. ``check_origin``: refuse a write a browser labels cross-site.
    """

    __repr__ = fields_repr

    token: str | None = attrs.field(default=None, repr=False)
    protect_reads: bool = False
    allowed_hosts: frozenset[str] | None = attrs.field(
        factory=default_host_names, converter=_lower_names
    )
    check_origin: bool = True

    @classmethod
    def with_extra_hosts(cls, names: Iterable[str], **kwargs: object) -> ApiSecurity:
        """The default names plus ``names``; ``"*"`` among them accepts any host."""
        extra = {name.strip().lower().rstrip(".") for name in names if name.strip()}
        hosts = None if "*" in extra else default_host_names() | extra
        return cls(allowed_hosts=hosts, **kwargs)  # type: ignore[arg-type]

    def refusal(self, headers: Mapping[str, str], *, writes: bool) -> tuple[int, str] | None:
        """Why a request with these (lower-cased) headers is refused, as (status,
        message), or None when it may go on."""
        host = self._host_refusal(headers)
        if host is not None:
            return 403, host
        if writes and self.check_origin:
            origin = self._origin_refusal(headers)
            if origin is not None:
                return 403, origin
        guarded = self.token is not None and (writes or self.protect_reads)
        if guarded and not self._authorized(headers.get("authorization", "")):
            return 401, "missing or wrong API token (send Authorization: Bearer <token>)"
        return None

    def _host_refusal(self, headers: Mapping[str, str]) -> str | None:
        header = headers.get("host")
        # HTTP/1.0 clients may send no Host; a browser always sends one.
        if header is None or self.allowed_hosts is None:
            return None
        name = _host_name(header)
        if name is None:
            return "malformed Host header"
        if _is_ip_literal(name) or name in self.allowed_hosts:
            return None
        return f"host {name!r} is not a name of this node (see --http-allowed-hosts)"

    @staticmethod
    def _origin_refusal(headers: Mapping[str, str]) -> str | None:
        site = headers.get("sec-fetch-site", "").strip().lower()
        if site and site not in _OWN_FETCH_SITES:
            return f"cross-site write refused (Sec-Fetch-Site: {site})"
        origin = headers.get("origin")
        if origin is None:
            return None
        parts = urlsplit(origin.strip().lower())
        host = headers.get("host", "").strip().lower()
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.netloc != host:
            return f"cross-site write refused (Origin: {origin.strip()})"
        return None

    def _authorized(self, header: str) -> bool:
        assert self.token is not None
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        # Constant time: the comparison must not tell how much of a guess was right.
        return hmac.compare_digest(credentials.strip().encode(), self.token.encode())
