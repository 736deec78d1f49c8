#!/usr/bin/env python3
"""How long a key press takes to show on screen with a large cluster in the dashboard.

The dashboard runs headless (Textual's ``run_test``) over a FakeCluster of ``--nodes``
nodes whose heartbeats move every tick and whose keys change (events flowing), refreshed
every ``--refresh`` seconds as the real dashboard is. Each press is timed twice:

* frame: from the key's arrival (the moment it is handed to the app's driver, as a
  terminal's input thread hands it) to the first frame written that shows its effect. The
  hook is ``App._display``, where every compositor update goes to the terminal: headless, it
  draws nothing, so the probe renders the update to the escape codes a terminal would be
  sent (the cost a real terminal pays) and, if the press's effect is in place by then (the
  cursor on the next row, the filter applied, the form's fields laid out on the top screen),
  stamps that frame. This is the figure issue 15's target names.
* idle: from the key until the app is idle again (Pilot's press and pause: ~20 ms of
  idleness are waited for, so it never reads below ~60 ms), the figure of earlier sessions.

The presses:

* ``j``: the cursor moves one row down the nodes table;
* typing in the filter (``/`` then one character per press);
* ``s``: the set-key form opens (and Escape closes it, untimed).

Prints the median, p99 and max of each, in milliseconds, and one JSON object with
``--json``. The target (issue 15): a press shows within 100 ms with 500 nodes.

The app runs with the collector policy of the CLI's dashboard (``QuietCollector``: full
collections at moments no key came for a second, or at the latest every two minutes);
``--python-gc`` leaves them to Python instead. The presses here come back to back for
under two minutes, so with the policy no full collection lands among them.

With ``--explain``, every press whose frame took over 100 ms is broken down into what ran
between the key's arrival and its frame (and how many frames went out meanwhile): the
node's updates shown (a tick's readings and
events, ``GossipApp._flush_updates``), screen layouts, compositor frames (the press's own
included), the filter's text applied to the table (``NodesTable.set_filter``), the
table's idle work (new rows measured), the garbage collector (``gc.callbacks``), and the
rest (the press's own handling, Textual's message passing); beside it the process's CPU
time over the same span, which tells work from waiting for a core on a loaded machine; the
table's lines drawn afresh meanwhile (``NodesTable.lines_rendered``: not from its caches);
and for a filter key, how long its frame came after the frames held for the text were let
go (``NodeFilter.release_frames``: time spent waiting for Textual's refresh timer, or a
layout and the frame itself).

    python scripts/bench/keypress.py --nodes 500 --presses 200
    python scripts/bench/keypress.py --nodes 500 --presses 200 --explain
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from textual._wait import wait_for_idle
from textual.app import App
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Input

from gossip_tui.core.models import KeyStatus
from gossip_tui.testing import FakeCluster, FakeNodeConfig
from gossip_tui.ui import GossipApp
from gossip_tui.ui.screens.key_forms import KeyFormScreen
from gossip_tui.ui.widgets.nodes_table import NodeFilter, NodesTable

try:
    from gossip_tui.ui._collector import QuietCollector
except ImportError:  # a tree from before it, measured with this script
    QuietCollector = None  # type: ignore[assignment,misc]

# How long a press may take to reach the screen before the bench gives up on it.
_FRAME_DEADLINE_S = 30.0
# --explain breaks down the presses slower than this (issue 15's target).
_SLOW_S = 0.100
# The kinds of press timed, in the order they run.
_PRESSES = ("j", "filter", "set_form")


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


def _summaries(presses: list[tuple[float, float]]) -> dict[str, Any]:
    return {
        "frame": _summary([frame for frame, _ in presses]),
        "idle": _summary([idle for _, idle in presses]),
    }


class _FrameProbe:
    """Stamps the first frame written to the terminal that shows a press's effect.

    Wraps the app's ``_display`` (every compositor update passes there on its way to the
    driver). Headless, Textual skips turning the update into terminal output; the probe
    does it (``render_segments``), so a frame costs what it costs on a real terminal."""

    def __init__(self, app: App[Any]) -> None:
        self._app = app
        self._shows: Callable[[Screen[Any]], bool] | None = None
        self.shown_at: float | None = None
        self.shown_cpu = 0.0  # time.process_time() then
        self.shown_lines = 0  # the nodes table's lines_rendered then
        self._shown = asyncio.Event()
        self.frames = 0
        self.last_frame_at = 0.0
        display = app._display

        def probe(screen: Screen[Any], renderable: Any) -> None:
            display(screen, renderable)
            if renderable is None or app._batch_count:
                return  # nothing written
            renderable.render_segments(app.console)
            self.frames += 1
            self.last_frame_at = time.perf_counter()
            if self._shows is not None and self._shows(screen):
                self.shown_at = time.perf_counter()
                self.shown_cpu = time.process_time()
                self.shown_lines = self.lines_rendered()
                self._shows = None
                self._shown.set()

        app._display = probe  # type: ignore[method-assign]

    def lines_rendered(self) -> int:
        """The nodes table's lines drawn afresh so far (0 in a tree from before the count)."""
        app = self._app
        if not isinstance(app, GossipApp) or not app.screen_stack:
            return 0
        return getattr(app.nodes_table, "lines_rendered", 0)

    def expect(self, shows: Callable[[Screen[Any]], bool]) -> None:
        """The next frame for which ``shows(screen)`` holds is the press's."""
        self.shown_at = None
        self._shown.clear()
        self._shows = shows

    def already_shown(self, since: float) -> float | None:
        """The last frame written since ``since``, if the press's effect is in place and
        nothing waits to be drawn: that frame showed it. A filter key that leaves the same
        rows changes nothing on screen after the character itself, so no later frame comes
        to stamp (the next would be a tick's, up to a refresh interval later)."""
        app = self._app
        shows = self._shows
        if shows is None or self.last_frame_at < since or not app.screen_stack:
            return None
        pending = getattr(app, "_repaint_pending", None)
        if pending is None or pending() or not shows(app.screen):
            return None
        self._shows = None
        return self.last_frame_at

    async def wait(self) -> float:
        await asyncio.wait_for(self._shown.wait(), _FRAME_DEADLINE_S)
        assert self.shown_at is not None
        return self.shown_at


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


