"""A deterministic, in-memory cluster of engines driven by a manual clock.

Every message goes through the real codec, so the simulation exercises exactly what
would cross the wire. Delivery is instantaneous and in order; a node can be silenced
(it neither sends nor receives) to watch the others declare it dead.
"""

from __future__ import annotations

import ipaddress
import random
from collections import deque
from collections.abc import Iterable

from .codec import encode
from .engine import GossipEngine, LivenessChanges
from .failure_detector import FailureDetectorConfig
from .models import NodeId, SocketAddress
from .receive import receive_datagram


class ManualClock:
    """Time that moves only when told to."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sim_address(index: int) -> SocketAddress:
    return SocketAddress(ipaddress.IPv4Address("127.0.0.1"), 20_000 + index)


class Simulation:
    def __init__(
        self,
        size: int,
        *,
        seed: int = 0,
        gossip_interval: float = 1.0,
        cluster_id: str = "sim",
        failure_detector: FailureDetectorConfig | None = None,
        marked_for_deletion_grace_period: float = 3600.0,
        seeds: Iterable[int] = (0,),
    ) -> None:
        self.clock = ManualClock()
        self.gossip_interval = gossip_interval
        self.rng = random.Random(seed)
        seed_addrs = [sim_address(i) for i in seeds]
        self.engines: dict[SocketAddress, GossipEngine] = {}
        self.silenced: set[SocketAddress] = set()
        self.datagrams = 0
        self.bytes = 0
        self.liveness_log: list[tuple[float, SocketAddress, LivenessChanges]] = []
        for index in range(size):
            addr = sim_address(index)
            node = NodeId(f"node-{index}", 1, addr)
            self.engines[addr] = GossipEngine(
                node,
                cluster_id,
                now=self.clock.now,
                failure_detector=failure_detector,
                marked_for_deletion_grace_period=marked_for_deletion_grace_period,
                initial_key_values={"bind": str(addr)},
                seed_addrs=seed_addrs,
                rng=random.Random(self.rng.getrandbits(64)),
            )

    def engine(self, index: int) -> GossipEngine:
        return self.engines[sim_address(index)]

    def silence(self, index: int) -> None:
        self.silenced.add(sim_address(index))

    def _deliver(self, sender: SocketAddress, target: SocketAddress, datagram: bytes) -> None:
        queue: deque[tuple[SocketAddress, SocketAddress, bytes]] = deque(
            [(sender, target, datagram)]
        )
        while queue:
            src, dst, data = queue.popleft()
            self.datagrams += 1
            self.bytes += len(data)
            engine = self.engines.get(dst)
            if engine is None or dst in self.silenced or src in self.silenced:
                continue
            reply = receive_datagram(engine, data, self.clock.now).reply
            if reply is not None:
                queue.append((dst, src, encode(reply)))

    def round(self) -> None:
        """One gossip interval: every node that is not silenced gossips once."""
        self.clock.advance(self.gossip_interval)
        now = self.clock.now
        order = list(self.engines)
        self.rng.shuffle(order)
        for addr in order:
            if addr in self.silenced:
                continue
            engine = self.engines[addr]
            for target in engine.start_round(now).targets.all():
                self._deliver(addr, target, encode(engine.create_syn(now)))
            changes = engine.update_liveness(now).liveness
            if changes:
                self.liveness_log.append((now, addr, changes))

    def run(self, rounds: int) -> None:
        for _ in range(rounds):
            self.round()

    def active(self) -> list[GossipEngine]:
        return [e for a, e in self.engines.items() if a not in self.silenced]

    def converged(self) -> bool:
        """Every active node holds the same key-values for every active node."""
        active = self.active()
        ids = [e.self_id for e in active]
        for node in ids:
            views = []
            for engine in active:
                state = engine.state.node_state(node)
                if state is None:
                    return False
                views.append((state.max_version, dict(state.visible_items())))
            if any(view != views[0] for view in views[1:]):
                return False
        return True

    def rounds_until(self, predicate: object, limit: int) -> int | None:
        """Run rounds until ``predicate()`` is true; the count, or None past ``limit``."""
        assert callable(predicate)
        for count in range(limit + 1):
            if predicate():
                return count
            self.round()
        return None
