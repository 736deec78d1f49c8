"""The selected node, in full: identity, counters, phi and heartbeat sparklines, and every key
with its version and status."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Label, Sparkline, Static

from gossip_tui.core.generations import Restart
from gossip_tui.core.models import NodeId, NodeSnapshot
from gossip_tui.ui._format import (
    DEFAULT_PHI_THRESHOLD,
    KEY_STATUS_STYLES,
    STATUS_LABELS,
    STATUS_STYLES,
    decode_value,
    format_age,
    format_phi,
    node_age,
    phi_style,
    pretty_json,
)
from gossip_tui.ui._history import NodeHistory
from gossip_tui.ui._keys import user_keys
from gossip_tui.ui.widgets._in_place import update_in_place

# Below this many columns the facts go one per line: label and value pairs side by side
# ("max version 12  gc version 0", a 13-digit generation, an address) need about 56.
_TWO_PAIRS_WIDTH = 56


def render_value(value: str) -> RenderableType:
    """A value as shown in the detail pane: JSON pretty-printed, anything else as text."""
    decoded = decode_value(value)
    if decoded.encoding is None:
        return Text(value)
    body = Syntax(pretty_json(decoded.data), "json", theme="ansi_dark", word_wrap=True)
    if decoded.encoding == "json":
        return body
    return Group(Text("base64 → json", style="dim italic"), body)


def render_node(
    node: NodeSnapshot,
    taken_at: float,
    phi_threshold: float = DEFAULT_PHI_THRESHOLD,
    width: int = 80,
    restarted: str | None = None,
) -> RenderableType:
    """``node`` in full for a pane ``width`` columns wide (internal keys left out);
    ``restarted`` says when it restarted, if it did."""
    ident = node.node
    pairs: list[tuple[str, Text | str]] = [
        ("status", Text(STATUS_LABELS[node.liveness], style=STATUS_STYLES[node.liveness])),
        ("phi", Text(format_phi(node.phi), style=phi_style(node.phi, phi_threshold))),
        ("address", str(ident.gossip_addr)),
        ("generation", str(ident.generation)),
        ("heartbeat", str(node.heartbeat)),
        ("updated", format_age(node_age(node, taken_at))),
        ("max version", str(node.max_version)),
        ("gc version", str(node.last_gc_version)),
        *([("restarted", restarted)] if restarted is not None else []),
    ]
    title = Text(ident.node_id, style="bold", overflow="fold")
    per_row = 2 if width >= _TWO_PAIRS_WIDTH else 1
    if per_row == 1:
        # Narrow: status and phi join the name's line, the rest go one per line.
        title.append("  ")
        title.append_text(pairs[0][1] if isinstance(pairs[0][1], Text) else Text(pairs[0][1]))
        title.append("  phi ", style="dim")
        title.append_text(pairs[1][1] if isinstance(pairs[1][1], Text) else Text(pairs[1][1]))
        pairs = pairs[2:]
    facts = Table.grid(padding=(0, 1))
    for style in ("dim", "") * per_row:
        facts.add_column(style=style, no_wrap=True)
    for start in range(0, len(pairs), per_row):
        facts.add_row(*(cell for pair in pairs[start : start + per_row] for cell in pair))

    key_values = user_keys(node.key_values)
    if not key_values:
        return Group(title, facts, Text("no keys", style="dim italic"))
    keys = Table(expand=True, show_edge=False, pad_edge=False, box=None, header_style="bold")
    keys.add_column("key", ratio=1, overflow="fold")
    keys.add_column("value", ratio=3, overflow="fold")
    keys.add_column("ver", justify="right", no_wrap=True)
    keys.add_column("status", no_wrap=True)
    for key in sorted(key_values):
        versioned = key_values[key]
        keys.add_row(
            Text(key, style="bold"),
            render_value(versioned.value),
            str(versioned.version),
            Text(versioned.status.short_label, style=KEY_STATUS_STYLES[versioned.status]),
        )
    return Group(title, facts, Text(""), keys)


HistoryOf = Callable[[NodeId], NodeHistory | None]
# The restart a node's row stands for (the view model's ClusterViewModel.restart_of).
RestartOf = Callable[[NodeId], Restart | None]


def no_history(_node: NodeId) -> NodeHistory | None:
    return None


def no_restart(_node: NodeId) -> Restart | None:
    return None


def history_summaries(history: NodeHistory | None) -> tuple[str, str]:
    """The figures beside the two sparklines: the last phi and its peak, the last
    heartbeat increase per reading and its mean."""
    if history is None:
        return ("-", "-")
    phi, rate = history.phi, history.heartbeat_rate
    phi_text = f"{format_phi(phi[-1])} max {format_phi(max(phi))}" if phi else "-"
    rate_text = f"{rate[-1]:.0f} avg {sum(rate) / len(rate):.1f}" if rate else "-"
    return (phi_text, rate_text)


class LivenessSparks(Vertical):
    """One node's last phi readings and heartbeat increases per reading, as sparklines."""

    def compose(self) -> ComposeResult:
        with Horizontal(classes="spark-row"):
            yield Label("phi", classes="spark-label")
            yield Sparkline([], id="phi-sparkline")
            yield Label("-", id="phi-summary", classes="spark-summary")
        with Horizontal(classes="spark-row"):
            yield Label("beats", classes="spark-label")
            yield Sparkline([], id="heartbeat-sparkline")
            yield Label("-", id="heartbeat-summary", classes="spark-summary")

    def show(self, history: NodeHistory | None) -> None:
        phi_text, rate_text = history_summaries(history)
        self.query_one("#phi-sparkline", Sparkline).data = list(history.phi) if history else []
        self.query_one("#heartbeat-sparkline", Sparkline).data = (
            list(history.heartbeat_rate) if history else []
        )
        # Fixed in size (app.tcss): a new figure is a repaint, not a layout.
        update_in_place(self.query_one("#phi-summary", Label), phi_text, fixed_size=True)
        update_in_place(self.query_one("#heartbeat-summary", Label), rate_text, fixed_size=True)


