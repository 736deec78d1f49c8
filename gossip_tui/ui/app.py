"""The dashboard app: layout, bindings, and the glue between Trio's messages and the widgets.

One concern, though over 400 lines: the App itself (its layout, bindings and actions, and
the way out: quit, signals and a closed terminal all leave first). The widgets, screens and
the view model live in their own modules.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import termios
import threading
import traceback
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial
from typing import Any, ClassVar

import attrs
import outcome
from rich.console import RenderableType
from rich.text import Text
from textual import events, on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.command import CommandPalette
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widgets import DataTable, Input

from gossip_tui.core.engine import LivenessReadings
from gossip_tui.core.models import Liveness, SocketAddress
from gossip_tui.ui._collector import QuietCollector
from gossip_tui.ui._format import DEFAULT_PHI_THRESHOLD, format_age
from gossip_tui.ui._frames import PromptScreen
from gossip_tui.ui._keys import protection_of
from gossip_tui.ui._node_api import (
    NodeEvent,
    NodeFactory,
    NodeHandle,
    NodeIsLive,
    default_node_factory,
)
from gossip_tui.ui._trio_bridge import (
    HttpService,
    LivenessRead,
    NodeEventsReceived,
    NodeReady,
    TrioBridge,
    TrioFinished,
)
from gossip_tui.ui._view_model import ClusterView, ClusterViewModel, HeldChanges, ViewChanges
from gossip_tui.ui.commands import GossipCommands
from gossip_tui.ui.demo import DemoCluster, DemoNotice
from gossip_tui.ui.demo_workers import WorkerDemoCluster, demo_cluster
from gossip_tui.ui.screens.agreement import AgreementScreen
from gossip_tui.ui.screens.help_screen import HelpScreen
from gossip_tui.ui.screens.key_forms import (
    ConfirmDeleteScreen,
    ConfirmForgetScreen,
    ConfirmProtectedScreen,
    ConfirmScreen,
    KeyFormMode,
    KeyFormResult,
    KeyFormScreen,
)
from gossip_tui.ui.screens.key_grid import KeyGridScreen
from gossip_tui.ui.screens.node_screen import NodeScreen
from gossip_tui.ui.screens.propagation import PropagationScreen
from gossip_tui.ui.widgets.cluster_header import ClusterHeader
from gossip_tui.ui.widgets.event_log import EventLog, LiveHistory
from gossip_tui.ui.widgets.local_keys import LocalKeys
from gossip_tui.ui.widgets.node_detail import NodeDetail
from gossip_tui.ui.widgets.nodes_table import COLUMNS, NodeFilter, NodesTable
from gossip_tui.ui.widgets.steady_footer import SteadyFooter

Clock = Callable[[], datetime]
# Signals that stop the dashboard as `q` does (a terminal closed is SIGHUP): the node says
# goodbye and the terminal is restored. Python's default for both kills the process on the
# spot, with the screen in the alternate buffer and no word to the peers.
_EXIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

# Actions that act on the main screen: disabled while another screen is up.
_MAIN_SCREEN_ACTIONS = frozenset(
    {"set_key", "edit_key", "delete_key", "set_key_ttl", "kill_peer", "help"}
    | {"filter", "clear_filter", "cycle_sort", "reverse_sort", "sort_column", "copy"}
    | {"toggle_pause", "next_theme", "forget_node"}
    | {"propagation", "agreement", "key_grid"}
)
# One key per sort column, in the table's order (htop's F6 and k9s's shift-letter, as
# digits: they are free everywhere and read left to right like the columns).
_SORT_BINDINGS: list[BindingType] = [
    Binding(
        str(index),
        f"sort_column('{column.key}')",
        f"Sort by {column.label.lower()}",
        show=False,
        tooltip=f"Sort by {column.label.lower()} (again: reverse)",
    )
    for index, column in enumerate(COLUMNS, start=1)
]
_SORT_HELP = "Column sort; again flips"
_CYCLE_SORT_HELP = "Sort next / reverse"
# The node's updates wait behind the keys queued before them at most this long (seconds).
_FLUSH_AT_THE_LATEST = 0.25
# Below this width the panes stack in two columns; from it on, three.
_WIDE = 150


class UpdatesDue(Message):
    """The node's updates may be shown once the keys ahead of this message have acted
    (see GossipApp._after_key_frames): it bubbles from the focused widget to the app."""


class FilterDue(Message):
    """The filter's text may be applied to the nodes table: every keystroke typed into the
    field before this message has changed the text (see GossipApp._filter_changed)."""


class FilterShown(Message):
    """The filter's text is applied and the table's highlight has reached the app ahead of
    this message: the frames held since the text changed may go (see _apply_filter)."""


def _detach_from_a_lost_terminal() -> None:
    """Point the standard streams at /dev/null if their terminal has hung up (closed).

    Writes to a hung-up terminal fail, which ends Textual's writer thread; its queue then
    fills and the next write blocks the loop for good (and the Trio guest run on it, the
    node's goodbye with it). With nowhere to draw, drawing into /dev/null is right."""
    for fd in (0, 1, 2):
        try:
            termios.tcgetattr(fd)
        except termios.error as error:
            if error.args[0] != errno.EIO:  # not a terminal at all: leave it be
                continue
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, fd)
            os.close(devnull)


