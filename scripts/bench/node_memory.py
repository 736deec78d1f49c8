#!/usr/bin/env python3
"""What a settled node of a cluster holds, by file and line: tracemalloc inside a node.

A cluster of ``--nodes`` gossip-tui processes (``_cluster.Cluster``: ``--headless``, HTTP
on, node 0 the seed) is started; the last node runs under this script's ``--child`` mode,
which starts tracemalloc before importing gossip_tui and then runs ``python -m
gossip_tui`` with the same arguments in the same process. Once every node counts all N
live and ``--settle`` seconds have passed, the harness sends that node SIGUSR1: it takes a
snapshot and writes the traced bytes by file and by line (the project's own and the
rest), with the length of each codec cache, as JSON. The RSS split of every node
(``/proc/<pid>/smaps_rollup``) is read at the same moment; the traced node's own figure
is left out of the mean, as tracemalloc's bookkeeping inflates it.

The bytes are those Python allocated and still holds (no load or timing in them), so a
change is seen in them even on a busy machine; the RSS figures want a quiet one.

    python scripts/bench/node_memory.py --nodes 100 --settle 30 --json out.json
    python scripts/bench/node_memory.py --tree /work/main   # another checkout's code
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent

# The codec's caches, whose lengths the snapshot reports.
_CODEC_CACHES = (
    "_NODES_BY_WIRE",
    "_WIRE_BY_NODE",
    "_ENTRIES_BY_WIRE",
    "_KV_RUNS_BY_NODE",
    "_WIRE_BY_ENTRY",
    "_LAYOUTS",
    "_SYNS_BY_WIRE",
)

# The codec's pooled zstd contexts, whose sizes the snapshot reports.
_ZSTD_POOLS = ("_COMPRESSORS", "_STRONG_COMPRESSORS", "_DECOMPRESSORS")


def _own(filename: str) -> bool:
    return f"{os.sep}gossip_tui{os.sep}" in filename


def _summary(snapshot: tracemalloc.Snapshot, top: int) -> dict[str, Any]:
    snapshot = snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    by_file = snapshot.statistics("filename")
    by_line = snapshot.statistics("lineno")
    own_lines = [s for s in by_line if _own(s.traceback[0].filename)]

    def row(stat: tracemalloc.Statistic) -> dict[str, Any]:
        frame = stat.traceback[0]
        return {
            "where": f"{frame.filename}:{frame.lineno}",
            "bytes": stat.size,
            "count": stat.count,
        }

    from gossip_tui.core import codec

    return {
        "traced_bytes": sum(s.size for s in by_file),
        "own_bytes": sum(s.size for s in by_file if _own(s.traceback[0].filename)),
        "by_file": [
            {"file": s.traceback[0].filename, "bytes": s.size, "count": s.count}
            for s in by_file[:top]
        ],
        "own_by_line": [row(s) for s in own_lines[:top]],
        "by_line": [row(s) for s in by_line[:top]],
        "codec_cache_lengths": {name: len(getattr(codec, name)) for name in _CODEC_CACHES},
        # zstd's contexts allocate outside Python's allocator: tracemalloc misses them.
        "zstd_context_bytes": {
            name: [context.memory_size() for context in getattr(codec, name)]
            for name in _ZSTD_POOLS
        },
    }


def child(out: Path, top: int, node_args: list[str]) -> None:
    """Run a node in this process, with tracemalloc on; SIGUSR1 writes ``out``."""
    tracemalloc.start()

    def dump(_signum: int, _frame: FrameType | None) -> None:
        summary = _summary(tracemalloc.take_snapshot(), top)
        partial = out.with_suffix(".partial")
        partial.write_text(json.dumps(summary, indent=1))
        partial.rename(out)

    signal.signal(signal.SIGUSR1, dump)
    import runpy

    sys.argv = ["gossip_tui", *node_args]
    runpy.run_module("gossip_tui", run_name="__main__", alter_sys=True)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import _cluster as bench

    out = Path(tempfile.mkdtemp(prefix="node-memory-")) / "snapshot.json"

    class TracedCluster(bench.Cluster):
        def command(self, node: bench.NodeProcess) -> list[str]:
            command = super().command(node)
            if node.index != self.size - 1:
                return command
            # [python, -m, gossip_tui, ...]: the same arguments, run by the child mode.
            return [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                str(out),
                "--top",
                str(args.top),
                "--",
                *command[3:],
            ]

    tree = args.tree.resolve() if args.tree else bench.REPO
    with TracedCluster(bench.GOSSIP_TUI, args.nodes, args.interval_ms, tree=tree) as running:
        took = running.start()
        time.sleep(args.settle)
        traced = running.nodes[-1]
        os.kill(traced.pid, signal.SIGUSR1)
        memory = [bench.memory_split_mib(node.pid) for node in running.nodes]
        deadline = time.monotonic() + 60
        while not out.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the traced node wrote no snapshot")
            time.sleep(0.2)
        snapshot = json.loads(out.read_text())
    untraced = memory[:-1]
    return {
        "tree": str(tree),
        "nodes": args.nodes,
        "interval_ms": args.interval_ms,
        "settle_s": args.settle,
        "formed_s": took,
        "memory_mib": {k: bench.summarize([m[k] for m in untraced]) for k in untraced[0]},
        "traced_node_memory_mib": memory[-1],
        "snapshot": snapshot,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        split = argv.index("--")
        child(Path(argv[1]), int(argv[argv.index("--top") + 1]), argv[split + 1 :])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=30.0, help="seconds after all see all")
    parser.add_argument("--top", type=int, default=40, help="files and lines reported")
    parser.add_argument(
        "--tree", type=Path, help="the checkout whose code the nodes run (default: this one)"
    )
    parser.add_argument("--json", type=Path, help="write the result here too")
    args = parser.parse_args(argv)
    result = measure(args)
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
