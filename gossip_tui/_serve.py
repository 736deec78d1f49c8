"""``gossip-tui serve``: the dashboard in a browser, for operators without a terminal on the host.

textual-serve (the optional extra ``serve``) answers HTTP and, for each browser session,
runs the dashboard command in a subprocess whose screen travels over a websocket. That
command is ``gossip-tui`` with the node options the operator gave, so the served
dashboard is the same one a terminal shows.

Whoever reaches the page drives the dashboard: it can set and delete keys, and stop the
node. So the page is served on the loopback unless the operator says otherwise.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from typing import Any

from gossip_tui.core.errors import GossipTuiError
from gossip_tui.core.http_access import is_loopback
from gossip_tui.core.models import SocketAddress

__all__ = [
    "DEFAULT_WEB_ADDR",
    "ServeError",
    "dashboard_command",
    "serve_dashboard",
    "web_exposure_error",
]

DEFAULT_WEB_ADDR = SocketAddress.parse("127.0.0.1:8000")
_EXTRA_HINT = "pip install 'gossip-tui[serve]'"


class ServeError(GossipTuiError):
    """The page cannot be served (textual-serve missing, an exposed address refused)."""


def web_exposure_error(addr: SocketAddress, *, insecure: bool) -> str | None:
    """Why serving the dashboard on ``addr`` is refused, or None when it may start."""
    if is_loopback(addr) or insecure:
        return None
    return (
        f"refusing to serve the dashboard on {addr}: anyone who reaches it could change the "
        "cluster and stop the node; pass --insecure-web to do it anyway"
    )


def dashboard_command(node_args: Sequence[str]) -> str:
    """The shell command textual-serve runs per session: this Python, this package, the
    operator's node options."""
    return shlex.join([sys.executable, "-m", "gossip_tui", *node_args])


def _server_class() -> Any:
    try:
        from textual_serve.server import Server
    except ModuleNotFoundError as exc:
        raise ServeError(
            f"serve needs textual-serve ({exc.name} is not installed): {_EXTRA_HINT}"
        ) from None
    return Server


def serve_dashboard(
    node_args: Sequence[str], web_addr: SocketAddress, *, insecure: bool = False
) -> int:
    """Serve the dashboard until Ctrl-C or SIGTERM; the exit code."""
    problem = web_exposure_error(web_addr, insecure=insecure)
    if problem is not None:
        raise ServeError(problem)
    if web_addr.port == 0:  # the page names its own address for the websocket
        raise ServeError(f"--web-addr needs a port: {web_addr}")
    server_class = _server_class()
    command = dashboard_command(node_args)
    public_host = f"[{web_addr.host}]" if web_addr.ip.version == 6 else web_addr.host
    server = server_class(
        command,
        host=web_addr.host,
        port=web_addr.port,
        title="gossip-tui",
        public_url=f"http://{public_host}:{web_addr.port}",
    )
    server.serve()
    return 0
