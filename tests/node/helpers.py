"""Helpers for node-level tests: start several nodes, wait for conditions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import trio

from gossip_tui.core.failure_detector import FailureDetectorConfig
from gossip_tui.core.models import SocketAddress
from gossip_tui.node import Node, NodeConfig, Transport, open_node

FAST_DETECTOR = FailureDetectorConfig(initial_interval=0.1, dead_node_grace_period=3600.0)


def fast_config(
    listen: str = "127.0.0.1:0",
    *,
    seeds: tuple[str, ...] = (),
    node_id: str | None = None,
    cluster_id: str = "testing",
    interval: float = 0.05,
    detector: FailureDetectorConfig = FAST_DETECTOR,
) -> NodeConfig:
    return NodeConfig(
        listen_addr=SocketAddress.parse(listen),
        seeds=seeds,
        node_id=node_id,
        generation=1,
        cluster_id=cluster_id,
        gossip_interval=interval,
        failure_detector=detector,
    )


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Check ``predicate`` every few milliseconds until it holds; fail after ``timeout``."""
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@asynccontextmanager
async def open_cluster(
    size: int,
    *,
    transport: Transport | None = None,
    listen_host: str = "127.0.0.1",
    cluster_id: str = "testing",
    interval: float = 0.05,
    seed_addr: str | None = None,
) -> AsyncIterator[list[Node]]:
    """``size`` nodes; the first is the seed of the others."""
    async with AsyncExitStack() as stack:
        nodes: list[Node] = []
        first = await stack.enter_async_context(
            open_node(
                fast_config(
                    f"{listen_host}:0",
                    node_id=f"{cluster_id}-0",
                    cluster_id=cluster_id,
                    interval=interval,
                    seeds=(seed_addr,) if seed_addr else (),
                ),
                transport=transport,
            )
        )
        nodes.append(first)
        for i in range(1, size):
            node = await stack.enter_async_context(
                open_node(
                    fast_config(
                        f"{listen_host}:0",
                        node_id=f"{cluster_id}-{i}",
                        cluster_id=cluster_id,
                        interval=interval,
                        seeds=(str(first.gossip_addr),),
                    ),
                    transport=transport,
                )
            )
            nodes.append(node)
        yield nodes


def node_task(node: Node, task: trio.lowlevel.Task) -> str | None:
    """The name of ``task`` when it is one of ``node``'s loops (its coroutine's ``self`` is
    the node), else None: for instruments that watch one node among several."""
    loop = task.name.rsplit(".", 1)[-1]
    if loop not in {"_gossip_loop", "_failure_detector_loop", "_receive_loop"}:
        return None
    frame = getattr(task.coro, "cr_frame", None)
    if frame is None or frame.f_locals.get("self") is not node:
        return None
    return loop


def all_see_each_other(nodes: list[Node]) -> bool:
    ids = {n.self_id for n in nodes}
    return all(set(n.live_nodes()) == ids for n in nodes)
