"""A demo worker: some of the demo's peers in a process of their own.

Run as ``python -m gossip_tui.ui.demo_worker`` by
:class:`gossip_tui.ui.demo_workers.WorkerDemoCluster`.
200 nodes in one Trio run kept one core busy while the other idled (the demo formed in ~7 s,
round after round late); a worker per core runs its share of the peers in its own Trio run,
over real UDP on 127.0.0.1, sharing frozen objects among them as the in-process demo does.

One JSON object a line each way. On stdin, from the dashboard's process:

* first ``{"config": <base64 pickle of the peers' config>, "nodes": N, "cluster_size": M,
  "views_every": s|null}`` (``nodes`` sizes the shared objects; ``cluster_size``, every node
  of the demo, tells a peer when it sees them all and may slow down, demo.calm_when_formed;
  ``views_every`` asks for each peer's view that often);
* ``{"start": i, "node_id": str|null, "listen_addr": "ip:port", "generation": int|null,
  "seeds": [...]}`` starts peer ``i``; ``{"stop": i}`` stops it, as a crash would;
* ``{"tune": true}`` once every peer is up: retune the collector (demo._spare_the_collector).

On stdout: ``{"up": i, "node_id", "generation", "addr"}``, ``{"down": i}``, ``{"failed": i,
"error"}`` and ``{"views": [[i, live, dead, rounds, datagrams_out, datagrams_in,
interval_ms], ...]}``.

The worker ends when its stdin reaches end-of-input: the dashboard closes it on exit, and
the kernel closes it when the dashboard dies however it dies, so no worker outlives it.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import sys
from collections.abc import AsyncIterator
from typing import Any

import attrs
import trio

from gossip_tui.core.codec import keep_repeated_syns
from gossip_tui.core.models import SocketAddress
from gossip_tui.ui._node_api import NodeHandle, default_node_factory
from gossip_tui.ui.demo import (
    DEMO_SYN_CACHE_BYTES,
    _spare_the_collector,
    calm_when_formed,
    demo_shared_objects,
    live_count,
)


async def read_lines(stream: trio.abc.ReceiveStream) -> AsyncIterator[bytes]:
    """The stream's lines (without their newline) until end-of-input."""
    pending = b""
    while chunk := await stream.receive_some(65_536):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield line
    if pending.strip():
        yield pending


def _write(record: dict[str, Any]) -> None:
    # A few hundred bytes a line at most, read at once by the dashboard: a blocking write is
    # never held up for long.
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def _view(index: int, node: Any) -> list[int]:
    stats = getattr(node, "stats", None)
    return [
        index,
        live_count(node),
        len(node.dead_nodes()),
        getattr(stats, "rounds", 0),
        getattr(stats, "datagrams_out", 0),
        getattr(stats, "datagrams_in", 0),
        round(1000 * getattr(getattr(node, "config", None), "gossip_interval", 0)),
    ]


async def serve(stdin: trio.abc.ReceiveStream) -> None:
    lines = read_lines(stdin)
    header = json.loads(await anext(lines))
    base = pickle.loads(base64.b64decode(header["config"]))
    shared = demo_shared_objects(int(header["nodes"]))
    views_every: float | None = header.get("views_every")
    cluster_size = int(header["cluster_size"])
    factory = default_node_factory()
    keep_repeated_syns(DEMO_SYN_CACHE_BYTES)
    scopes: dict[int, trio.CancelScope] = {}
    nodes: dict[int, NodeHandle] = {}

    async def run_peer(request: dict[str, Any]) -> None:
        index = int(request["start"])
        config = attrs.evolve(
            base,
            node_id=request["node_id"],
            listen_addr=SocketAddress.parse(request["listen_addr"]),
            generation=request["generation"],
            seeds=tuple(request["seeds"]),
        )
        scope = trio.CancelScope()
        scopes[index] = scope
        try:
            with scope:
                async with factory(config) as node:
                    state = getattr(getattr(node, "engine", None), "state", None)
                    if state is not None:
                        state.shared = shared
                    nodes[index] = node
                    ident = node.self_id
                    _write(
                        {
                            "up": index,
                            "node_id": ident.node_id,
                            "generation": ident.generation,
                            "addr": str(ident.gossip_addr),
                        }
                    )
                    await calm_when_formed(node, cluster_size)
                    await trio.sleep_forever()
        except Exception as error:  # one peer's failure must not end the others
            _write({"failed": index, "error": repr(error)})
        finally:
            nodes.pop(index, None)
            if scopes.get(index) is scope:
                del scopes[index]
        _write({"down": index})

    async def report_views(every: float) -> None:
        while True:
            await trio.sleep(every)
            _write({"views": [_view(index, node) for index, node in list(nodes.items())]})

    async with trio.open_nursery() as nursery:
        if views_every:
            nursery.start_soon(report_views, float(views_every))
        async for line in lines:
            request = json.loads(line)
            if "start" in request:
                nursery.start_soon(run_peer, request)
            elif "stop" in request:
                scope = scopes.get(int(request["stop"]))
                if scope is not None:
                    scope.cancel()
            elif request.get("tune"):
                _spare_the_collector()
        # End of input: the dashboard is gone or done with us.
        nursery.cancel_scope.cancel()


async def _main() -> None:
    # A duplicate, so that Trio's non-blocking mode is on a descriptor of our own.
    await serve(trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())))


# How much lower than the dashboard's a worker's scheduling priority is. While 200 peers
# form at the demo's 0.5 s rounds they keep both cores busy (demo_scale.py: ~1.95 CPU-s a
# second, for as long as it ran before peers calmed once formed, demo.PEER_CALM_INTERVAL);
# at the same priority the dashboard's keys and node 0 would wait behind them.
WORKER_NICENESS = 10


def main() -> int:
    os.nice(WORKER_NICENESS)
    trio.run(_main)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
