"""Run one swim-protocol member (UDP transport) with a tiny HTTP control API, for the benches.

swim-protocol (PyPI ``swim-protocol``, import ``swimprotocol``) ships no HTTP API, so this
process runs a member exactly as its ``swim-protocol-sync`` entry point does (``Members``,
``Worker``, ``UdpTransport``) and answers, over keep-alive HTTP/1.1 on ``--http-port``, the
routes the benchmark harness reads, in the same JSON shapes as gossip-tui's API:

* ``GET /health``: ``live_nodes`` (ONLINE members plus itself), ``dead_nodes`` (OFFLINE);
* ``GET /nodes``: every member with its liveness (``live``, ``suspect``, ``dead``, ``self``);
* ``GET /nodes/{name}``: one member's liveness and metadata (as ``key_values``);
* ``GET /set_kv/?key=K&value=V``: set a key of the local member's metadata;
* ``GET /stats``: bytes and packets this member sent, and the status changes it saw.

Timings are swim-protocol's defaults scaled by ``--interval`` (seconds): ping every
interval, sync every interval/2, ping timeout 0.3, ping-req timeout 0.9 and suspect timeout
5 intervals. At ``--interval 1`` they are exactly the package defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from swimprotocol.members import Member, Members
from swimprotocol.status import Status
from swimprotocol.udp import UdpTransport
from swimprotocol.udp.config import UdpConfig
from swimprotocol.worker import Worker

HOST = "127.0.0.1"
SECRET = "gossip-tui-bench"


def swim_config(
    name: str, peers: list[str], interval: float, metadata: dict[str, bytes]
) -> UdpConfig:
    return UdpConfig(
        secret=SECRET,
        local_name=name,
        peers=peers,
        local_metadata=metadata,
        ping_interval=interval,
        ping_timeout=0.3 * interval,
        ping_req_timeout=0.9 * interval,
        suspect_timeout=5.0 * interval,
        sync_interval=0.5 * interval,
    )


class SendCounter:
    """Counts what a transport packs for sending (UDP datagrams and TCP fallbacks)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.packets = 0
        self._lock = threading.Lock()

    def wrap(self, transport: UdpTransport) -> None:
        pack: Callable[[Any], bytes] = transport.udp_pack.pack

        def counting_pack(packet: Any) -> bytes:
            data = pack(packet)
            with self._lock:
                self.bytes += len(data)
                self.packets += 1
            return data

        # UdpSend calls udp_pack.pack through the same UdpPack object.
        transport.udp_pack.pack = counting_pack  # type: ignore[method-assign]


def liveness(member: Member) -> str:
    if member.local:
        return "self"
    status = member.status
    if status == Status.ONLINE:
        return "live"
    if status == Status.SUSPECT:
        return "suspect"
    return "dead"


class Control:
    """The HTTP control API of one member."""

    def __init__(self, members: Members, counter: SendCounter) -> None:
        self.members = members
        self.counter = counter
        self.transitions: dict[str, int] = {"suspect": 0, "dead": 0, "live": 0}
        self._last: dict[str, str] = {}

    async def on_change(self, member: Member) -> None:
        state = liveness(member)
        if state != "self" and self._last.get(member.name) != state:
            # A member's first sighting is not a transition.
            if member.name in self._last:
                self.transitions[state] += 1
            self._last[member.name] = state

    def find(self, name: str) -> Member | None:
        if name == self.members.local.name:
            return self.members.local
        for member in self.members.non_local:
            if member.name == name:
                return member
        return None

    def route(self, target: str) -> tuple[int, Any]:
        parts = urlsplit(target)
        path = parts.path
        if path == "/health":
            non_local = list(self.members.non_local)
            return 200, {
                "status": "ok",
                "live_nodes": 1 + sum(1 for m in non_local if m.status == Status.ONLINE),
                "dead_nodes": sum(1 for m in non_local if m.status == Status.OFFLINE),
                "suspect_nodes": sum(1 for m in non_local if m.status == Status.SUSPECT),
            }
        if path == "/nodes":
            everyone = [self.members.local, *self.members.non_local]
            return 200, {
                "nodes": [
                    {"chitchat_id": {"node_id": m.name}, "liveness": liveness(m)} for m in everyone
                ]
            }
        if path.startswith("/nodes/"):
            member = self.find(unquote(path[len("/nodes/") :]))
            if member is None:
                return 404, {"error": "no such member"}
            metadata = member.metadata
            return 200, {
                "node": {"chitchat_id": {"node_id": member.name}, "liveness": liveness(member)},
                "key_values": {
                    k: {"value": v.decode(errors="replace")} for k, v in metadata.items()
                },
            }
        if path in ("/set_kv/", "/set_kv"):
            query = parse_qs(parts.query)
            key = query.get("key", [""])[0]
            value = query.get("value", [""])[0]
            if not key:
                return 400, {"error": "key is required"}
            local = self.members.local
            metadata = dict(local.metadata) | {key: value.encode()}
            self.members.update(local, new_metadata=metadata)
            return 200, {"status": True}
        if path == "/stats":
            return 200, {
                "bytes_out": self.counter.bytes,
                "packets_out": self.counter.packets,
                "transitions": self.transitions,
            }
        return 404, {"error": f"no route for {path!r}"}

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                request_line = await reader.readline()
                if not request_line:
                    break
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # headers: nothing we need (GET only, no body)
                method, target, _version = request_line.decode("latin-1").split(" ", 2)
                if method != "GET":
                    status, body = 405, {"error": "GET only"}
                else:
                    status, body = self.route(target)
                data = json.dumps(body).encode()
                head = (
                    f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
                    f"content-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
                )
                writer.write(head.encode("latin-1") + data)
                await writer.drain()
        writer.close()


async def run(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    config = swim_config(args.name, args.peer, args.interval, {"bind": args.name.encode()})
    members = Members(config)
    worker = Worker(config, members)
    transport = UdpTransport(config, worker)
    counter = SendCounter()
    counter.wrap(transport)
    control = Control(members, counter)
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, done.set)
    loop.add_signal_handler(signal.SIGTERM, done.set)
    server = await asyncio.start_server(control.serve, HOST, args.http_port)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(transport)
        await stack.enter_async_context(worker)
        await stack.enter_async_context(members.listener.on_notify(control.on_change))
        await stack.enter_async_context(server)
        await done.wait()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="127.0.0.1:PORT of this member")
    parser.add_argument("--peer", action="append", default=[], help="a known member")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
