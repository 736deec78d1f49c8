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


def _as_binding(binding: BindingType) -> Binding:
    if isinstance(binding, Binding):
        return binding
    key, action, *rest = binding
    return Binding(key, action, rest[0] if rest else "")


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
                yield Static(self._table(), id="help-table")
            yield Label("Esc, q or ? closes · the mouse works too", classes="modal-hint")

    @property
    def rows(self) -> list[tuple[str, str, str]]:
        """(section, keys, what they do) for every binding listed."""
        return [
            (title, self._key_display(binding), self._describe(binding))
            for title, bindings in self._sections
            for binding in bindings
        ]

    def _table(self) -> Table:
        table = Table(box=None, show_header=False, expand=True, padding=(0, 2, 0, 0))
        table.add_column("key", style="bold cyan", no_wrap=True, width=18)
        table.add_column("action", ratio=1)
        section = None
        for title, keys, description in self.rows:
            if title != section:
                if section is not None:
                    table.add_row("", "")
                table.add_row(Text(title, style="bold underline"), "")
                section = title
            table.add_row(keys, description)
        return table

    def _key_display(self, binding: Binding) -> str:
        keys = [key.strip() for key in binding.key.split(",")]
        return " / ".join(self.app.get_key_display(Binding(key, binding.action)) for key in keys)

    @staticmethod
    def _describe(binding: Binding) -> str:
        return binding.tooltip or binding.description or binding.action.replace("_", " ")

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
