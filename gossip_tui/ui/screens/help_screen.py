"""`?`: every key binding of the dashboard, built from the bindings themselves."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from gossip_tui.ui.screens._type_ahead import focus_now


def _as_binding(binding: BindingType) -> Binding:
    if isinstance(binding, Binding):
        return binding
    key, action, *rest = binding
    return Binding(key, action, rest[0] if rest else "")


# The narrowest a column of keys can be and stay readable (80 columns hold two).
_COLUMN_WIDTH = 38


class HelpScreen(ModalScreen[None]):
    """Lists bindings in groups: ``sections`` is (title, bindings) pairs, shown in order."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss_help", "Close help"),
    ]

    def __init__(self, sections: Sequence[tuple[str, Iterable[BindingType]]]) -> None:
        super().__init__()
        self._sections = [(title, [_as_binding(b) for b in group]) for title, group in sections]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog", classes="modal-dialog"):
            yield Label("gossip-tui: keys", classes="modal-title")
            with VerticalScroll(id="help-body"):
                yield Static(self._layout(), id="help-table")
            yield Label("Esc, q or ? closes · the mouse works too", classes="modal-hint")

    @property
    def rows(self) -> list[tuple[str, str, str]]:
        """(section, keys, what they do) for every binding listed; bindings of one section
        with the same action share a row ("q / ^c")."""
        rows: list[tuple[str, str, str]] = []
        for title, bindings in self._sections:
            by_action: dict[str, tuple[list[str], str]] = {}
            for binding in bindings:
                keys, _description = by_action.setdefault(
                    binding.action, ([], self._describe(binding))
                )
                for key in self._key_names(binding):
                    if key not in keys:
                        keys.append(key)
            rows.extend((title, "/".join(keys), text) for keys, text in by_action.values())
        return rows

    def _layout(self) -> Table:
        """The sections side by side in as many columns as the height needs (and the width
        allows), so that at 80x24 every key is on screen without scrolling."""
        rows = self.rows
        sections: list[list[tuple[str, str]]] = []
        for title, keys, description in rows:
            if not sections or sections[-1][0][0] != title:
                sections.append([(title, "")])
            sections[-1].append((keys, description))
        width, height = self.app.size
        # Borders, padding, title and hint take 4 lines; the dialog's max-height is 40.
        room = max(8, min(height, 40) - 4)
        most_columns = max(1, min(width, 120) // _COLUMN_WIDTH)
        columns: list[list[tuple[str, str]]] = [[]]
        for section in sections:
            full = bool(columns[-1]) and len(columns[-1]) + len(section) > room
            if full and len(columns) < most_columns:
                columns.append([])
            # A section longer than a column (the dashboard's own keys, with the demo's)
            # runs on into the next one rather than making the whole help scroll.
            while len(columns[-1]) + len(section) > room and len(columns) < most_columns:
                cut = room - len(columns[-1])
                if cut >= 2:  # a title keeps at least one of its rows
                    columns[-1].extend(section[:cut])
                    section = section[cut:]
                columns.append([])
            columns[-1].extend(section)
        grid = Table.grid(expand=True, padding=(0, 2, 0, 0))
        for _column in columns:
            grid.add_column(ratio=1)
        grid.add_row(*(self._column_table(lines) for lines in columns))
        return grid

    @staticmethod
    def _column_table(lines: list[tuple[str, str]]) -> Table:
        table = Table(box=None, show_header=False, expand=True, padding=(0, 1, 0, 0))
        table.add_column("key", style="bold cyan", no_wrap=True)
        table.add_column("action", ratio=1, no_wrap=True, overflow="ellipsis")
        for keys, description in lines:
            if not description:  # a section's title
                table.add_row(Text(keys, style="bold underline"), "")
            else:
                table.add_row(keys, description)
        return table

    def _key_names(self, binding: Binding) -> list[str]:
        if binding.key_display:
            return [binding.key_display]
        keys = [key.strip() for key in binding.key.split(",")]
        return [self.app.get_key_display(Binding(key, binding.action)) for key in keys]

    @staticmethod
    def _describe(binding: Binding) -> str:
        return binding.tooltip or binding.description or binding.action.replace("_", " ")

    def on_mount(self) -> None:
        focus_now(self.app, self.query_one("#help-body"))

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
