"""The headless runtime: a node and its HTTP API in Trio, no dashboard, membership on stderr.

It sits above gossip_tui.node and gossip_tui.api (it runs the one and serves the other)
and below the command line, which imports it only for ``--headless``: importing it loads
Trio. Turning settings into a ``NodeConfig`` and operator errors into one-line messages
stay in gossip_tui.cli.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

import trio

from gossip_tui._logging import configure_logging
from gossip_tui.node import log_lifecycle

if TYPE_CHECKING:
    from gossip_tui._config_file import CliSettings
    from gossip_tui.node import Node, NodeConfig

__all__ = ["OpenNode", "run_headless", "serve_headless"]

_log = logging.getLogger("gossip_tui.cli")

OpenNode = Callable[["NodeConfig"], AbstractAsyncContextManager["Node"]]


async def serve_headless(
    settings: CliSettings,
    config: NodeConfig,
    open_node: OpenNode,
    *,
    report_interval: float = 1.0,
    on_ready: Callable[[Node], Awaitable[None]] | None = None,
) -> None:
    """Run the node until SIGINT or SIGTERM, then close it and return.

    With HTTP on, the API is served over TCP where the settings say (``--http-addr``), as a
    service of the node (cancelled when the node closes), and ``node.http_addr`` tells
    where. The live nodes and their "bind" keys are logged at start, then each change of
    membership as it happens (``report_interval`` is no longer used; kept for callers).
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_node(config) as node:
            if settings.http:
                # Only here: the API brings hypercorn (and cattrs).
                from gossip_tui._http_settings import http_service

                await http_service(settings)(node)
            _forget_generated_sources()
            _log.info(
                "node %s gossiping on %s (udp); HTTP API %s",
                node.self_id,
                node.gossip_addr,
                f"on http://{node.http_addr}/" if node.http_addr else "off",
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(log_lifecycle, node)
                if on_ready is not None:
                    await on_ready(node)
                async for signum in signals:
                    _log.info("%s received: shutting down", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break


def _forget_generated_sources() -> None:
    """Drop the source attrs keeps in linecache for each method it generates, there for a
    debugger to step through them: ~0.22 MB of lines in a headless node (0.7% of its RSS),
    which nothing runs under a debugger. A traceback through one still names it."""
    import linecache

    for name in [name for name in linecache.cache if name.startswith("<attrs generated")]:
        del linecache.cache[name]


def run_headless(
    settings: CliSettings, config: NodeConfig, open_node: OpenNode | None = None
) -> None:
    """Log to stderr and run :func:`serve_headless` in Trio until a signal stops it.

    ``open_node`` defaults to the runtime's; errors (a busy port among them) propagate.
    """
    configure_logging(settings.log_level, settings.log_format)
    if open_node is None:
        from gossip_tui.node import open_node as runtime_open_node

        opener: OpenNode = runtime_open_node
    else:
        opener = open_node
    trio.run(serve_headless, settings, config, opener)
