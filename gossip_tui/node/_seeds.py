"""A running node's seeds: literal addresses at once, host names resolved now and again."""

from __future__ import annotations

import ipaddress
import logging

import attrs
import trio

from gossip_tui.core.fields_repr import fields_repr
from gossip_tui.core.models import AddressError, SocketAddress, parse_seed

from ._node_base import NodeBase

log = logging.getLogger("gossip_tui.node")


_SEED_RETRY_INTERVAL = 5.0


@attrs.frozen
class SeedStatus:
    """What the node knows of one (resolved) seed address."""

    __repr__ = fields_repr

    addr: SocketAddress
    # Syns sent to it since it last sent us anything.
    unanswered: int
    # Local time (the node's clock) of the last datagram from it; None: never.
    last_answer: float | None
    reachable: bool


class SeedResolver(NodeBase):
    """Keeps the engine's seed addresses up to date (run by ``Node._run``), and says
    whether each answers (asked and heard in the loops, see NodeBase)."""

    def seed_status(self) -> list[SeedStatus]:
        """Each resolved seed address (but our own): whether it answers."""
        return [
            SeedStatus(
                addr,
                self._seed_unanswered[addr],
                self._seed_last_answer.get(addr),
                addr not in self._seeds_unreachable,
            )
            for addr in sorted(self.engine.seed_addrs)
            if addr != self.engine.self_id.gossip_addr
        ]

    async def _seed_resolver(self, task_status: trio.TaskStatus[None]) -> None:
        literal, hosts = _split_seeds(self.config.seeds)
        self.engine.seed_addrs = set(literal)
        started = False
        # Host names that did not resolve last time: reported once, not at every retry.
        unresolved: set[tuple[str, int]] = set()
        while True:
            resolved = set(literal)
            failed = False
            for host, port in hosts:
                found = await _resolve(host, port, report=(host, port) not in unresolved)
                if found and (host, port) in unresolved:
                    log.info("seed %s:%d resolves again", host, port)
                    unresolved.discard((host, port))
                elif not found:
                    unresolved.add((host, port))
                failed |= not found
                resolved |= found
            self.engine.seed_addrs = resolved
            if not started:
                task_status.started()
                started = True
            if not hosts:
                return
            # A seed that did not resolve is tried again soon; the others once a minute.
            refresh = self.config.seed_refresh_interval
            await trio.sleep(min(refresh, _SEED_RETRY_INTERVAL) if failed else refresh)


def _split_seeds(seeds: tuple[str, ...]) -> tuple[list[SocketAddress], list[tuple[str, int]]]:
    literal: list[SocketAddress] = []
    hosts: list[tuple[str, int]] = []
    for seed in seeds:
        try:
            parsed = parse_seed(seed)
        except AddressError:
            log.warning("ignoring seed %r: not host:port", seed)
            continue
        if isinstance(parsed, SocketAddress):
            literal.append(parsed)
        else:
            hosts.append(parsed)
    return literal, hosts


async def _resolve(host: str, port: int, *, report: bool = True) -> set[SocketAddress]:
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_DGRAM)
    except OSError as exc:
        if report:
            log.warning("could not resolve seed %s:%d (%s); will retry", host, port, exc)
        else:
            log.debug("could not resolve seed %s:%d (%s); will retry", host, port, exc)
        return set()
    found = set()
    for _family, _type, _proto, _name, sockaddr in infos:
        found.add(SocketAddress(ipaddress.ip_address(sockaddr[0]), int(sockaddr[1])))
    return found
