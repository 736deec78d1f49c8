#!/usr/bin/env python3
"""Fault injection for local gossip-tui (or chitchat) nodes, without root.

One UDP proxy per node, on its own loopback address: node i listens on 127.0.0.1:P and
advertises its proxy, 127.0.0.(10+i):P, with ``--public-addr``; every datagram to the node
and every reply from it then crosses the proxy, which applies seeded loss, delay, jitter,
duplication, corruption and one- or two-way blocking per directed link. Faults change at
run time through commands typed on stdin or sent with ``ctl`` (type ``help`` for the list).

Proxies for nodes you start yourself (each with --public-addr set to the address printed)::

    python scripts/fault_proxy.py run --node 127.0.0.1:7001 --node 127.0.0.1:7002 --loss 0.1

Or let the script start headless nodes behind the proxies, and change faults from another
shell::

    python scripts/fault_proxy.py run --spawn 3 --base-port 7001 --control 127.0.0.1:7999
    python scripts/fault_proxy.py ctl 127.0.0.1:7999 isolate 2
    python scripts/fault_proxy.py ctl 127.0.0.1:7999 heal

The proxies, their controller and the fault model are gossip_tui.testing's; this script holds
the text commands that drive them (``run_command``, ``COMMANDS_HELP``).

Only addresses in 127.0.0.0/8 are ever bound or addressed.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack, ExitStack, suppress
from pathlib import Path
from typing import IO, Any

import attrs
import trio

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from gossip_tui.core.errors import GossipTuiError  # noqa: E402
from gossip_tui.core.models import AddressError, SocketAddress  # noqa: E402
from gossip_tui.testing import (  # noqa: E402
    PROXY_HOST_BASE,
    FaultController,
    FaultProxy,
    LinkFaults,
    NotLoopback,
    is_loopback,
    open_proxy,
    proxy_host,
    require_loopback,
)

MAX_REPLY = 60_000
LOCAL_ANY_PORT = SocketAddress.parse("127.0.0.1:0")
STOP_TIMEOUT = 5.0


# --------------------------------------------------------------------------- arguments


def _loopback(text: str) -> SocketAddress:
    try:
        return require_loopback(SocketAddress.parse(text))
    except (AddressError, NotLoopback) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability in [0, 1]")
    return value


def _milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value < 3_600_000:
        raise argparse.ArgumentTypeError(f"{text} ms is out of range")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="UDP fault-injection proxies for local gossip nodes (127.0.0.0/8 only).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the proxies (and maybe the nodes)")
    nodes = run.add_mutually_exclusive_group(required=True)
    nodes.add_argument(
        "--node",
        action="append",
        type=_loopback,
        metavar="IP:PORT",
        help="listen address of a node to put a proxy in front of (repeat, in order)",
    )
    nodes.add_argument("--spawn", type=int, metavar="N", help="start N headless nodes")
    run.add_argument("--base-port", type=int, default=7001, help="with --spawn: node 0's port")
    run.add_argument("--interval-ms", type=int, default=500, help="with --spawn (default 500)")
    run.add_argument(
        "--node-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="with --spawn: an extra argument for every node (repeat; use --node-arg=--x)",
    )
    run.add_argument("--log-dir", type=Path, help="with --spawn: node logs (default: stderr)")
    run.add_argument(
        "--proxy-base",
        type=int,
        default=PROXY_HOST_BASE,
        help=f"proxy i listens on 127.0.0.(BASE+i) (default {PROXY_HOST_BASE})",
    )
    run.add_argument(
        "--proxy-port",
        type=int,
        help="port of every proxy (default: the port of the node it fronts; 0: any)",
    )
    run.add_argument("--seed", type=int, default=0, help="seed of the fault RNG (default 0)")
    faults = run.add_argument_group("default faults, on every link")
    faults.add_argument("--loss", type=_probability, default=0.0)
    faults.add_argument("--delay-ms", type=_milliseconds, default=0.0)
    faults.add_argument("--jitter-ms", type=_milliseconds, default=0.0)
    faults.add_argument("--duplicate", type=_probability, default=0.0)
    faults.add_argument("--corrupt", type=_probability, default=0.0)
    run.add_argument(
        "--exec",
        action="append",
        default=[],
        metavar="COMMAND",
        help='a command to run at start, e.g. "partition 0,1 2" (repeat)',
    )
    run.add_argument(
        "--control",
        type=_loopback,
        metavar="IP:PORT",
        help="UDP address taking commands from `ctl` (default 127.0.0.1, any port)",
    )
    run.add_argument("--no-stdin", action="store_true", help="do not read commands on stdin")
    run.add_argument("--duration", type=float, help="stop after this many seconds")

    ctl = commands.add_parser("ctl", help="send a command to running proxies")
    ctl.add_argument("control", type=_loopback, metavar="IP:PORT")
    ctl.add_argument("words", nargs="+", metavar="COMMAND")
    ctl.add_argument("--timeout", type=float, default=5.0)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        count = args.spawn if args.spawn is not None else len(args.node)
        if count < 1:
            parser.error("--spawn needs at least 1 node")
        try:
            proxy_host(count - 1, args.proxy_base)
            proxy_host(0, args.proxy_base)
        except ValueError as exc:
            parser.error(str(exc))
        if args.spawn is not None and not 1 <= args.base_port <= 0xFFFF - count + 1:
            parser.error("--base-port leaves no room for the nodes")
        if args.proxy_port is not None and not 0 <= args.proxy_port <= 0xFFFF:
            parser.error("--proxy-port is not a port")
    return args


def node_addresses(args: argparse.Namespace) -> list[SocketAddress]:
    if args.spawn is not None:
        return [SocketAddress.parse(f"127.0.0.1:{args.base_port + i}") for i in range(args.spawn)]
    return list(args.node)


def proxy_addresses(
    args: argparse.Namespace, nodes: Sequence[SocketAddress]
) -> list[SocketAddress]:
    return [
        SocketAddress.parse(
            f"{proxy_host(i, args.proxy_base)}:"
            f"{node.port if args.proxy_port is None else args.proxy_port}"
        )
        for i, node in enumerate(nodes)
    ]


def node_command(
    index: int,
    listen: SocketAddress,
    public: SocketAddress,
    seed: SocketAddress,
    *,
    interval_ms: int,
    extra: Sequence[str] = (),
    python: str = sys.executable,
) -> list[str]:
    """The command line of spawned node ``index``: it advertises its proxy, and every node
    but the first is seeded with node 0's proxy."""
    command = [
        python,
        "-m",
        "gossip_tui",
        "--headless",
        "--listen-addr",
        str(listen),
        "--public-addr",
        str(public),
        "--node-id",
        f"node-{index}",
        "--interval-ms",
        str(interval_ms),
    ]
    if index > 0:
        command += ["--seed", str(seed)]
    return command + list(extra)