def _threshold_of(config: Any) -> float:
    """The phi threshold the node judges with, so the colours turn red where it does."""
    detector = getattr(config, "failure_detector", None)
    threshold = getattr(detector, "phi_threshold", None)
    return float(threshold) if isinstance(threshold, int | float) else DEFAULT_PHI_THRESHOLD


def _local_now() -> datetime:
    return datetime.now().astimezone()


class GossipApp(App[None]):
    """A live view of one node's cluster, with editing of that node's own keys.

    ``node_factory(config)`` opens the node (default: ``gossip_tui.node.open_node``); it runs
    in a Trio guest run on Textual's loop for as long as the app is mounted. The node's
    events feed a view model (gossip_tui.ui._view_model) at once; heartbeats, phi and ages
    are read every ``refresh_interval`` seconds; the live-node count is sampled every
    ``live_sample_interval`` seconds for the sparkline.
    ``clock`` stamps the event log and ``cursor_blink`` is for inputs (tests turn both fixed).
    """

    CSS_PATH = "styles/app.tcss"
    TITLE = "gossip-tui"
    COMMANDS = App.COMMANDS | {GossipCommands}
    # The keys that open a form or move focus are priority bindings: they run as the app
    # routes the key, before the keys typed after it are routed (a binding found by
    # bubbling up from the focused widget runs only after those, which then go astray).
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "set_key", "Set", priority=True, tooltip="Set a key on this node"),
        Binding("e", "edit_key", "Edit", priority=True, tooltip="Edit the local key"),
        Binding("d", "delete_key", "Del", priority=True, tooltip="Delete the local key"),
        Binding("t", "set_key_ttl", "TTL", show=False, priority=True, tooltip="Set a key with TTL"),
        Binding("slash", "filter", "Filter", priority=True, tooltip="Filter: text, key=value"),
        Binding("o", "cycle_sort", "Sort", tooltip="Sort by the next column"),
        Binding("O", "reverse_sort", "Reverse", show=False, tooltip="Reverse the sort order"),
        *_SORT_BINDINGS,
        Binding(
            "c",
            "copy",
            "Copy",
            show=False,
            tooltip="Copy id or value",
        ),
        Binding("p", "toggle_pause", "Pause", tooltip="Pause / resume the view"),
        Binding(
            "K", "key_grid", "Grid", show=False, priority=True, tooltip="One key on every node"
        ),
        Binding("T", "next_theme", "Theme", show=False, tooltip="Next theme"),
        Binding("P", "propagation", "Propagation", show=False, tooltip="My keys: held by peers"),
        Binding("A", "agreement", "Agreement", show=False, tooltip="Nodes grouped by view"),
        Binding("x", "kill_peer", "Kill peer", tooltip="Demo: stop a random peer"),
        Binding("F", "forget_node", "Forget", show=False, tooltip="Forget the dead node here"),
        Binding("escape", "clear_filter", "Clear filter", show=False, tooltip="Clear the filter"),
        Binding("question_mark", "help", "Help", priority=True, tooltip="This help"),
        Binding("q", "quit", "Quit", tooltip="Stop the node and quit"),
        Binding(
            "ctrl+c", "quit", "Quit", show=False, priority=True, tooltip="Stop the node and quit"
        ),
    ]

    def __init__(
        self,
        config: Any,
        node_factory: NodeFactory | None = None,
        *,
        demo: DemoCluster | WorkerDemoCluster | None = None,
        http: HttpService | None = None,
        refresh_interval: float = 0.5,
        live_sample_interval: float = 1.0,
        phi_threshold: float | None = None,
        clock: Clock = _local_now,
        cursor_blink: bool = True,
        collector: QuietCollector | None = None,
    ) -> None:
        super().__init__()
        self._config = config
        self._node_factory = node_factory
        self._demo = demo
        self._http = http
        self._refresh_interval = refresh_interval
        self._live_sample_interval = live_sample_interval
        self._phi_threshold = phi_threshold if phi_threshold is not None else _threshold_of(config)
        self._clock = clock
        self._cursor_blink = cursor_blink
        # The process's full collections, where the app owns the process (run_dashboard).
        self._collector = collector
        self._bridge: TrioBridge | None = None
        self._previous_signal_handlers: dict[int, Any] = {}
        self._sampler: Timer | None = None
        self.node: NodeHandle | None = None
        self.view_model: ClusterViewModel | None = None
        self.trio_outcome: outcome.Outcome[None] | None = None
        self.trio_traceback: str | None = None
        # While the view is paused: the changes held back (see HeldChanges).
        self.held: HeldChanges | None = None
        # Keys that arrived while a screen was being put up, before it had a focused widget
        # to take them: replayed in order once it has one (see hold_keys).
        self._held_keys: list[events.Key] | None = None
        # The node's updates waiting for the keys queued before them (see _after_key_frames).
        self._pending_updates: list[Callable[[], None]] = []
        self._flush_after_frame = False
        # The filter's text not yet applied to the table, while a FilterDue is on its way.
        self._filter_pending: str | None = None
        # The key forms, one per mode, built on first use and kept (see KeyFormScreen).
        self._key_forms: dict[KeyFormMode, KeyFormScreen] = {}

    # -- layout ----------------------------------------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        # The dashboard's frames go out as soon as they are let go (see PromptScreen).
        return PromptScreen(id="_default")

    def compose(self) -> ComposeResult:
        # A grid whose shape follows the width (on_resize, app.tcss): the panes keep this
        # order and the grid places them, two columns below _WIDE, three from it on.
        with Horizontal(id="top"):
            yield ClusterHeader(id="cluster-header")
            yield LiveHistory(id="live-history")
        with Vertical(id="nodes-pane"):
            yield NodeFilter(id="node-filter", cursor_blink=self._cursor_blink)
            yield NodesTable(id="nodes-table", phi_threshold=self._phi_threshold)
        yield EventLog(id="event-log")
        yield NodeDetail(id="node-detail", phi_threshold=self._phi_threshold)
        yield LocalKeys(id="local-keys")
        yield SteadyFooter()

    def on_resize(self, event: events.Resize) -> None:
        self._main_screen.set_class(event.size.width >= _WIDE, "-wide")

    @property
    def _main_screen(self) -> Screen[Any]:
        # The dashboard's panes live on the first screen, under any form or drill-down.
        return self.screen_stack[0]

    @property
    def nodes_table(self) -> NodesTable:
        return self._main_screen.query_one("#nodes-table", NodesTable)

    @property
    def local_keys(self) -> LocalKeys:
        return self._main_screen.query_one("#local-keys", LocalKeys)

    @property
    def event_log(self) -> EventLog:
        return self._main_screen.query_one("#event-log", EventLog)

    @property
    def node_detail(self) -> NodeDetail:
        return self._main_screen.query_one("#node-detail", NodeDetail)

    # -- Trio lifecycle --------------------------------------------------------------------

    def on_mount(self) -> None:
        self.node_detail.border_title = "Node"
        self.event_log.border_title = "Events"
        self._main_screen.add_class("-dashboard")
        self._main_screen.set_class(self.size.width >= _WIDE, "-wide")
        self.screen.set_focus(self.nodes_table)
        if self._collector is not None:
            self._collector.install()
            self.set_interval(self._collector.check_every, self._collector.collect_if_quiet)
        self._note("starting node…")
        factory = self._node_factory if self._node_factory is not None else default_node_factory()
        self._bridge = TrioBridge(
            self,
            factory,
            self._config,
            refresh_interval=self._refresh_interval,
            service=self._demo,
            http=self._http,
        )
        self._bridge.start()
        self._catch_exit_signals()

    async def on_unmount(self) -> None:
        # Cancel the node and everything beside it, and wait for Trio to finish: an abandoned
        # guest run would break every later trio.run() in this process.
        if self._bridge is not None:
            self._record_outcome(await self._bridge.stop())
        self._release_exit_signals()

    async def action_quit(self) -> None:
        """Stop the node, which says goodbye to its peers (bounded by its leave timeout),
        then quit. The node is stopped here, before Textual takes the screens down, so
        the goodbye does not depend on an orderly teardown (a closed terminal has none)."""
        if self._bridge is not None:
            self._note("leaving the cluster…")
            self._record_outcome(await self._bridge.stop())
        if not isinstance(self.trio_outcome, outcome.Error):  # else it exits with code 1
            self.exit()

    def _catch_exit_signals(self) -> None:
        # signal.signal rather than the loop's add_signal_handler: that one takes over the
        # wakeup fd, which the Trio guest run has set for itself. The handler runs on the
        # main thread between two bytecodes, so it only schedules the quit on the loop.
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()

        def on_signal(signum: int, _frame: object) -> None:
            if signum == signal.SIGHUP:
                _detach_from_a_lost_terminal()
            loop.call_soon_threadsafe(self.call_later, self.action_quit)

        for signum in _EXIT_SIGNALS:
            self._previous_signal_handlers[signum] = signal.signal(signum, on_signal)

    def _release_exit_signals(self) -> None:
        for signum, handler in self._previous_signal_handlers.items():
            # None: a handler set outside Python, which cannot be put back; the default then.
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous_signal_handlers.clear()

    def on_trio_finished(self, message: TrioFinished) -> None:
        self._record_outcome(message.result)
        if not isinstance(message.result, outcome.Error):
            # The node closed on its own: nothing left to show.
            self.exit()

    def _record_outcome(self, result: outcome.Outcome[None] | None) -> None:
        if result is None or self.trio_outcome is not None:
            return
        self.trio_outcome = result
        if isinstance(result, outcome.Error):
            self.trio_traceback = "".join(traceback.format_exception(result.error))
            self.exit(return_code=1, message=Text(self.trio_traceback))

    # -- messages from Trio ----------------------------------------------------------------

    # Trio keeps posting until it is cancelled, which happens after the screens are gone:
    # messages still queued then find no widgets, hence the is_running checks.

    def on_node_ready(self, message: NodeReady) -> None:
        node = message.node
        self.node = node
        seeds = getattr(self._config, "seeds", None) or ()
        self.view_model = ClusterViewModel(
            node.self_id, node.node_snapshot, node.key_expiries, seed_count=len(seeds)
        )
        if not self.is_running:
            return
        self.nodes_table.key_values_of = self.view_model.key_values_of
        self.node_detail.history_of = self.view_model.history.of
        self.node_detail.restart_of = self.view_model.restart_of
        http = message.http_addr
        self._main_screen.query_one(ClusterHeader).set_identity(node.cluster_id, node.self_id, http)
        self._note(
            f"node {node.self_id} is up: gossip on {node.gossip_addr} (udp)"
            + (f", HTTP API on http://{http}/" if http else "")
        )

    # A tick (the readings) and the node's events are shown behind the keys already
    # queued, after the frame that shows those keys' effect: a key pressed just before a
    # tick has its effect on screen first, not in a frame that also redraws every row the
    # tick touched. The updates wait in one list, in the order they came. A key travels
    # from the app to the focused widget and bubbles back up through its ancestors to the
    # app, whose bindings act on it; the UpdatesDue message takes that same path, behind
    # it in every queue. When it arrives, the keys have acted: if a repaint is pending, the
    # updates are shown once the next frame has been written, else at once. A message lost
    # with a widget removed meanwhile only delays them: a timer shows them anyway (a lost
    # batch of events would be lost state).

    def _after_key_frames(self, update: Callable[[], None]) -> None:
        if not (self.is_running and self.screen_stack):
            return
        self._pending_updates.append(update)
        if len(self._pending_updates) > 1:
            return  # a flush is on its way
        target = self.focused
        if target is None or not target.post_message(UpdatesDue()):
            self._flush_updates()
            return
        self.set_timer(_FLUSH_AT_THE_LATEST, self._flush_updates)

    def on_updates_due(self, message: UpdatesDue) -> None:
        message.stop()
        if self._repaint_pending():
            self._flush_after_frame = True
        else:
            self._flush_updates()

    def _repaint_pending(self) -> bool:
        """Whether the screen, or the focused widget a key just acted on, waits for a frame
        (the widget tells its screen only when it is next idle)."""
        if not self.screen_stack:
            return False
        screen, focused = self.screen, self.focused
        if screen._dirty_widgets or screen._layout_required or screen._repaint_required:
            return True
        return focused is not None and (
            focused._repaint_required or focused._layout_required or focused._scroll_required
        )

    def _display(self, screen: Screen[Any], renderable: RenderableType | None) -> None:
        super()._display(screen, renderable)
        if self._flush_after_frame and renderable is not None:
            self._flush_after_frame = False
            self.call_later(self._flush_updates)

    def _flush_updates(self) -> None:
        self._flush_after_frame = False
        updates, self._pending_updates = self._pending_updates, []
        for update in updates:
            update()

    def on_liveness_read(self, message: LivenessRead) -> None:
        self._after_key_frames(partial(self._apply_readings, message.readings))

    def on_node_events_received(self, message: NodeEventsReceived) -> None:
        self._after_key_frames(partial(self._apply_events, message.events))

    def _apply_readings(self, readings: LivenessReadings) -> None:
        if self.is_running and self.view_model is not None and self.screen_stack:
            self._show(self.view_model.apply_readings(readings))
            if self._sampler is None:
                # The sparkline's time axis: one sample a second, whatever the reading rate.
                self._sample_live()
                self._sampler = self.set_interval(self._live_sample_interval, self._sample_live)

    def _apply_events(self, node_events: tuple[NodeEvent, ...]) -> None:
        if self.is_running and self.view_model is not None and self.screen_stack:
            self._show(self.view_model.apply_events(node_events))

    def on_demo_notice(self, message: DemoNotice) -> None:
        if self.is_running:
            self._note(message.text, style="bold red" if message.error else "bold magenta")

    @property
    def last_snapshot(self) -> ClusterView | None:
        """The cluster as the dashboard has it now (None before the node is up)."""
        return self.view_model.view() if self.view_model is not None else None

    def _show(self, changes: ViewChanges) -> None:
        """Hand each widget its part of ``changes``; a widget with no part is left alone.
        While the view is paused the changes are held back, and handed over on resume."""
        model = self.view_model
        assert model is not None
        if self.held is not None:
            self.held.hold(changes)
            return
        main = self._main_screen
        with self.batch_update():
            if changes.rows_changed:
                main.query_one(ClusterHeader).set_counts(model.counts)
            if changes.seeds:
                main.query_one(ClusterHeader).set_seeds(model.seeds)
            if changes.rows_changed or changes.ticked:
                self.nodes_table.apply(changes, model.taken_at)
            if changes.local_keys:
                self.local_keys.apply(
                    changes.local_keys,
                    model.local_key_values,
                    model.local_countdowns,
                    model.local_expired,
                )
            if changes.selection:
                self.node_detail.show(model.selected, model.taken_at)
                if isinstance(self.screen, NodeScreen):
                    self.screen.show(model.selected, model.taken_at)
            for screen in self.screen_stack:
                if isinstance(screen, KeyGridScreen):
                    screen.apply(changes)
            if changes.log:
                self.event_log.add_events(changes.log, self._clock())
                # A key's new value can move its node in or out of a key=value filter
                # without changing anything its row shows.
                self.nodes_table.refilter()

    def _sample_live(self) -> None:
        if self.held is not None:
            return  # a paused view stands still, its sparkline too
        # The main screen holds the sparkline, even while a form is on top of it; the timer
        # can also fire while that screen is being built or torn down: skip such a tick.
        if not self.screen_stack:
            return
        main_screen = self.screen_stack[0]
        history = next(main_screen.query(LiveHistory).results(LiveHistory), None)
        if self.view_model is not None and history is not None:
            history.add_sample(self.view_model.counts.live)

    def _note(self, text: str, style: str = "italic") -> None:
        self.event_log.note(text, self._clock(), style)

    # -- widgets' messages -----------------------------------------------------------------

    def on_nodes_table_node_highlighted(self, message: NodesTable.NodeHighlighted) -> None:
        # screen_stack: a highlight still queued when the app exits finds no panes.
        if self.view_model is not None and self.screen_stack:
            changes = self.view_model.select(message.node)
            # The user's own move shows at once, paused or not; the rest waits for resume.
            self.node_detail.show(self.view_model.selected, self.view_model.taken_at)
            if self.held is not None:
                self.held.hold(attrs.evolve(changes, selection=False))
            else:
                self._show(attrs.evolve(changes, selection=False))

    # Typing ahead of the table coalesces: each text the field takes waits in
    # _filter_pending, and one FilterDue applies the last. It is posted to the field, so it
    # queues behind the keys already handed to the field and their Input.Changed (all of
    # them bubble up the same queues, in order, to the app): a burst of characters filters
    # the rows once, with the text they spell, where each one rebuilt the rows for a text
    # already gone. A Changed that comes after the FilterDue starts another.

    @on(Input.Changed, "#node-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        on_its_way = self._filter_pending is not None
        self._filter_pending = event.value
        if not on_its_way and not event.input.post_message(FilterDue()):
            self._apply_filter()

    def on_filter_due(self, message: FilterDue) -> None:
        message.stop()
        self._apply_filter()

    def _apply_filter(self) -> None:
        text, self._filter_pending = self._filter_pending, None
        if text is not None and self.screen_stack:
            self.nodes_table.set_filter(text)
            # The field's frames wait (NodeFilter.hold_frames) for the table's highlight
            # to reach the detail pane too: FilterShown follows it up the same queues.
            if self.nodes_table.post_message(FilterShown()):
                return
        self._filter_shown()

    def on_filter_shown(self, message: FilterShown) -> None:
        message.stop()
        self._filter_shown()

    def _filter_shown(self) -> None:
        if self._filter_pending is None and self.screen_stack:
            self._main_screen.query_one(NodeFilter).release_frames()

    @on(Input.Submitted, "#node-filter")
    def _filter_submitted(self) -> None:
        self.screen.set_focus(self.nodes_table)

    def on_node_filter_dismissed(self, _message: NodeFilter.Dismissed) -> None:
        self.action_clear_filter()
        self.screen.set_focus(self.nodes_table)

    @on(DataTable.RowSelected)
    def _drill_down(self, event: DataTable.RowSelected) -> None:
        """Enter on a row: that node full-screen (on a local key: this node)."""
        model = self.view_model
        if model is None or not isinstance(self.screen, type(self._main_screen)):
            return
        if event.data_table is self.nodes_table:
            row = self.nodes_table.selected_row
            node = row.node if row is not None else None
        else:
            node = model.self_id
        if node is None:
            return
        selected = model.selected
        if selected is None or selected.node != node:
            selected = self.node.node_snapshot(node) if self.node is not None else None
        self.push_screen(
            NodeScreen(
                selected,
                model.taken_at,
                phi_threshold=self._phi_threshold,
                history_of=model.history.of,
                restart_of=model.restart_of,
            )
        )
        self.hold_keys()

    # -- type-ahead ------------------------------------------------------------------------

    def hold_keys(self) -> None:
        """Hold the keys that arrive until the screen just pushed has focused its widget
        (it calls release_keys): a key typed right after `s` belongs to the form."""
        if self._held_keys is None:
            self._held_keys = []

    def release_keys(self) -> None:
        """Replay the held keys, in order, to the screen now on top. Called through the
        message queue, behind every key that arrived before it: those are held too."""

        async def replay() -> None:
            held, self._held_keys = self._held_keys or [], None
            for key in held:
                await self._dispatch_key_now(key)

        self.call_later(replay)

    async def _dispatch_key_now(self, event: events.Key) -> None:
        # What App.on_event does with a key: priority bindings first, then the focused
        # widget (or the screen) and, from there, the usual binding chain.
        if not await self._check_bindings(event.key, priority=True):
            target = self.focused or self.screen
            target._forward_event(events.Key(event.key, event.character))

    async def on_event(self, event: events.Event) -> None:
        if self._collector is not None and isinstance(event, events.Key):
            self._collector.key_seen()
        if (
            self._held_keys is not None
            and isinstance(event, events.Key)
            and not event.is_forwarded
            and event.key != "ctrl+c"
        ):
            self._held_keys.append(event)
            return
        await super().on_event(event)

    # -- actions ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "kill_peer" and self._demo is None:
            return False  # no demo: no such key
        if not self.action_available(action):
            # Behind a form (a modal screen, the dashboard dimmed around it) the dashboard's
            # keys are disabled (None), not hidden (False): its footer keeps the same keys,
            # dimmed in place, where hiding them rebuilt it and laid the 500-row dashboard
            # out behind the form at every open and every close (see SteadyFooter). A
            # full screen's own footer lists only what it can do: hidden there.
            behind_a_form = self._modal_up and isinstance(self.screen, ModalScreen)
            return None if action in _MAIN_SCREEN_ACTIONS and behind_a_form else False
        # While an input has focus its keys are text, not commands (the app's bindings for
        # letters include priority ones, which come before the input's own handling).
        typing = isinstance(self.focused, Input)
        return not (action in _MAIN_SCREEN_ACTIONS and typing)

    @property
    def _modal_up(self) -> bool:
        # Other screens own the keyboard. The command palette is the exception: it closes
        # before it runs the action it lists.
        return len(self.screen_stack) > 1 and not isinstance(self.screen, CommandPalette)

    def action_available(self, action: str) -> bool:
        """Whether ``action`` can run now, keys aside (what the command palette lists)."""
        if action == "kill_peer" and self._demo is None:
            return False
        # No new form on top of a form.
        return not (action in _MAIN_SCREEN_ACTIONS and self._modal_up)

    def _push_form(self, screen: Screen[Any], callback: Callable[[Any], None]) -> None:
        self.push_screen(screen, callback)
        self.hold_keys()

    def _require_node(self) -> NodeHandle | None:
        if self.node is None:
            self.notify("The node is not up yet.", severity="warning")
        return self.node

    def _key_form(self, mode: KeyFormMode, *, key: str = "", value: str = "") -> KeyFormScreen:
        """The form for ``mode``, as new, with ``key`` and ``value`` in its fields."""
        form = self._key_forms.get(mode)
        if form is None:
            form = self._key_forms[mode] = KeyFormScreen(mode, cursor_blink=self._cursor_blink)
            # Installed, the form stays built when it is dismissed.
            self.install_screen(form, f"key-form-{mode.value}")
        form.prepare(key=key, value=value)
        return form

    def action_set_key(self) -> None:
        if self._require_node() is not None:
            self._push_form(self._key_form(KeyFormMode.SET), self._apply_key_form)

    def action_set_key_ttl(self) -> None:
        if self._require_node() is not None:
            self._push_form(self._key_form(KeyFormMode.SET_WITH_TTL), self._apply_key_form)

    def _focused_local_key(self, verb: str) -> str | None:
        """The local key `e` or `d` acts on: the one under the Local keys cursor, and only
        while that pane has focus (from another pane they would act on a row out of sight)."""
        keys = self.local_keys
        if self.focused is not keys:
            self.screen.set_focus(keys)
            self.notify(f"Pick the key in Local keys, then press {verb[0]} again.")
            return None
        key = keys.selected_key
        if key is None:
            self.notify(f"This node has no key to {verb}: set one with s.", severity="warning")
        return key

    def action_edit_key(self) -> None:
        if self._require_node() is None:
            return
        key = self._focused_local_key("edit")
        if key is None:
            return
        current = self.local_keys.value_of(key)
        value = current.value if current is not None and not current.is_deleted else ""
        self._push_form(
            self._key_form(KeyFormMode.EDIT, key=key, value=value), self._apply_key_form
        )

    def action_delete_key(self) -> None:
        if self._require_node() is None:
            return
        key = self._focused_local_key("delete")
        if key is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._change_key("delete", key, None)

        screen: ConfirmScreen = ConfirmDeleteScreen(key)
        if (why := protection_of(key)) is not None:
            screen = ConfirmProtectedScreen(key, "delete", why)
        self._push_form(screen, confirmed)

    def action_forget_node(self) -> None:
        """Forget the Nodes table's dead or left node (and the older generations its row
        stands for) in this node's view, after a confirmation."""
        node, model = self._require_node(), self.view_model
        row = self.nodes_table.selected_row
        if node is None or model is None:
            return
        if row is None:
            self.notify("Pick a dead or left node in Nodes, then press F.", severity="warning")
            return
        if row.liveness in (Liveness.SELF, Liveness.LIVE):
            self.notify(f"{row.node.node_id} is live: only a dead or left node can be forgotten.")
            return
        generations = (row.node, *model.folded_into(row.node))

        def confirmed(yes: bool | None) -> None:
            if not yes or self.view_model is None:
                return
            forgotten = []
            for generation in generations:
                try:
                    if node.forget(generation):
                        forgotten.append(generation)
                except NodeIsLive:  # it came back while the question was up
                    self.notify(f"{generation} is live again: kept.", severity="warning")
            # The row goes now, not with the node's event or the next reading.
            self._show(self.view_model.forget(forgotten))
            if forgotten:
                self._note(f"forgot {row.node} here", style="bold italic")

        self._push_form(ConfirmForgetScreen(str(row.node)), confirmed)

    def _apply_key_form(self, result: KeyFormResult | None) -> None:
        if result is None:
            return
        # The TTL form without a duration is chitchat's TTL (after the grace period).
        chitchat_ttl = result.mode is KeyFormMode.SET_WITH_TTL and result.ttl is None
        verb = "set_with_ttl" if chitchat_ttl else "set"
        why = protection_of(result.key)
        if why is None:
            self._change_key(verb, result.key, result.value, result.ttl)
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._change_key(verb, result.key, result.value, result.ttl)
            else:
                self._note(f"left {result.key!r} as it was", style="italic")

        self._push_form(ConfirmProtectedScreen(result.key, "change", why), confirmed)

    def _change_key(self, verb: str, key: str, value: str | None, ttl: float | None = None) -> None:
        node = self._require_node()
        if node is None:
            return
        try:
            if verb == "delete":
                node.delete(key)
            elif verb == "set_with_ttl":
                assert value is not None
                node.set_with_ttl(key, value)
            else:
                assert value is not None
                if ttl is None:
                    node.set(key, value)
                else:
                    node.set(key, value, ttl=ttl)
        except ValueError as error:
            what = verb.replace("_", " ")
            self.notify(str(error), title=f"Could not {what} {key!r}", severity="error")
            return
        # The change comes back as the node's events, and reaches the panes with them.
        lives = "" if ttl is None else f" for {format_age(ttl)}"
        self._note(f"local {verb.replace('_', ' ')} {key!r}{lives}", style="bold italic")

    def action_filter(self) -> None:
        field = self._main_screen.query_one(NodeFilter)
        field.add_class("visible")
        # At once, not with focus(): keys typed right after `/` are routed as they arrive,
        # and focus() would move only after them (to the table, or to bindings like `d`).
        self.screen.set_focus(field)

    def action_clear_filter(self) -> None:
        field = self._main_screen.query_one(NodeFilter)
        field.value = ""
        field.remove_class("visible")
        self.nodes_table.set_filter("")

    def action_cycle_sort(self) -> None:
        self.nodes_table.action_cycle_sort()

    def action_reverse_sort(self) -> None:
        self.nodes_table.action_reverse_sort()

    def action_sort_column(self, column: str) -> None:
        self.nodes_table.sort_by_key(column)

    def action_copy(self) -> None:
        """Copy what is under the cursor of the focused pane (OSC 52: works over ssh)."""
        text: str | None = None
        if self.focused is self.local_keys:
            key = self.local_keys.selected_key
            value = self.local_keys.value_of(key) if key is not None else None
            text = value.value if value is not None else None
            what = f"the value of {key!r}"
        else:
            row = self.nodes_table.selected_row
            text = row.node.node_id if row is not None else None
            what = f"node id {text!r}"
        if text is None:
            self.notify("Nothing to copy here.", severity="warning")
            return
        self.copy_to_clipboard(text)
        self.notify(f"Copied {what}.", timeout=2)

    @property
    def paused(self) -> bool:
        return self.held is not None

    def action_toggle_pause(self) -> None:
        main = self._main_screen
        if self.held is None:
            self.held = HeldChanges()
            main.add_class("-paused")
            self.nodes_table.border_subtitle = "PAUSED · p resumes"
            return
        held, self.held = self.held, None
        main.remove_class("-paused")
        self.nodes_table.border_subtitle = ""
        if self.view_model is not None and held.pushes:
            changes = held.release(self.view_model.rows)
            self._show(changes)
            if changes.rows_changed:
                self.nodes_table.refilter()

    def action_next_theme(self) -> None:
        names = sorted(self.available_themes)
        index = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(index + 1) % len(names)]
        self.notify(f"Theme: {self.theme}", timeout=2)

    def action_key_grid(self) -> None:
        """The key grid: for the key under the Local keys cursor when that pane has focus,
        else for the key typed next; the picker offers the selected node's keys."""
        model = self.view_model
        if self._require_node() is None or model is None:
            return
        key = self.local_keys.selected_key if self.focused is self.local_keys else None
        row = self.nodes_table.selected_row
        node = row.node if row is not None else model.self_id
        self.push_screen(
            KeyGridScreen(
                model,
                key or "",
                picks=sorted(model.key_values_of(node)),
                picks_of=node.node_id,
                cursor_blink=self._cursor_blink,
            )
        )
        self.hold_keys()

    def action_kill_peer(self) -> None:
        if self._demo is not None and not self._demo.request_kill():
            self.notify("The demo is busy; try again.", severity="warning")

    def action_propagation(self) -> None:
        if (node := self._require_node()) is not None:
            self.push_screen(PropagationScreen(node.propagation, self._refresh_interval))
            self.hold_keys()

    def action_agreement(self) -> None:
        if (node := self._require_node()) is not None:
            self.push_screen(AgreementScreen(node.agreement, self._refresh_interval))
            self.hold_keys()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.help_sections()))
        self.hold_keys()

    def help_sections(self) -> list[tuple[str, Iterable[BindingType]]]:
        dashboard: list[BindingType] = []
        for binding in self.BINDINGS:
            assert isinstance(binding, Binding)
            if binding.action == "kill_peer" and self._demo is None:
                continue
            if binding.action == "reverse_sort":
                continue  # on o's line: the help fits 80x24
            if binding.action == "clear_filter":
                continue  # the Filter section's esc says it (one line less, for the demo's x)
            if binding.action == "cycle_sort":
                binding = Binding("o", "cycle_sort", key_display="o/O", tooltip=_CYCLE_SORT_HELP)
            if binding.action.startswith("sort_column"):
                if binding.key == "1":  # the nine sort keys, as one line
                    dashboard.append(
                        Binding("1", "sort_column", key_display="1…9", tooltip=_SORT_HELP)
                    )
                continue
            dashboard.append(binding)
        dashboard.append(Binding(self.COMMAND_PALETTE_BINDING, "command_palette", "Commands"))
        dashboard.append(Binding("tab", "focus", "Move between panes", key_display="tab/⇧tab"))
        return [
            ("Dashboard", dashboard),
            ("Tables", _TABLE_BINDINGS),
            ("Filter", [*NodeFilter.BINDINGS, *_FILTER_BINDINGS]),
            ("Forms", [*_FORM_BINDINGS, *ConfirmScreen.BINDINGS]),
            ("Screens", [*NodeScreen.BINDINGS, *HelpScreen.BINDINGS]),
            ("Key grid", _KEY_GRID_HELP),
        ]


