"""The dashboard app: layout, bindings, and the glue between Trio's messages and the widgets."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, ClassVar

import outcome
from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.command import CommandPalette
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widgets import Footer, Input

from gossip_tui.core.models import ClusterSnapshot, SocketAddress
from gossip_tui.ui._format import DEFAULT_PHI_THRESHOLD
from gossip_tui.ui._node_api import NodeFactory, NodeHandle, default_node_factory
from gossip_tui.ui._trio_bridge import (
    HttpService,
    NodeEventsReceived,
    NodeReady,
    SnapshotReady,
    TrioBridge,
    TrioFinished,
)
from gossip_tui.ui.commands import GossipCommands
from gossip_tui.ui.demo import DemoCluster, DemoNotice
from gossip_tui.ui.screens.help_screen import HelpScreen
from gossip_tui.ui.screens.key_forms import (
    ConfirmDeleteScreen,
    KeyFormMode,
    KeyFormResult,
    KeyFormScreen,
)
from gossip_tui.ui.widgets.cluster_header import ClusterHeader
from gossip_tui.ui.widgets.event_log import EventLog, LiveHistory
from gossip_tui.ui.widgets.local_keys import LocalKeys
from gossip_tui.ui.widgets.node_detail import NodeDetail
from gossip_tui.ui.widgets.nodes_table import NodeFilter, NodesTable

Clock = Callable[[], datetime]

# Actions that act on the main screen: disabled while a modal screen is up.
_MAIN_SCREEN_ACTIONS = frozenset(
    {"set_key", "edit_key", "delete_key", "set_key_ttl", "kill_peer", "help"}
    | {"filter", "clear_filter", "cycle_sort", "reverse_sort"}
)


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
    in a Trio guest run on Textual's loop for as long as the app is mounted. A snapshot of
    the cluster is shown every ``refresh_interval`` seconds (and soon after each event); the
    live-node count is sampled every ``live_sample_interval`` seconds for the sparkline.
    ``clock`` stamps the event log and ``cursor_blink`` is for inputs (tests turn both fixed).
    """

    CSS_PATH = "styles/app.tcss"
    TITLE = "gossip-tui"
    COMMANDS = App.COMMANDS | {GossipCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "set_key", "Set key", tooltip="Set a key-value on this node"),
        Binding("e", "edit_key", "Edit", tooltip="Edit the selected key of this node"),
        Binding("d", "delete_key", "Delete", tooltip="Delete the selected key of this node"),
        Binding("t", "set_key_ttl", "Set TTL", tooltip="Set a key that expires (delete after TTL)"),
        Binding("slash", "filter", "Filter", tooltip="Filter nodes by id, address or status"),
        Binding("o", "cycle_sort", "Sort", tooltip="Sort the nodes table by the next column"),
        Binding("O", "reverse_sort", "Reverse", show=False, tooltip="Reverse the sort order"),
        Binding("k", "kill_peer", "Kill peer", tooltip="Demo: stop a random peer, restart it"),
        Binding("escape", "clear_filter", "Clear filter", show=False, tooltip="Clear the filter"),
        Binding("question_mark", "help", "Help", tooltip="Show every key binding"),
        Binding("q", "quit", "Quit", tooltip="Stop the node and leave"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True, tooltip="Quit"),
    ]

    def __init__(
        self,
        config: Any,
        node_factory: NodeFactory | None = None,
        *,
        demo: DemoCluster | None = None,
        http: HttpService | None = None,
        refresh_interval: float = 0.5,
        live_sample_interval: float = 1.0,
        phi_threshold: float | None = None,
        clock: Clock = _local_now,
        cursor_blink: bool = True,
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
        self._bridge: TrioBridge | None = None
        self._sampler: Timer | None = None
        self.node: NodeHandle | None = None
        self.last_snapshot: ClusterSnapshot | None = None
        self.trio_outcome: outcome.Outcome[None] | None = None
        self.trio_traceback: str | None = None

    # -- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="top"):
            yield ClusterHeader(id="cluster-header")
            yield LiveHistory(id="live-history")
        with Vertical(id="nodes-pane"):
            yield NodeFilter(id="node-filter", cursor_blink=self._cursor_blink)
            yield NodesTable(id="nodes-table", phi_threshold=self._phi_threshold)
        with Horizontal(id="bottom"):
            yield NodeDetail(id="node-detail", phi_threshold=self._phi_threshold)
            with Vertical(id="side"):
                yield LocalKeys(id="local-keys")
                yield EventLog(id="event-log")
        yield Footer()

    @property
    def nodes_table(self) -> NodesTable:
        return self.query_one("#nodes-table", NodesTable)

    @property
    def local_keys(self) -> LocalKeys:
        return self.query_one("#local-keys", LocalKeys)

    @property
    def event_log(self) -> EventLog:
        return self.query_one("#event-log", EventLog)

    # -- Trio lifecycle --------------------------------------------------------------------

    def on_mount(self) -> None:
        self.query_one("#node-detail", NodeDetail).border_title = "Node"
        self.event_log.border_title = "Events"
        self.query_one("#live-history", LiveHistory).border_title = "Live nodes"
        self.nodes_table.focus()
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

    async def on_unmount(self) -> None:
        # Cancel the node and everything beside it, and wait for Trio to finish: an abandoned
        # guest run would break every later trio.run() in this process.
        if self._bridge is not None:
            self._record_outcome(await self._bridge.stop())

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
        if not self.is_running:
            return
        http = message.http_addr
        self.query_one(ClusterHeader).set_identity(node.cluster_id, node.self_id, http)
        self._note(
            f"node {node.self_id} is up: gossip on {node.gossip_addr} (udp)"
            + (f", HTTP API on http://{http}/" if http else "")
        )

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        if self.is_running:
            self._show_snapshot(message.snapshot)

    def on_node_events_received(self, message: NodeEventsReceived) -> None:
        if self.is_running:
            self.event_log.add_events(message.events, self._clock())

    def on_demo_notice(self, message: DemoNotice) -> None:
        if self.is_running:
            self._note(message.text, style="bold red" if message.error else "bold magenta")

    def _show_snapshot(self, snapshot: ClusterSnapshot) -> None:
        self.last_snapshot = snapshot
        with self.batch_update():
            self.query_one(ClusterHeader).set_snapshot(snapshot)
            table = self.nodes_table
            table.apply(snapshot)
            self._show_selected()
            me = snapshot.node(snapshot.self_node)
            self.local_keys.show(me.key_values if me is not None else {})
        if self._sampler is None:
            # The sparkline's time axis: one sample a second, whatever the snapshot rate.
            self._sample_live()
            self._sampler = self.set_interval(self._live_sample_interval, self._sample_live)

    def _sample_live(self) -> None:
        # The main screen holds the sparkline, even while a form is on top of it; the timer
        # can also fire while that screen is being built or torn down: skip such a tick.
        if not self.screen_stack:
            return
        main_screen = self.screen_stack[0]
        history = next(main_screen.query(LiveHistory).results(LiveHistory), None)
        if self.last_snapshot is not None and history is not None:
            history.add_sample(len(self.last_snapshot.live_nodes))

    def _show_selected(self) -> None:
        taken_at = self.last_snapshot.taken_at if self.last_snapshot is not None else 0.0
        self.query_one(NodeDetail).show(self.nodes_table.selected_node, taken_at)

    def _refresh_now(self) -> None:
        """Show a local change at once rather than at the next periodic snapshot."""
        if self.node is not None:
            self._show_snapshot(self.node.snapshot())

    def _note(self, text: str, style: str = "italic") -> None:
        self.event_log.note(text, self._clock(), style)

    # -- widgets' messages -----------------------------------------------------------------

    def on_nodes_table_node_highlighted(self, _message: NodesTable.NodeHighlighted) -> None:
        self._show_selected()

    @on(Input.Changed, "#node-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.nodes_table.set_filter(event.value)

    @on(Input.Submitted, "#node-filter")
    def _filter_submitted(self) -> None:
        self.nodes_table.focus()

    def on_node_filter_dismissed(self, _message: NodeFilter.Dismissed) -> None:
        self.action_clear_filter()
        self.nodes_table.focus()

    # -- actions ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "kill_peer" and self._demo is None:
            return False
        # Modal screens own the keyboard: no new form on top of a form. The command palette
        # is the exception: it closes before it runs the action it lists.
        modal = len(self.screen_stack) > 1 and not isinstance(self.screen, CommandPalette)
        return not (action in _MAIN_SCREEN_ACTIONS and modal)

    def _require_node(self) -> NodeHandle | None:
        if self.node is None:
            self.notify("The node is not up yet.", severity="warning")
        return self.node

    def action_set_key(self) -> None:
        if self._require_node() is not None:
            self.push_screen(
                KeyFormScreen(KeyFormMode.SET, cursor_blink=self._cursor_blink),
                self._apply_key_form,
            )

    def action_set_key_ttl(self) -> None:
        if self._require_node() is not None:
            self.push_screen(
                KeyFormScreen(KeyFormMode.SET_WITH_TTL, cursor_blink=self._cursor_blink),
                self._apply_key_form,
            )

    def action_edit_key(self) -> None:
        if self._require_node() is None:
            return
        key = self.local_keys.selected_key
        if key is None:
            self.notify("This node has no key to edit: set one with s.", severity="warning")
            return
        current = self.local_keys.value_of(key)
        value = current.value if current is not None and not current.is_deleted else ""
        self.push_screen(
            KeyFormScreen(KeyFormMode.EDIT, key=key, value=value, cursor_blink=self._cursor_blink),
            self._apply_key_form,
        )

    def action_delete_key(self) -> None:
        if self._require_node() is None:
            return
        key = self.local_keys.selected_key
        if key is None:
            self.notify("This node has no key to delete.", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._change_key("delete", key, None)

        self.push_screen(ConfirmDeleteScreen(key), confirmed)

    def _apply_key_form(self, result: KeyFormResult | None) -> None:
        if result is None:
            return
        verb = "set_with_ttl" if result.mode is KeyFormMode.SET_WITH_TTL else "set"
        self._change_key(verb, result.key, result.value)

    def _change_key(self, verb: str, key: str, value: str | None) -> None:
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
                node.set(key, value)
        except ValueError as error:
            what = verb.replace("_", " ")
            self.notify(str(error), title=f"Could not {what} {key!r}", severity="error")
            return
        self._note(f"local {verb.replace('_', ' ')} {key!r}", style="bold italic")
        self._refresh_now()

    def action_filter(self) -> None:
        field = self.query_one(NodeFilter)
        field.add_class("visible")
        field.focus()

    def action_clear_filter(self) -> None:
        field = self.query_one(NodeFilter)
        field.value = ""
        field.remove_class("visible")
        self.nodes_table.set_filter("")

    def action_cycle_sort(self) -> None:
        self.nodes_table.action_cycle_sort()

    def action_reverse_sort(self) -> None:
        self.nodes_table.action_reverse_sort()

    def action_kill_peer(self) -> None:
        if self._demo is not None and not self._demo.request_kill():
            self.notify("The demo is busy; try again.", severity="warning")

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.help_sections()))

    def help_sections(self) -> list[tuple[str, Iterable[BindingType]]]:
        dashboard = [
            binding
            for binding in self.BINDINGS
            if not (isinstance(binding, Binding) and binding.action == "kill_peer")
            or self._demo is not None
        ]
        dashboard.append(Binding(self.COMMAND_PALETTE_BINDING, "command_palette", "Commands"))
        dashboard.append(Binding("tab,shift+tab", "focus", "Move between panes"))
        return [
            ("Dashboard", dashboard),
            ("Tables", _TABLE_BINDINGS),
            ("Filter", [*NodeFilter.BINDINGS, *_FILTER_BINDINGS]),
            ("Key forms", [*KeyFormScreen.BINDINGS, *_FORM_BINDINGS]),
            ("Delete confirmation", ConfirmDeleteScreen.BINDINGS),
            ("Help", HelpScreen.BINDINGS),
        ]


_TABLE_BINDINGS: list[BindingType] = [
    Binding("up,down", "move", "Select the previous / next row"),
    Binding("pageup,pagedown", "page", "Page up / down"),
    Binding("home,end", "ends", "First / last row"),
    Binding("click", "click", "Select a row; click a header to sort by it"),
]
_FILTER_BINDINGS: list[BindingType] = [
    Binding("enter", "done", "Keep the filter and go back to the table"),
]
_FORM_BINDINGS: list[BindingType] = [
    Binding("enter", "submit", "In the key: next field; in the value: submit"),
    Binding("tab", "next", "Next field"),
]


def run_app(app: GossipApp, *, headless: bool = False) -> int:
    """Run ``app`` until it exits; the exit code (non-zero after a Trio crash)."""
    app.run(headless=headless)
    return app.return_code or 0


async def serve_node_http(node: NodeHandle) -> SocketAddress | None:
    """The HTTP API over TCP on the node's gossip address, as a service of the node."""
    from gossip_tui.api import serve_http

    addr: SocketAddress = await node.start_service(serve_http, node, node.gossip_addr)
    return addr


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
    app = GossipApp(config, node_factory, http=service)
    return run_app(app, headless=headless)


def run_demo(
    nodes: int,
    base_config: Any,
    node_factory: NodeFactory | None = None,
    *,
    restart_delay: float = 30.0,
    headless: bool = False,
) -> int:
    """The dashboard on node 0 (``base_config``) with ``nodes - 1`` peers on 127.0.0.1.

    Peers take ephemeral ports and node 0's address as seed. Press `k` to stop a random
    peer; it restarts ``restart_delay`` seconds later with a new generation. Returns the exit
    code, as :func:`run_dashboard` does.
    """
    if nodes < 1:
        raise ValueError("a demo needs at least one node")
    demo = DemoCluster(nodes - 1, restart_delay=restart_delay)
    return run_app(GossipApp(base_config, node_factory, demo=demo), headless=headless)