# --------------------------------------------------------------------------- commands


def describe(controller: FaultController) -> str:
    """The faults and counters, as ``show`` prints them."""
    lines = [f"default: {_faults_text(controller.default_faults)}"]
    for (src, dst), faults in sorted(controller.links().items()):
        lines.append(f"{src} -> {dst}: {_faults_text(faults)}")
    s = controller.stats
    dropped = ", ".join(f"{k}={v}" for k, v in sorted(s.dropped.items())) or "none"
    lines.append(
        f"stats: received={s.received} sent={s.sent} duplicated={s.duplicated} "
        f"corrupted={s.corrupted} malformed={s.malformed} delayed={s.delayed} "
        f"clients={s.clients} in_flight={controller.in_flight}; dropped: {dropped}"
    )
    return "\n".join(lines)


def _faults_text(faults: LinkFaults) -> str:
    if faults.blocked:
        return "blocked"
    parts = []
    if faults.loss:
        parts.append(f"loss={faults.loss:g}")
    if faults.delay:
        parts.append(f"delay_ms={faults.delay * 1000:g}")
    if faults.jitter:
        parts.append(f"jitter_ms={faults.jitter * 1000:g}")
    if faults.duplicate:
        parts.append(f"duplicate={faults.duplicate:g}")
    if faults.corrupt:
        parts.append(f"corrupt={faults.corrupt:g}")
    return " ".join(parts) or "none"


