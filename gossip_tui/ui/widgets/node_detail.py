"""The selected node, in full: identity, counters, and every key with its version and status."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from gossip_tui.core.models import KeyStatus, NodeSnapshot
from gossip_tui.ui._format import (
    DEFAULT_PHI_THRESHOLD,
    STATUS_LABELS,
    STATUS_STYLES,
    decode_value,
    format_age,
    format_phi,
    node_age,
    phi_style,
    pretty_json,
)

_KEY_STATUS_STYLES = {
    KeyStatus.SET: "green",
    KeyStatus.DELETED: "red",
    KeyStatus.DELETE_AFTER_TTL: "yellow",
}


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
    node: NodeSnapshot, taken_at: float, phi_threshold: float = DEFAULT_PHI_THRESHOLD
) -> RenderableType:
    ident = node.node
    facts = Table.grid(padding=(0, 1))
    for style in ("dim", "", "dim", ""):
        facts.add_column(style=style, no_wrap=True)
    facts.add_row(
        "status",
        Text(STATUS_LABELS[node.liveness], style=STATUS_STYLES[node.liveness]),
        "phi",
        Text(format_phi(node.phi), style=phi_style(node.phi, phi_threshold)),
    )
    facts.add_row("address", str(ident.gossip_addr), "generation", str(ident.generation))
    facts.add_row("heartbeat", str(node.heartbeat), "updated", format_age(node_age(node, taken_at)))
    facts.add_row("max version", str(node.max_version), "gc version", str(node.last_gc_version))
    title = Text(ident.node_id, style="bold", overflow="fold")

    if not node.key_values:
        return Group(title, facts, Text("no keys", style="dim italic"))
    keys = Table(expand=True, show_edge=False, pad_edge=False, box=None, header_style="bold")
    keys.add_column("key", ratio=1, overflow="fold")
    keys.add_column("value", ratio=3, overflow="fold")
    keys.add_column("ver", justify="right", no_wrap=True)
    keys.add_column("status", no_wrap=True)
    for key in sorted(node.key_values):
        versioned = node.key_values[key]
        keys.add_row(
            Text(key, style="bold"),
            render_value(versioned.value),
            str(versioned.version),
            Text(versioned.status.label, style=_KEY_STATUS_STYLES[versioned.status]),
        )
    return Group(title, facts, Text(""), keys)


class NodeDetail(VerticalScroll):
    """Shows one node; re-renders only when that node's state or the selection changed."""

    def __init__(
        self, *, phi_threshold: float = DEFAULT_PHI_THRESHOLD, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.phi_threshold = phi_threshold
        self._shown: tuple[NodeSnapshot, str] | None = None
        self._empty = True

    def compose(self) -> ComposeResult:
        yield Static(Text("no node selected", style="dim italic"), id="node-detail-body")

    @property
    def shown_node(self) -> NodeSnapshot | None:
        """The node on display, as it was handed to ``show``."""
        return self._shown[0] if self._shown is not None else None

    def show(self, node: NodeSnapshot | None, taken_at: float) -> None:
        body = self.query_one("#node-detail-body", Static)
        if node is None:
            if not self._empty:
                self._empty = True
                self._shown = None
                self.border_subtitle = ""
                body.update(Text("no node selected", style="dim italic"))
            return
        age = format_age(node_age(node, taken_at))
        if self._shown == (node, age):
            return
        if self._shown is None or self._shown[0].node != node.node:
            self.scroll_home(animate=False)
        self._shown = (node, age)
        self._empty = False
        self.border_subtitle = str(node.node)
        body.update(render_node(node, taken_at, self.phi_threshold))