class _Timeline:
    """What the app's loop spent its time on (``--explain``): spans of the node's updates
    being shown, screen layouts, compositor frames and garbage collections, each a
    (start, end) pair on ``time.perf_counter``'s clock."""

    KINDS = ("updates", "filter", "measure", "layout", "frame", "gc")

    def __init__(self) -> None:
        self.spans: dict[str, list[tuple[float, float]]] = {kind: [] for kind in self.KINDS}
        self._gc_started = 0.0
        self._depth = 0
        self.full_collections: list[float] = []  # when each generation-2 collection ended
        self.releases: list[float] = []  # when NodeFilter.release_frames let frames go
        self._undo: list[Callable[[], None]] = []

    def install(self, app: GossipApp) -> None:
        self._wrap(app, "_flush_updates", "updates")
        # The filter's text applied to the table (its rows rebuilt), and the table's idle
        # work after it (the new rows measured, the virtual size).
        self._wrap(NodesTable, "set_filter", "filter")
        self._wrap(NodesTable, "_update_dimensions", "measure")
        # On the class: every screen's (a form's too); its update timer looks them up
        # on the screen each time.
        self._wrap(Screen, "_refresh_layout", "layout")
        self._wrap(Screen, "_compositor_refresh", "frame")
        release = NodeFilter.release_frames

        def released(field: NodeFilter) -> None:
            self.releases.append(time.perf_counter())
            release(field)

        NodeFilter.release_frames = released  # type: ignore[method-assign,assignment]
        self._undo.append(lambda: setattr(NodeFilter, "release_frames", release))
        gc.callbacks.append(self._on_gc)
        self._undo.append(lambda: gc.callbacks.remove(self._on_gc))

    def uninstall(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def _wrap(self, owner: Any, name: str, kind: str) -> None:
        inner = getattr(owner, name)
        spans = self.spans[kind]

        def timed(*args: Any, **kwargs: Any) -> Any:
            # A layout ends with its frame: that frame counts as the layout's.
            if self._depth:
                return inner(*args, **kwargs)
            self._depth += 1
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spans.append((started, time.perf_counter()))
                self._depth -= 1

        setattr(owner, name, timed)
        if isinstance(owner, type):
            self._undo.append(lambda: setattr(owner, name, inner))
        else:
            self._undo.append(lambda: delattr(owner, name))

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        ended = time.perf_counter()
        self.spans["gc"].append((self._gc_started, ended))
        if info["generation"] == 2:
            self.full_collections.append(ended)

    def release_wait(self, start: float, end: float) -> float | None:
        """For a press from ``start`` to its frame at ``end``: seconds from the last
        NodeFilter.release_frames before the frame to the start of the layout or frame
        that wrote it (Textual's refresh timer runs them at most every 1/60 s)."""
        released = [at for at in self.releases if start < at < end]
        begun = [a for kind in ("layout", "frame") for a, _b in self.spans[kind] if a < end]
        if not released or not begun or max(begun) < released[-1]:
            return None
        return max(begun) - released[-1]

    def within(self, start: float, end: float) -> dict[str, tuple[int, float]]:
        """Per kind: how many spans overlap [start, end] and their seconds inside it."""
        found: dict[str, tuple[int, float]] = {}
        for kind, spans in self.spans.items():
            inside = [min(end, b) - max(start, a) for a, b in spans if b > start and a < end]
            found[kind] = (len(inside), sum(inside))
        full = sum(1 for ended in self.full_collections if start < ended < end)
        found["full_gc"] = (full, 0.0)
        released = [at for at in self.releases if start < at < end]
        # The last release before the frame: (how many, seconds from it to the frame).
        found["release"] = (len(released), end - released[-1] if released else 0.0)
        return found


@attrs.frozen
class _Explain:
    """--explain: the timeline, and the slow presses explained so far."""

    timeline: _Timeline = attrs.field(factory=_Timeline)
    slow: list[_Slow] = attrs.field(factory=list)
    release_waits: list[float] = attrs.field(factory=list)  # per filter press


@attrs.frozen
class _Slow:
    """One press over _SLOW_S, explained (see _Timeline)."""

    press: str
    frame_s: float
    cpu_s: float
    parts: dict[str, tuple[int, float]]
    lines: int  # table lines drawn afresh between the key and its frame

    def line(self) -> str:
        # Updates, the filter, the table's idle measuring, layouts and frames never nest (a
        # layout's frame is the layout's; the filter applied from a tick's updates is the
        # updates'), gc
        # runs inside any of them: "other" is the press's own handling and the loop's
        # message passing, plus any time the process waited for a core (wall minus cpu).
        nested_free = sum(
            self.parts[kind][1] for kind in ("updates", "filter", "measure", "layout", "frame")
        )
        other = self.frame_s - nested_free
        cells = [f"{self.press:8} {self.frame_s * 1000:6.1f} ms:"]
        for kind in _Timeline.KINDS:
            count, seconds = self.parts[kind]
            cells.append(f"{kind} {seconds * 1000:5.1f} ({count})")
        cells[-1] += f" of which full {self.parts['full_gc'][0]}"
        cells.append(f"other {other * 1000:5.1f}")
        cells.append(f"| cpu {self.cpu_s * 1000:5.1f}")
        cells.append(f"lines {self.lines:3}")
        releases, wait = self.parts["release"]
        if releases:
            cells.append(f"release->frame {wait * 1000:5.1f}")
        return "  ".join(cells)


async def _timed(
    pilot: Pilot[Any],
    key: str,
    shows: Callable[[Screen[Any]], bool],
    probe: _FrameProbe,
    profiles: _Profiles,
    name: str,
    explain: _Explain | None,
) -> tuple[float, float]:
    """(frame, idle) seconds of one press of ``key``; ``shows(screen)`` tells whether a
    frame of ``screen`` shows the press's effect."""
    profiles.start(name)
    probe.expect(shows)
    cpu_started = time.process_time()
    lines_started = probe.lines_rendered()
    started = time.perf_counter()  # press_keys hands the key to the driver at once
    await pilot.press(key)
    # Pilot.pause, spelled out: the idle figure is taken before its forced repaint, which
    # could otherwise stand in for the frame the app draws on its own.
    await pilot._wait_for_screen()
    await wait_for_idle(0)
    idle = time.perf_counter() - started
    shown = probe.already_shown(started)
    if shown is None:
        shown = await probe.wait()
    else:
        probe.shown_cpu = time.process_time()
        probe.shown_lines = probe.lines_rendered()
    frame = shown - started
    pilot.app.screen._on_timer_update()
    profiles.stop(name)
    if explain is not None and name == "filter":
        wait = explain.timeline.release_wait(started, shown)
        if wait is not None:
            explain.release_waits.append(wait)
    if explain is not None and frame > _SLOW_S:
        parts = explain.timeline.within(started, started + frame)
        lines = probe.shown_lines - lines_started
        explain.slow.append(_Slow(name, frame, probe.shown_cpu - cpu_started, parts, lines))
    return frame, idle


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
        # The process's collector as the CLI's dashboard runs it (run_dashboard).
        **({} if QuietCollector is None or args.python_gc else {"collector": QuietCollector()}),
    )
    results: dict[str, Any] = {"nodes": args.nodes, "refresh_s": args.refresh}
    profiles = _Profiles(args.profile, args.profile_prefix)
    explain = _Explain() if args.explain else None
    async with app.run_test(size=(args.width, args.height)) as pilot:
        probe = _FrameProbe(app)
        if explain is not None:
            explain.timeline.install(app)
        main_screen = app.screen
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
            moves: list[tuple[float, float]] = []
            for _ in range(args.presses if "j" in args.only else 0):
                row = table.cursor_row
                if row >= table.row_count - 1:
                    await pilot.press("g")  # back to the top, untimed
                    await pilot.pause()
                    row = table.cursor_row

                def moved(screen: Screen[Any], row: int = row) -> bool:
                    return screen is main_screen and table.cursor_row == row + 1

                moves.append(await _timed(pilot, "j", moved, probe, profiles, "j", explain))
                if table.cursor_row != row + 1:
                    raise SystemExit(f"j did not move the cursor from row {row}")
            if moves:
                results["j"] = _summaries(moves)

            await pilot.press("slash")
            await pilot.pause()
            field = app.focused
            if not isinstance(field, Input):
                raise SystemExit(f"/ focused {field!r}, not the filter")
            typed: list[tuple[float, float]] = []
            text = ""
            for index in range(args.presses if "filter" in args.only else 0):
                char = "0123456789"[index % 10]
                if len(text) >= 3:
                    field.value = text = ""
                    await pilot.pause()
                text += char

                # The character in the field and the table filtered by it.
                def filtered(screen: Screen[Any], text: str = text) -> bool:
                    return (
                        screen is main_screen
                        and field.value == text
                        and table.filter_text == " ".join(text.split())
                    )

                typed.append(
                    await _timed(pilot, char, filtered, probe, profiles, "filter", explain)
                )
                if field.value != text:
                    raise SystemExit(f"the filter reads {field.value!r}, not {text!r}")
            if typed:
                results["filter"] = _summaries(typed)
            await pilot.press("escape")
            table.focus()
            await pilot.pause()

            def form_shown(screen: Screen[Any]) -> bool:
                # The form on top with its fields laid out (a frame of the bare screen
                # would not count).
                if not isinstance(screen, KeyFormScreen) or screen is not app.screen:
                    return False
                fields = screen.query(Input)
                visible = screen._compositor.visible_widgets
                return bool(fields) and all(field in visible for field in fields)

            forms: list[tuple[float, float]] = []
            for _ in range(max(10, args.presses // 10) if "set_form" in args.only else 0):
                screens = len(app.screen_stack)
                forms.append(
                    await _timed(pilot, "s", form_shown, probe, profiles, "set_form", explain)
                )
                if len(app.screen_stack) != screens + 1:
                    raise SystemExit("s did not open the set-key form")
                await pilot.press("escape")
                await pilot.pause()
            if forms:
                results["set_form"] = _summaries(forms)
        finally:
            churning.cancel()
            profiles.write()
            if explain is not None:
                explain.timeline.uninstall()
    if explain is not None:
        results["slow"] = [attrs.asdict(slow) for slow in explain.slow]
        waits = explain.release_waits
        results["release_wait"] = _summary(waits) if waits else None
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--presses", type=int, default=200)
    parser.add_argument("--refresh", type=float, default=0.5, help="the dashboard's tick")
    parser.add_argument("--key-changes", type=int, default=20, help="per tick")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=45)
    parser.add_argument(
        "--only",
        action="append",
        choices=_PRESSES,
        help="time only these presses (repeatable; all three by default)",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--profile",
        choices=("cprofile", "pyinstrument"),
        help="profile the timed presses (pyinstrument: pip install pyinstrument)",
    )
    parser.add_argument("--profile-prefix", default="/tmp/keypress-", help="profiles' paths")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="break down each press over 100 ms: updates, layouts, frames, gc, the rest",
    )
    parser.add_argument(
        "--python-gc",
        action="store_true",
        help="leave full collections to Python, not the dashboard's QuietCollector",
    )
    args = parser.parse_args()
    args.only = tuple(args.only or _PRESSES)
    results = asyncio.run(_measure(args))
    if args.json:
        json.dump(results, sys.stdout)
        print()
    else:
        print(f"{args.nodes} nodes, a tick every {args.refresh:g} s; median / p99 / max ms")
        print(f"  {'':9} {'frame (key to its frame)':>26}   {'idle (Pilot press+pause)':>26}")
        for name in _PRESSES:
            if name not in results:
                continue
            cells = [
                f"{r['median_ms']:7.1f} {r['p99_ms']:7.1f} {r['max_ms']:7.1f}"
                for r in (results[name]["frame"], results[name]["idle"])
            ]
            presses = results[name]["frame"]["presses"]
            print(f"  {name:9} {cells[0]:>26}   {cells[1]:>26}   ({presses} presses)")
        if args.explain:
            slow = results["slow"]
            print(f"presses over {_SLOW_S * 1000:.0f} ms (key to frame), what ran meanwhile:")
            print("  ms (count); gc runs inside the others; a layout includes its frame;")
            print("  other: the press's own handling and message passing")
            for press in slow:
                print("  " + _Slow(**press).line())
            if not slow:
                print("  none")
            wait = results["release_wait"]
            if wait is not None:
                print(
                    "filter keys, frames let go to their frame's start: median / p99 / max "
                    f"{wait['median_ms']} / {wait['p99_ms']} / {wait['max_ms']} ms "
                    f"({wait['presses']} presses)"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
