"""`A`: the nodes grouped by the membership view they hold (ringpop's checksums idea).

One group: everyone sees the same live set. A partition or a lagging node shows as a
group of its own. gossip-tui nodes publish their view; chitchat peers are judged from
the nodes their last digest listed; dead nodes count with the last view heard of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from gossip_tui.core.agreement import AgreementReading, ViewGroup, ViewMember, ViewSource
from gossip_tui.ui.screens._type_ahead import focus_now

OWN_MARK = "◆"


def headline(reading: AgreementReading) -> Text:
    """One line: agreement, or how many views split the cluster."""
    known = [group for group in reading.groups if group.summary is not None]
    nodes = sum(len(group.members) for group in reading.groups)
    if len(known) <= 1:
        return Text(f"All {nodes} nodes with a known view agree", style="bold green")
    own = next((group for group in reading.groups if group.includes_self), None)
    held = len(own.members) if own is not None else 0
    return Text(
        f"{len(known)} views: this node's is held by {held} of {nodes} nodes", style="bold yellow"
    )


def _member(member: ViewMember, self_node: object) -> Text:
    text = Text(member.node.node_id, style="bold" if member.node == self_node else "")
    if member.source == ViewSource.DIGEST:
        text.append(" (digest)", style="italic dim")
    if not member.live:
        text.stylize("dim strike")
        text.append(" dead", style="red")
    return text


def _members(group: ViewGroup, self_node: object) -> Text:
    return Text(", ").join(_member(member, self_node) for member in group.members)


def groups_table(reading: AgreementReading) -> Table:
    table = Table(expand=True, box=None, padding=(0, 1), header_style="bold")
    table.add_column("", width=1, no_wrap=True)
    table.add_column("View", no_wrap=True)
    table.add_column("Sees", justify="right", no_wrap=True)
    table.add_column("Nodes", justify="right", no_wrap=True)
    table.add_column("Members", ratio=1)
    for group in reading.groups:
        mark = Text(OWN_MARK, style="bold cyan") if group.includes_self else Text("")
        if group.summary is None:
            view, sees = Text("unknown", style="dim"), Text("—", style="dim")
        else:
            view = Text(group.summary.hash, style="cyan" if group.includes_self else "yellow")
            sees = Text(f"{group.summary.count} live")
        nodes = Text(f"{group.live_members}/{len(group.members)}")
        table.add_row(mark, view, sees, nodes, _members(group, reading.self_node))
    return table


def render_agreement(reading: AgreementReading) -> Group:
    legend = Text(
        f"{OWN_MARK} this node's group · Sees: live nodes in that view · Nodes: live/all "
        "members · (digest): a chitchat peer, by the nodes its digest lists",
        style="dim",
    )
    return Group(headline(reading), Text(""), groups_table(reading), Text(""), legend)


class AgreementScreen(Screen[None]):
    """Reads ``read()`` (the node's agreement) every ``interval`` seconds while up."""

    DEFAULT_CSS = """
    AgreementScreen #agreement-body { height: 1fr; border: round $primary; padding: 0 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "back", "Back", key_display="esc", tooltip="Agreement: back"),
    ]

    def __init__(self, read: Callable[[], AgreementReading], interval: float) -> None:
        super().__init__()
        self._read = read
        self._interval = interval
        self.reading: AgreementReading | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="agreement-body"):
            yield Static(id="agreement-groups")
        yield Footer()

    def on_mount(self) -> None:
        body = self.query_one("#agreement-body", VerticalScroll)
        body.border_title = "Agreement: nodes by the membership view they hold · Esc goes back"
        self.refresh_reading()
        self.set_interval(self._interval, self.refresh_reading)
        focus_now(self.app, body)

    def refresh_reading(self) -> None:
        self.reading = self._read()
        self.query_one("#agreement-groups", Static).update(render_agreement(self.reading))

    def action_back(self) -> None:
        self.dismiss(None)
