"""A running node's seeds: literal addresses at once, host names resolved now and again."""

from __future__ import annotations

import ipaddress
import logging

import trio

from gossip_tui.core.models import AddressError, SocketAddress

from ._node_base import NodeBase

log = logging.getLogger("gossip_tui.node")


_SEED_RETRY_INTERVAL = 5.0


class SeedResolver(NodeBase):
    """Keeps the engine's seed addresses up to date (run by ``Node._run``)."""

    async def _seed_resolver(self, task_status: trio.TaskStatus[None]) -> None:
        literal, hosts = _split_seeds(self.config.seeds)
        self.engine.seed_addrs = set(literal)
        started = False
        while True:
            resolved = set(literal)
            failed = False
            for host, port in hosts:
                found = await _resolve(host, port)
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
            literal.append(SocketAddress.parse(seed))
        except AddressError:
            host, sep, port = seed.rpartition(":")
            if not sep or not host or not port.isdigit() or int(port) > 0xFFFF:
                log.warning("ignoring seed %r: not host:port", seed)
                continue
            hosts.append((host, int(port)))
    return literal, hosts


async def _resolve(host: str, port: int) -> set[SocketAddress]:
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_DGRAM)
    except OSError as exc:
        log.warning("could not resolve seed %s:%d (%s); will retry", host, port, exc)
        return set()
    found = set()
    for _family, _type, _proto, _name, sockaddr in infos:
        found.add(SocketAddress(ipaddress.ip_address(sockaddr[0]), int(sockaddr[1])))
    return found
