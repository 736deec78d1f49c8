"""Enter on a row: one node full-screen, every key in full, kept current (k9s's describe)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer

from gossip_tui.core.models import NodeSnapshot
from gossip_tui.ui._format import DEFAULT_PHI_THRESHOLD
from gossip_tui.ui.screens._type_ahead import focus_now
from gossip_tui.ui.widgets.node_detail import (
    HistoryOf,
    NodeDetail,
    RestartOf,
    no_history,
    no_restart,
)


class NodeScreen(Screen[None]):
    """The node ``node`` (as read when Enter was pressed); the app calls ``show`` with
    each newer reading of it while the screen is up. It reads as the Node pane does (the
    same NodeDetail), its restart line included when ``restart_of`` knows one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "escape,enter,backspace",
            "back",
            "Back",
            key_display="esc/⏎",
            tooltip="Node screen: back",
        ),
        Binding("c", "copy", "Copy", tooltip="Node screen: copy id"),
        Binding("q", "back", "Back", show=False),
    ]

    def __init__(
        self,
        node: NodeSnapshot | None,
        taken_at: float,
        *,
        phi_threshold: float = DEFAULT_PHI_THRESHOLD,
        history_of: HistoryOf = no_history,
        restart_of: RestartOf = no_restart,
    ) -> None:
        super().__init__()
        self._node = node
        self._taken_at = taken_at
        self._phi_threshold = phi_threshold
        self._history_of = history_of
        self._restart_of = restart_of

    def compose(self) -> ComposeResult:
        yield NodeDetail(
            id="node-screen-detail",
            phi_threshold=self._phi_threshold,
            history_of=self._history_of,
            restart_of=self._restart_of,
        )
        yield Footer()

    def on_mount(self) -> None:
        detail = self.query_one(NodeDetail)
        detail.border_title = "Node · Esc goes back"
        detail.show(self._node, self._taken_at)
        focus_now(self.app, detail)

    @property
    def node(self) -> NodeSnapshot | None:
        return self._node

    def show(self, node: NodeSnapshot | None, taken_at: float) -> None:
        """A newer reading; only of the node on screen (the selection cannot move here)."""
        if node is None or self._node is None or node.node != self._node.node:
            return
        self._node, self._taken_at = node, taken_at
        if self.is_mounted:
            self.query_one(NodeDetail).show(node, taken_at)

    def action_back(self) -> None:
        self.dismiss(None)

    def action_copy(self) -> None:
        if self._node is not None:
            self.app.copy_to_clipboard(self._node.node.node_id)
            self.notify(f"Copied node id {self._node.node.node_id!r}.", timeout=2)
