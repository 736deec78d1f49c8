"""`P`: how far each of this node's keys has travelled, from the digests peers send.

A peer's digest tells the max version of ours it holds; a key is held by the live peers
whose version reaches the key's. The cursor's key lists the peers that lag below it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from gossip_tui.core.agreement import KeyPropagation, PropagationReading
from gossip_tui.ui._format import KEY_STATUS_STYLES, one_line
from gossip_tui.ui._keys import is_internal
from gossip_tui.ui.screens._type_ahead import focus_now
from gossip_tui.ui.widgets._vim_keys import VIM_KEYS

# Names of lagging peers shown in a row, after their count (the panel below lists all).
_LAGGARDS_IN_ROW = 3
_BAR = 10
_LAGGING_WIDTH = 32


def held_label(key: KeyPropagation) -> str:
    """ "held by 3/5" (and "no live peer" when there is none to hold it)."""
    if not key.live_peers:
        return "no live peer"
    return f"held by {key.held_by}/{key.live_peers}"


def _bar(key: KeyPropagation) -> Text:
    if not key.live_peers:
        return Text("")
    filled = round(_BAR * key.held_by / key.live_peers)
    style = "green" if key.held_by == key.live_peers else "yellow"
    return Text("█" * filled, style=style) + Text("░" * (_BAR - filled), style="dim")


def _lag_of(reported: int | None) -> str:
    return "no report yet" if reported is None else f"holds v{reported}"


def user_keys_of(reading: PropagationReading) -> list[KeyPropagation]:
    """The keys an operator set: the node's own bookkeeping keys are not shown."""
    return [key for key in reading.keys if not is_internal(key.key)]


class PropagationTable(DataTable[Text]):
    """One row per key; j/k move as in the other tables."""

    BINDINGS: ClassVar[list[BindingType]] = VIM_KEYS


class PropagationScreen(Screen[None]):
    """Reads ``read()`` (the node's propagation) every ``interval`` seconds while up."""

    DEFAULT_CSS = """
    PropagationScreen #propagation-table { height: 1fr; border: round $primary; }
    PropagationScreen #propagation-lag { height: auto; max-height: 45%; border: round $secondary;
        padding: 0 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "back", "Back", key_display="esc", tooltip="Propagation: back"),
    ]

    def __init__(self, read: Callable[[], PropagationReading], interval: float) -> None:
        super().__init__()
        self._read = read
        self._interval = interval
        self.reading: PropagationReading | None = None
        self._keys: list[KeyPropagation] = []

    def compose(self) -> ComposeResult:
        yield PropagationTable(id="propagation-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="propagation-lag")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(PropagationTable)
        table.border_title = "Propagation of this node's keys · Esc goes back"
        for key, label in (
            ("key", "Key"),
            ("version", "Ver"),
            ("status", "Status"),
            ("held", "Held by"),
            ("bar", ""),
            ("lagging", "Lagging"),
        ):
            table.add_column(label, key=key)
        self.refresh_reading()
        self.set_interval(self._interval, self.refresh_reading)
        focus_now(self.app, table)

    def refresh_reading(self) -> None:
        self.reading = self._read()
        self._keys = user_keys_of(self.reading)
        table = self.query_one(PropagationTable)
        cursor = table.cursor_row
        table.clear()
        for key in self._keys:
            names = ", ".join(peer.node_id for peer, _ in key.laggards[:_LAGGARDS_IN_ROW])
            # Cut to fit 80 columns beside the rest; the panel below names them all.
            lagging = f"{len(key.laggards)}: {one_line(names, _LAGGING_WIDTH)}" if names else ""
            table.add_row(
                Text(key.key, style="bold"),
                Text(str(key.version)),
                Text(key.status.short_label, style=KEY_STATUS_STYLES[key.status]),
                Text(f"{key.held_by}/{key.live_peers}" if key.live_peers else "no peer"),
                _bar(key),
                Text(lagging or "—", style="yellow" if lagging else "dim"),
                key=key.key,
            )
        if self._keys:
            table.move_cursor(row=min(max(cursor, 0), len(self._keys) - 1))
        self._show_laggards()

    @property
    def selected(self) -> KeyPropagation | None:
        table = self.query_one(PropagationTable)
        if not self._keys or not table.is_valid_row_index(table.cursor_row):
            return None
        return self._keys[table.cursor_row]

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._show_laggards()

    def _show_laggards(self) -> None:
        panel = self.query_one("#propagation-lag", Static)
        reading, key = self.reading, self.selected
        if reading is None:
            return
        peers = len(reading.live_peers)
        if key is None:
            panel.border_title = "Lagging peers"
            panel.update(f"This node has no key of its own yet ({peers} live peers).")
            return
        panel.border_title = f"{key.key!r} v{key.version}: {held_label(key)}"
        if not key.laggards:
            panel.update(Text("Every live peer holds this version.", style="green"))
            return
        lines = Text()
        for index, (peer, reported) in enumerate(key.laggards):
            if index:
                lines.append("\n")
            lines.append(peer.node_id, style="bold")
            lines.append(f"  {peer.gossip_addr}  ", style="dim")
            lines.append(_lag_of(reported), style="yellow")
        panel.update(lines)

    def action_back(self) -> None:
        self.dismiss(None)
