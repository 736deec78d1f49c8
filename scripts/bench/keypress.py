#!/usr/bin/env python3
"""How long a key press takes to show on screen with a large cluster in the dashboard.

The dashboard runs headless (Textual's ``run_test``) over a FakeCluster of ``--nodes``
nodes whose heartbeats move every tick and whose keys change (events flowing), refreshed
every ``--refresh`` seconds as the real dashboard is. Each press is timed from the key
until the screen has been updated with its effect (Pilot's press, then a pause for the
repaint):

* ``j``: the cursor moves one row down the nodes table;
* typing in the filter (``/`` then one character per press);
* ``s``: the set-key form opens (and Escape closes it, untimed).

Prints the median, p99 and max of each, in milliseconds, and one JSON object with
``--json``. The target (issue 15): a press shows within 100 ms with 500 nodes.

    python scripts/bench/keypress.py --nodes 500 --presses 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input

from gossip_tui.core.models import KeyStatus
from gossip_tui.testing import FakeCluster, FakeNodeConfig
from gossip_tui.ui import GossipApp


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(samples: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples]
    return {
        "presses": len(ms),
        "median_ms": round(statistics.median(ms), 1),
        "p99_ms": round(_percentile(ms, 0.99), 1),
        "max_ms": round(max(ms), 1),
    }


class _Profiles:
    """Profiles of the timed presses only, one per kind of press (``--profile``): cProfile
    for exact call counts, pyinstrument for where the wall-clock time goes. Either sees
    everything the loop runs between the key and the repaint (ticks included), as a press
    would."""

    def __init__(self, tool: str | None, prefix: str) -> None:
        self.tool = tool
        self.prefix = prefix
        self._profiles: dict[str, Any] = {}

    def start(self, name: str) -> None:
        if self.tool is None:
            return
        profile = self._profiles.get(name)
        if profile is None:
            if self.tool == "cprofile":
                import cProfile

                profile = cProfile.Profile()
            else:
                from pyinstrument import Profiler

                # Not per task: the tick's work that delays a press counts against it.
                profile = Profiler(async_mode="disabled")
            self._profiles[name] = profile
        if self.tool == "cprofile":
            profile.enable()
        else:
            profile.start()

    def stop(self, name: str) -> None:
        profile = self._profiles.get(name)
        if profile is None:
            return
        if self.tool == "cprofile":
            profile.disable()
        else:
            profile.stop()

    def write(self) -> None:
        for name, profile in self._profiles.items():
            if self.tool == "cprofile":
                profile.dump_stats(f"{self.prefix}{name}.prof")
            else:
                text = profile.output_text(unicode=True, show_all=False)
                Path(f"{self.prefix}{name}.txt").write_text(text)
            print(f"profile of {name}: {self.prefix}{name}.*", file=sys.stderr)


async def _timed(
    pilot: Pilot[Any], action: Callable[[], Awaitable[None]], profiles: _Profiles, name: str
) -> float:
    profiles.start(name)
    started = time.perf_counter()
    await action()
    await pilot.pause()  # the repaint the key asked for
    elapsed = time.perf_counter() - started
    profiles.stop(name)
    return elapsed


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    cluster = FakeCluster()
    for index in range(args.nodes - 1):
        cluster.add_peer(
            f"server:127.0.0.1:{20000 + index}-peer{index}",
            port=20000 + index,
            keys={"role": "worker", "zone": f"z{index % 5}"},
            phi=0.5 + (index % 7) / 10,
        )
    peers = list(cluster.members)
    app = GossipApp(
        FakeNodeConfig(node_id="node-0"),
        cluster.open_node,
        refresh_interval=args.refresh,
        cursor_blink=False,
    )
    results: dict[str, Any] = {"nodes": args.nodes, "refresh_s": args.refresh}
    profiles = _Profiles(args.profile, args.profile_prefix)
    async with app.run_test(size=(args.width, args.height)) as pilot:
        deadline = time.monotonic() + 30
        while app.nodes_table.row_count < args.nodes:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {app.nodes_table.row_count} rows after 30 s")
            await pilot.pause(0.1)

        async def churn() -> None:
            """Heartbeats move every tick; a few keys change (events to the log)."""
            count = 0
            while True:
                cluster.beat()
                for _ in range(args.key_changes):
                    peer = peers[count % len(peers)]
                    cluster.write(peer, "load", str(count), KeyStatus.SET)
                    count += 1
                await asyncio.sleep(args.refresh)

        churning = asyncio.create_task(churn())
        try:
            await pilot.pause(1.0)
            table = app.nodes_table
            table.focus()
            await pilot.pause()
            moves: list[float] = []
            for _ in range(args.presses):
                row = table.cursor_row
                if row >= table.row_count - 1:
                    await pilot.press("g")  # back to the top, untimed
                    row = table.cursor_row
                moves.append(await _timed(pilot, lambda: pilot.press("j"), profiles, "j"))
                if table.cursor_row != row + 1:
                    raise SystemExit(f"j did not move the cursor from row {row}")
            results["j"] = _summary(moves)

            await pilot.press("slash")
            await pilot.pause()
            field = app.focused
            if not isinstance(field, Input):
                raise SystemExit(f"/ focused {field!r}, not the filter")
            typed: list[float] = []
            text = ""
            for index in range(args.presses):
                char = "0123456789"[index % 10]
                if len(text) >= 3:
                    field.value = text = ""
                    await pilot.pause()
                text += char
                typed.append(
                    await _timed(pilot, lambda c=char: pilot.press(c), profiles, "filter")  # type: ignore[misc]
                )
                if field.value != text:
                    raise SystemExit(f"the filter reads {field.value!r}, not {text!r}")
            results["filter"] = _summary(typed)
            await pilot.press("escape")
            table.focus()
            await pilot.pause()

            forms: list[float] = []
            for _ in range(max(10, args.presses // 10)):
                screens = len(app.screen_stack)
                forms.append(await _timed(pilot, lambda: pilot.press("s"), profiles, "set_form"))
                if len(app.screen_stack) != screens + 1:
                    raise SystemExit("s did not open the set-key form")
                await pilot.press("escape")
                await pilot.pause()
            results["set_form"] = _summary(forms)
        finally:
            churning.cancel()
            profiles.write()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--presses", type=int, default=200)
    parser.add_argument("--refresh", type=float, default=0.5, help="the dashboard's tick")
    parser.add_argument("--key-changes", type=int, default=20, help="per tick")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=45)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--profile",
        choices=("cprofile", "pyinstrument"),
        help="profile the timed presses (pyinstrument: pip install pyinstrument)",
    )
    parser.add_argument("--profile-prefix", default="/tmp/keypress-", help="profiles' paths")
    args = parser.parse_args()
    results = asyncio.run(_measure(args))
    if args.json:
        json.dump(results, sys.stdout)
        print()
    else:
        print(f"{args.nodes} nodes, a tick every {args.refresh:g} s:")
        for name in ("j", "filter", "set_form"):
            r = results[name]
            print(
                f"  {name:9} median {r['median_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
                f"max {r['max_ms']:7.1f} ms  ({r['presses']} presses)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
