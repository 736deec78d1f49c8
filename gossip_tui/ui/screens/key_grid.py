"""`K`: one key (or a prefix) across every node, live (the key grid).

The key is typed (``svc.`` or ``svc*`` for every key under ``svc``) or picked from the
selected node's keys on the left. The app hands the screen every push of the view model
while it is up (``apply``), as it does the node screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Label, OptionList
from textual.widgets.option_list import Option

from gossip_tui.ui._view_model import ClusterViewModel, ViewChanges
from gossip_tui.ui.screens._type_ahead import focus_now
from gossip_tui.ui.widgets._steady_input import SteadyInput
from gossip_tui.ui.widgets.key_grid import KeyGridTable, KeyQuery

# Below this many columns the picker narrows (see app.tcss).
_WIDE = 100


class KeyPicker(OptionList):
    """The selected node's keys; Enter (or a click) shows one in the grid."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]


class KeyGridScreen(Screen[None]):
    """The grid for ``key`` (empty: the field waits for one), over ``model``'s nodes;
    ``picks`` are the keys the picker offers, ``picks_of`` names whose keys they are."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", tooltip="Key grid: back"),
        Binding("q", "back", "Back", show=False),
        Binding("slash", "edit_query", "Key", tooltip="Key grid: type a key or prefix."),
        Binding("a", "toggle_absent", "Absent", tooltip="Key grid: show/hide absent nodes"),
        Binding("o", "cycle_sort", "Sort", tooltip="Key grid: sort by the next column"),
        Binding("O", "reverse_sort", "Reverse", show=False, tooltip="Key grid: reverse sort"),
        *(Binding(str(index), f"sort_index({index})", show=False) for index in range(1, 8)),
    ]

    def __init__(
        self,
        model: ClusterViewModel,
        key: str = "",
        *,
        picks: Sequence[str] = (),
        picks_of: str = "",
        cursor_blink: bool = True,
    ) -> None:
        super().__init__()
        self._model = model
        self._key = key
        self._picks = list(picks)
        self._picks_of = picks_of
        self._cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        with Horizontal(id="key-grid-body"):
            with Vertical(id="key-grid-side"):
                yield Label(f"Keys of {self._picks_of}" if self._picks_of else "Keys")
                yield KeyPicker(*(Option(key, id=key) for key in self._picks), id="key-picker")
            with Vertical(id="key-grid-main"):
                field = SteadyInput(
                    value=self._key,
                    placeholder="key, or a prefix ending in . or * (Enter: to the grid)",
                    id="key-grid-query",
                )
                field.cursor_blink = self._cursor_blink
                yield field
                yield KeyGridTable(id="key-grid-table")
        yield Footer()

    def on_resize(self, event: events.Resize) -> None:
        # A narrow window gives the picker less room and the grid more.
        self.set_class(event.size.width < _WIDE, "-narrow")

    def on_mount(self) -> None:
        self.set_class(self.app.size.width < _WIDE, "-narrow")
        table = self.grid
        table.show_query(self._model, KeyQuery(self._key.strip()))
        self._update_title()
        # With a key chosen, straight to the grid; else the field, for the key typed next.
        focus_now(self.app, table if self._key else self.query_one("#key-grid-query", Input))

    @property
    def grid(self) -> KeyGridTable:
        return self.query_one("#key-grid-table", KeyGridTable)

    def apply(self, changes: ViewChanges) -> None:
        """A push of the view model: the grid follows it."""
        if self.is_mounted:
            self.grid.apply(changes)
            self._update_title()

    def _show_key(self, text: str) -> None:
        query = KeyQuery(text.strip())
        if query != self.grid.key_query:
            self.grid.show_query(self._model, query)
            self._update_title()

    def _update_title(self) -> None:
        table = self.grid
        query = table.key_query
        if not query.text:
            title = "Key grid · type a key, or pick one on the left"
        else:
            have, absent = table.counts
            what = query.text + ("…" if query.is_prefix else "")
            hidden = " hidden" if not table.show_absent else ""
            arrow = "▼" if table.sort_reverse else "▲"
            title = (
                f"Grid {what} · {have} have it, {absent} absent{hidden}"
                f" · {table.sort_column} {arrow}"
            )
        if table.border_title != title:
            table.border_title = title

    # -- input -----------------------------------------------------------------------------

    @on(Input.Changed, "#key-grid-query")
    def _query_changed(self, event: Input.Changed) -> None:
        self._show_key(event.value)

    @on(Input.Submitted, "#key-grid-query")
    def _query_submitted(self) -> None:
        self.set_focus(self.grid)

    @on(OptionList.OptionSelected, "#key-picker")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        key = str(event.option.prompt)
        field = self.query_one("#key-grid-query", Input)
        field.value = key  # Input.Changed shows it
        self._show_key(key)
        self.set_focus(self.grid)

    @on(KeyGridTable.SortChanged)
    def _sort_changed(self) -> None:
        self._update_title()

    def action_back(self) -> None:
        self.dismiss(None)

    def action_edit_query(self) -> None:
        self.set_focus(self.query_one("#key-grid-query", Input))

    def action_toggle_absent(self) -> None:
        self.grid.toggle_absent()
        self._update_title()

    def action_cycle_sort(self) -> None:
        self.grid.action_cycle_sort()

    def action_reverse_sort(self) -> None:
        self.grid.action_reverse_sort()

    def action_sort_index(self, index: int) -> None:
        self.grid.sort_by_index(index)