_TABLE_BINDINGS: list[BindingType] = [
    Binding("j,k", "move", "Next/previous row (↓/↑)"),
    Binding("g,G", "ends", "First / last row"),
    Binding("enter", "drill", "The node, full-screen"),
    Binding("click", "click", "On a header: sort"),
]
_KEY_GRID_HELP: list[BindingType] = [
    Binding("slash", "edit_query", "Type a key, or prefix. / *"),
    Binding("a", "toggle_absent", "Show/hide absent nodes"),
    Binding("o,O", "sort", "Sort next / reverse; 1…7"),
]
_FILTER_BINDINGS: list[BindingType] = [
    Binding("enter", "done", "Keep the filter"),
]
_FORM_BINDINGS: list[BindingType] = [
    Binding("enter", "submit", "Next field, then submit"),
    Binding("escape", "cancel", "Cancel"),
]


def run_app(app: GossipApp, *, headless: bool = False) -> int:
    """Run ``app`` until it exits; the exit code (non-zero after a Trio crash). The
    app's collector policy, if it has one, is given back once the app is gone."""
    try:
        app.run(headless=headless)
    finally:
        if app._collector is not None:
            app._collector.uninstall()
    return app.return_code or 0


async def serve_node_http(node: NodeHandle) -> SocketAddress | None:
    """The HTTP API over TCP on the node's gossip address, as a service of the node."""
    from gossip_tui.api import serve_node_http as serve

    return await serve(node)