COMMANDS_HELP = """\
Commands (NODE is a proxy index, a proxy address or a node address; * is every node):
  show                         faults and counters
  set [SRC DST] KEY=VALUE...   change the default faults, or those of the link SRC -> DST;
                               keys: loss, delay_ms, jitter_ms, duplicate, corrupt, blocked
  block SRC DST [both]         drop everything SRC sends to DST (and back with "both")
  isolate NODE [in|out|both]   block every link to and/or from NODE (default both)
  partition A,B,... C,D,...    block every link between the two groups, both ways
  heal                         forget the per-link faults (keep the default ones)
  clear                        no fault anywhere
  help                         this text"""

# Command key -> (LinkFaults field, scale to its unit, whether it is a probability).
_FAULT_KEYS = {
    "loss": ("loss", 1.0, True),
    "delay_ms": ("delay", 0.001, False),
    "jitter_ms": ("jitter", 0.001, False),
    "duplicate": ("duplicate", 1.0, True),
    "corrupt": ("corrupt", 1.0, True),
}


class CommandError(GossipTuiError, ValueError):
    """A fault command that cannot be carried out; the message says why."""


def parse_fault_settings(base: LinkFaults, settings: Sequence[str]) -> LinkFaults:
    """``base`` changed by ``key=value`` words (probabilities in [0, 1], times in ms)."""
    changes: dict[str, Any] = {}
    for word in settings:
        key, sep, text = word.partition("=")
        if not sep:
            raise CommandError(f"expected KEY=VALUE, got {word!r}")
        if key == "blocked":
            if text.lower() not in {"0", "1", "true", "false", "yes", "no", "on", "off"}:
                raise CommandError(f"blocked takes a boolean, got {text!r}")
            changes["blocked"] = text.lower() in {"1", "true", "yes", "on"}
            continue
        if key not in _FAULT_KEYS:
            raise CommandError(f"unknown fault {key!r} (one of {', '.join(_FAULT_KEYS)}, blocked)")
        field, scale, probability = _FAULT_KEYS[key]
        try:
            value = float(text)
        except ValueError:
            raise CommandError(f"{key} takes a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0:
            raise CommandError(f"{key} must be a finite number >= 0, got {text!r}")
        if probability and value > 1:
            raise CommandError(f"{key} is a probability in [0, 1], got {text!r}")
        changes[field] = value * scale
    return attrs.evolve(base, **changes)


def resolve_node(word: str, proxies: Sequence[FaultProxy]) -> list[SocketAddress]:
    """The public addresses ``word`` names: ``*``, a proxy index, or an address."""
    if word == "*":
        return [p.public_addr for p in proxies]
    if word.isdigit():
        index = int(word)
        if index >= len(proxies):
            raise CommandError(f"no node {index}: there are {len(proxies)}")
        return [proxies[index].public_addr]
    try:
        addr = SocketAddress.parse(word)
    except AddressError:
        raise CommandError(f"{word!r} is neither a node index nor an ip:port") from None
    for proxy in proxies:
        if addr in (proxy.public_addr, proxy.target):
            return [proxy.public_addr]
    return [addr]


def run_command(controller: FaultController, proxies: Sequence[FaultProxy], line: str) -> str:
    """Carry out one text command (see :data:`COMMANDS_HELP`); return what to print."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if not words:
        return ""
    command, args = words[0].lower(), words[1:]
    peers = [p.public_addr for p in proxies]
    if command == "help":
        return COMMANDS_HELP
    if command in {"show", "stats"}:
        return describe(controller)
    if command == "heal":
        controller.heal()
        return "healed: per-link faults cleared"
    if command == "clear":
        controller.clear()
        return "cleared: no faults"
    if command == "set":
        if args and "=" not in args[0]:
            if len(args) < 3:
                raise CommandError("usage: set SRC DST KEY=VALUE...")
            sources, destinations = resolve_node(args[0], proxies), resolve_node(args[1], proxies)
            settings = args[2:]
            for src in sources:
                for dst in destinations:
                    if src != dst:
                        new = parse_fault_settings(controller.faults(src, dst), settings)
                        controller.set_faults(src, dst, new)
            return describe(controller)
        if not args:
            raise CommandError("usage: set [SRC DST] KEY=VALUE...")
        controller.default_faults = parse_fault_settings(controller.default_faults, args)
        return describe(controller)
    if command == "block":
        if len(args) not in (2, 3) or (len(args) == 3 and args[2] != "both"):
            raise CommandError("usage: block SRC DST [both]")
        both = len(args) == 3
        for src in resolve_node(args[0], proxies):
            for dst in resolve_node(args[1], proxies):
                if src != dst:
                    controller.block(src, dst, both_ways=both)
        return describe(controller)
    if command == "isolate":
        if len(args) not in (1, 2) or (len(args) == 2 and args[1] not in {"in", "out", "both"}):
            raise CommandError("usage: isolate NODE [in|out|both]")
        way = args[1] if len(args) == 2 else "both"
        for addr in resolve_node(args[0], proxies):
            controller.isolate(
                addr, inbound=way != "out", outbound=way != "in", peers=peers or None
            )
        return describe(controller)
    if command == "partition":
        if len(args) != 2:
            raise CommandError("usage: partition A,B,... C,D,...")
        side_a = [a for w in args[0].split(",") if w for a in resolve_node(w, proxies)]
        side_b = [a for w in args[1].split(",") if w for a in resolve_node(w, proxies)]
        if set(side_a) & set(side_b):
            raise CommandError("a node cannot be on both sides of a partition")
        controller.partition(side_a, side_b)
        return describe(controller)
    raise CommandError(f"unknown command {command!r}; try help")


# --------------------------------------------------------------------------- running


def _execute(controller: FaultController, proxies: Sequence[FaultProxy], line: str) -> str:
    try:
        return run_command(controller, proxies, line)
    except CommandError as exc:
        return f"error: {exc}"


async def _bind_control(listen: SocketAddress) -> trio.socket.SocketType:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    try:
        await sock.bind((listen.host, listen.port))
    except BaseException:
        sock.close()
        raise
    return sock


async def _serve_control(
    controller: FaultController, proxies: Sequence[FaultProxy], sock: trio.socket.SocketType
) -> None:
    with sock:
        while True:
            data, source = await sock.recvfrom(MAX_REPLY)
            if not is_loopback(SocketAddress.parse(f"{source[0]}:{source[1]}")):
                continue
            reply = _execute(controller, proxies, data.decode(errors="replace"))
            with suppress(OSError):
                await sock.sendto(reply.encode()[:MAX_REPLY], source)


async def _read_stdin(controller: FaultController, proxies: Sequence[FaultProxy]) -> None:
    try:
        stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    except (OSError, ValueError):
        return
    buffer = b""
    async with stream:
        while chunk := await stream.receive_some():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                reply = _execute(controller, proxies, line.decode(errors="replace"))
                if reply:
                    print(reply, flush=True)


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def _stop_processes(processes: Sequence[trio.Process]) -> None:
    with trio.CancelScope(shield=True):
        for process in processes:
            if process.returncode is None:
                process.terminate()
        with trio.move_on_after(STOP_TIMEOUT):
            for process in processes:
                await process.wait()
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def _spawn_nodes(
    args: argparse.Namespace,
    proxies: Sequence[FaultProxy],
    files: ExitStack,
    processes: list[trio.Process],
) -> None:
    """Start a headless node behind each proxy, appending each to ``processes`` at once
    (so that a failure halfway still stops those already started)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSIP_TUI_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    for i, proxy in enumerate(proxies):
        assert proxy.target is not None
        command = node_command(
            i,
            proxy.target,
            proxy.public_addr,
            proxies[0].public_addr,
            interval_ms=args.interval_ms,
            extra=args.node_arg,
        )
        log: IO[bytes] | None = None
        if args.log_dir is not None:
            args.log_dir.mkdir(parents=True, exist_ok=True)
            log = files.enter_context((args.log_dir / f"node-{i}.log").open("wb"))
        processes.append(
            await trio.lowlevel.open_process(
                command,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        )


async def run(args: argparse.Namespace) -> None:
    nodes = node_addresses(args)
    fronts = proxy_addresses(args, nodes)
    controller = FaultController(seed=args.seed)
    controller.default_faults.loss = args.loss
    controller.default_faults.delay = args.delay_ms / 1000
    controller.default_faults.jitter = args.jitter_ms / 1000
    controller.default_faults.duplicate = args.duplicate
    controller.default_faults.corrupt = args.corrupt
    processes: list[trio.Process] = []
    with trio.CancelScope() as main_scope, ExitStack() as files:
        # Everything is bound before the nursery opens: a busy address is a plain OSError.
        async with AsyncExitStack() as stack:
            proxies = [
                await stack.enter_async_context(open_proxy(controller, front, node))
                for node, front in zip(nodes, fronts, strict=True)
            ]
            control_socket = await _bind_control(args.control or LOCAL_ANY_PORT)
            host, port = control_socket.getsockname()[:2]
            control = f"{host}:{port}"
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_stop_on_signal, main_scope)
                nursery.start_soon(_serve_control, controller, proxies, control_socket)
                for line in args.exec:  # a bad one stops the run (CommandError)
                    print(run_command(controller, proxies, line), flush=True)
                for i, proxy in enumerate(proxies):
                    hint = (
                        "" if args.spawn else f" (start it with --public-addr {proxy.public_addr})"
                    )
                    print(f"node {i}: {proxy.target} behind proxy {proxy.public_addr}{hint}")
                print(f"control: {control} (fault_proxy.py ctl {control} help)", flush=True)
                try:
                    if args.spawn is not None:
                        await _spawn_nodes(args, proxies, files, processes)
                    if not args.no_stdin:
                        nursery.start_soon(_read_stdin, controller, proxies)
                    if args.duration is not None:
                        await trio.sleep(args.duration)
                    else:
                        await trio.sleep_forever()
                finally:
                    await _stop_processes(processes)
                    print(describe(controller), flush=True)
                    nursery.cancel_scope.cancel()


def ctl(args: argparse.Namespace) -> int:
    line = " ".join(args.words)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(args.timeout)
        sock.sendto(line.encode(), (args.control.host, args.control.port))
        try:
            reply = sock.recv(MAX_REPLY).decode(errors="replace")
        except TimeoutError:
            print(f"no answer from {args.control} within {args.timeout} s", file=sys.stderr)
            return 1
    print(reply)
    return 1 if reply.startswith("error:") else 0


def _leaves(error: BaseException) -> list[Exception]:
    """The exceptions inside nested exception groups."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error] if isinstance(error, Exception) else []


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "ctl":
        return ctl(args)
    failures: list[Exception] = []
    status = 0
    try:
        trio.run(run, args)
    except* CommandError as group:  # a bad --exec command
        failures.extend(_leaves(group))
        status = 2
    except* OSError as group:  # a busy address, a node that cannot be started
        failures.extend(_leaves(group))
        status = 1
    for failure in failures:
        print(f"fault_proxy: {failure}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
