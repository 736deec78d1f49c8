"""The strip at the top: who this node is, and how the cluster looks from here."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from gossip_tui.core.models import NodeId, SocketAddress
from gossip_tui.ui._format import LEFT_STYLE
from gossip_tui.ui._view_model import ClusterCounts, SeedState
from gossip_tui.ui.widgets._in_place import update_in_place


class ClusterHeader(Static):
    """Cluster id, this node's identity and addresses, live/dead counts, and the seeds
    that have not answered (only while some have not)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._cluster_id: str | None = None
        self._self_id: NodeId | None = None
        self._http_addr: SocketAddress | None = None
        self._counts: ClusterCounts | None = None
        self._seeds = SeedState()
        self._rendered: Text | None = None

    def on_mount(self) -> None:
        self._render_header()

    def set_identity(
        self, cluster_id: str, self_id: NodeId, http_addr: SocketAddress | None
    ) -> None:
        self._cluster_id = cluster_id
        self._self_id = self_id
        self._http_addr = http_addr
        self._render_header()

    def set_counts(self, counts: ClusterCounts) -> None:
        if counts != self._counts:
            self._counts = counts
            self._render_header()

    def set_seeds(self, seeds: SeedState) -> None:
        if seeds != self._seeds:
            self._seeds = seeds
            self._render_header()

    def _render_header(self) -> None:
        # Two lines, never wrapped: the counts lead the first, so that however narrow the
        # window, what is live and dead stays on screen; identity is cut before they are.
        text = Text(no_wrap=True, overflow="ellipsis")
        if self._counts is not None:
            live, dead, known = self._counts.live, self._counts.dead, self._counts.known
            text.append("● ", style="green")
            text.append(f"{live} live", style="bold green")
            text.append("  ")
            text.append("✖ ", style="red")
            text.append(f"{dead} dead", style="bold red" if dead else "dim")
            if left := self._counts.left:
                # Only when there are any: at 80 columns every cell of this line counts.
                text.append("  ")
                text.append("↩ ", style=LEFT_STYLE)
                text.append(f"{left} left", style=f"bold {LEFT_STYLE}")
            text.append(f"  {known} known", style="dim")
        if unreachable := len(self._seeds.unreachable):
            # Next to the counts, where it is seen: a node whose seeds do not answer may be
            # alone in a cluster of one.
            of = max(self._seeds.configured, unreachable)
            text.append("  │  ", style="dim")
            text.append(f"⚠ seeds: {unreachable} of {of} unreachable", style="bold yellow")
        node = self._self_id
        if node is None:
            if self._counts is not None:
                text.append("  │  ", style="dim")
            text.append("starting node…", style="italic")
            self._show_text(text)
            return
        self._field(text, "cluster", self._cluster_id or "?", separator=self._counts is not None)
        self._field(
            text, "http", f"http://{self._http_addr}/" if self._http_addr else "off", separator=True
        )
        text.append("\n")
        self._field(text, "node", node.node_id)
        self._field(text, "gen", str(node.generation), separator=True)
        self._field(text, "gossip", f"{node.gossip_addr} (udp)", separator=True)
        self._show_text(text)

    def _show_text(self, text: Text) -> None:
        if text != self._rendered:
            self._rendered = text
            # Two lines by the full width (app.tcss): new counts are a repaint, not a layout.
            update_in_place(self, text, fixed_size=True)

    @staticmethod
    def _field(text: Text, label: str, value: str, *, separator: bool = False) -> None:
        if separator:
            text.append("  │  ", style="dim")
        text.append(f"{label} ", style="dim")
        text.append(value, style="bold")