def run_dashboard(
    config: Any,
    node_factory: NodeFactory | None = None,
    *,
    http: bool | HttpService = False,
    headless: bool = False,
) -> int:
    """Open the node described by ``config`` and show the dashboard until the user quits.

    With ``http`` the node also serves its HTTP API on the gossip address (TCP). Returns the
    exit code: 0 after a normal quit, 1 when the node's Trio run crashed (its traceback is
    printed on stderr once the screen is restored).
    """
    # True: the API on the gossip address; a service: the caller's (address and checks).
    service = http if callable(http) else (serve_node_http if http else None)
    app = GossipApp(config, node_factory, http=service, collector=QuietCollector())
    return run_app(app, headless=headless)


def run_demo(
    nodes: int,
    base_config: Any,
    node_factory: NodeFactory | None = None,
    *,
    restart_delay: float = 30.0,
    headless: bool = False,
    workers: int | None = None,
) -> int:
    """The dashboard on node 0 (``base_config``) with ``nodes - 1`` peers on 127.0.0.1.

    Peers take ephemeral ports and node 0's address as seed. Press `x` to stop a random
    peer; it restarts ``restart_delay`` seconds later with a new generation. The peers run
    in ``workers`` child processes (None: one per core; 0: in this process, beside node 0).
    Returns the exit code, as :func:`run_dashboard` does.
    """
    if nodes < 1:
        raise ValueError("a demo needs at least one node")
    demo = demo_cluster(
        nodes - 1,
        workers=workers,
        restart_delay=restart_delay,
        custom_factory=node_factory is not None,
    )
    app = GossipApp(base_config, node_factory, demo=demo, collector=QuietCollector())
    return run_app(app, headless=headless)