class NodeDetail(VerticalScroll):
    """Shows one node; re-renders only when that node's state or the selection changed.

    ``history_of`` gives a node's recent readings for the sparklines, ``restart_of`` the
    restart its row stands for (the app hands the view model's; without them the
    sparklines stay empty and no restart is shown)."""

    def __init__(
        self,
        *,
        phi_threshold: float = DEFAULT_PHI_THRESHOLD,
        history_of: HistoryOf = no_history,
        restart_of: RestartOf = no_restart,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.phi_threshold = phi_threshold
        self.history_of = history_of
        self.restart_of = restart_of
        self._shown: tuple[NodeSnapshot, str, str | None, int] | None = None
        self._taken_at = 0.0
        self._empty = True
        # (node, readings recorded) last drawn in the sparklines.
        self._sparks_shown: tuple[NodeId, int] | None = None

    def compose(self) -> ComposeResult:
        yield LivenessSparks(id="node-sparks")
        yield Static(Text("no node selected", style="dim italic"), id="node-detail-body")

    @property
    def history_shown(self) -> NodeHistory | None:
        """The readings the sparklines show now (None: no node, or none recorded)."""
        node = self.shown_node
        return self.history_of(node.node) if node is not None else None

    def _show_history(self, node: NodeId | None) -> None:
        history = self.history_of(node) if node is not None else None
        drawn = (node, history.recorded) if node is not None and history is not None else None
        if drawn == self._sparks_shown:
            return
        self._sparks_shown = drawn
        self.query_one(LivenessSparks).show(history)

    @property
    def shown_node(self) -> NodeSnapshot | None:
        """The node on display, as it was handed to ``show``."""
        return self._shown[0] if self._shown is not None else None

    def show(self, node: NodeSnapshot | None, taken_at: float) -> None:
        body = self.query_one("#node-detail-body", Static)
        self._show_history(node.node if node is not None else None)
        if node is None:
            if not self._empty:
                self._empty = True
                self._shown = None
                self.border_subtitle = ""
                update_in_place(
                    body,
                    Text("no node selected", style="dim italic"),
                    min_height=self._body_min_height(),
                )
            return
        age = format_age(node_age(node, taken_at))
        restart = self.restart_of(node.node)
        restarted = None
        if restart is not None:
            since = None if restart.at is None else f"{format_age(taken_at - restart.at)} ago"
            restarted = f"{since or 'yes'} (was generation {restart.previous.generation})"
        width = self.content_size.width or 80
        if self._shown == (node, age, restarted, width):
            return
        if self._shown is None or self._shown[0].node != node.node:
            self.scroll_home(animate=False)
        self._shown = (node, age, restarted, width)
        self._taken_at = taken_at
        self._empty = False
        self.border_subtitle = str(node.node)
        update_in_place(
            body,
            render_node(node, taken_at, self.phi_threshold, width, restarted),
            min_height=self._body_min_height(),
        )

    def _body_min_height(self) -> int:
        """The body's height at the least: the pane's, under the sparklines (app.tcss).

        A body as tall as what it showed shrank and grew with every node of another line
        count, and "no node selected" made it one line: each change of its height laid the
        whole screen out, twice (the pane's new virtual size asks for another). With 500
        nodes, a filter key that moved the cursor to a node with a key more or less, or
        left no rows, cost ~100 ms of layouts. Filling the pane, it keeps its height for
        any node that fits: a repaint shows the next."""
        sparks = self.query_one(LivenessSparks)
        return max(0, self.scrollable_content_region.height - sparks.outer_size.height)

    def on_resize(self, _event: events.Resize) -> None:
        if self._shown is not None:
            self.show(self._shown[0], self._taken_at)
