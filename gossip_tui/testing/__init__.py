"""The test kit of gossip-tui, as trio.testing is to trio: what tests and scripts use to run
nodes without a real network, with faults, or without a node at all.

- :class:`MemoryNetwork` (and its :class:`MemoryTransport`): a loopback network in memory,
  deterministic under trio's MockClock, with :class:`LinkFaults` per directed link.
- :func:`decide_fate`: the one fault decision (loss, duplication, corruption, delay) for a
  datagram on a link, given a seeded RNG; the in-memory network and the proxy both use it.
- :func:`open_proxy` / :class:`FaultProxy` / :class:`FaultController`: the same faults on
  real UDP, one proxy per node on 127.0.0.x (``scripts/fault_proxy.py`` drives them from
  text commands).
- :class:`LoopbackOnlyTransport` and :func:`require_loopback`: nothing is bound or sent
  outside 127.0.0.0/8.
- :class:`FakeCluster` / :class:`FakeNode`: an in-memory stand-in for running nodes, for
  the HTTP API and the dashboard.

The product never imports this package (tests/core/test_import_hygiene.py checks it); it
may import the core and the node runtime, which it stands beside.
"""

from ._fake_node import (
    FIXED_GENERATION,
    FakeCluster,
    FakeNode,
    FakeNodeConfig,
    Member,
    crashing_open_node,
    fake_open_node,
)
from ._faults import Delivery, Fate, LinkFaults, decide_fate, flip_bit
from ._loopback import (
    LOOPBACK,
    PROXY_HOST_BASE,
    LoopbackOnlySocket,
    LoopbackOnlyTransport,
    NotLoopback,
    is_loopback,
    proxy_host,
    require_loopback,
)
from ._memory_network import MemoryNetwork, MemorySocket, MemoryTransport
from ._proxy import (
    FaultController,
    FaultProxy,
    ProxyStats,
    message_addresses,
    names_only_loopback,
    open_proxy,
)

__all__ = [
    "FIXED_GENERATION",
    "LOOPBACK",
    "PROXY_HOST_BASE",
    "Delivery",
    "FakeCluster",
    "FakeNode",
    "FakeNodeConfig",
    "Fate",
    "FaultController",
    "FaultProxy",
    "LinkFaults",
    "LoopbackOnlySocket",
    "LoopbackOnlyTransport",
    "Member",
    "MemoryNetwork",
    "MemorySocket",
    "MemoryTransport",
    "NotLoopback",
    "ProxyStats",
    "crashing_open_node",
    "decide_fate",
    "fake_open_node",
    "flip_bit",
    "is_loopback",
    "message_addresses",
    "names_only_loopback",
    "open_proxy",
    "proxy_host",
    "require_loopback",
]
