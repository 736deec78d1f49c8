"""This node's own keys: the ones `s`, `e`, `d` and `t` act on, with a countdown for the
keys set with a ttl. The countdowns tick with the view model's readings (one push a tick
re-renders the rows whose figure moved), not with a timer per row."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import ClassVar

from rich.text import Text
from textual.binding import BindingType
from textual.widgets import DataTable

from gossip_tui.core.models import VersionedValue
from gossip_tui.ui._format import KEY_STATUS_STYLES, format_age, one_line
from gossip_tui.ui._keys import is_internal
from gossip_tui.ui.widgets._vim_keys import VIM_KEYS

_COLUMNS = (
    ("key", "Key", None),
    ("value", "Value", None),
    ("version", "Ver", None),
    ("status", "Status", None),
)
# Shown only while some key expires: a pane of keys without a ttl looks as it always did.
_EXPIRES = ("expires", "Expires", None)

_Row = tuple[tuple[str, str], ...]


def format_countdown(seconds: int | None) -> str:
    """``29s``, ``4m59s``, ``due`` (the node deletes it at its next round); "" for none."""
    if seconds is None:
        return ""
    return "due" if seconds <= 0 else f"in {format_age(seconds)}"


def _row(value: VersionedValue, key: str, countdown: int | None) -> _Row:
    return (
        (key, "bold"),
        (one_line(value.value, 200), ""),
        (str(value.version), ""),
        (value.status.short_label, KEY_STATUS_STYLES[value.status]),
        (format_countdown(countdown), "yellow" if countdown is not None and countdown < 10 else ""),
    )


class LocalKeys(DataTable[Text]):
    """The local node's key-values (internal ones hidden), keyed by key name, in key order."""

    BINDINGS: ClassVar[list[BindingType]] = VIM_KEYS

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, id=id)
        self._values: Mapping[str, VersionedValue] = {}
        self._rows: dict[str, _Row] = {}
        self._order: list[str] = []
        self._with_expiry = False

    def on_mount(self) -> None:
        for key, label, width in _COLUMNS:
            self.add_column(label, key=key, width=width)
        self._update_title()

    @property
    def selected_key(self) -> str | None:
        if not self._order or not self.is_valid_row_index(self.cursor_row):
            return None
        return self._order[self.cursor_row]

    def value_of(self, key: str) -> VersionedValue | None:
        return self._values.get(key)

    def apply(
        self,
        changed: Iterable[str],
        key_values: Mapping[str, VersionedValue],
        countdowns: Mapping[str, int] | None = None,
        expired: Collection[str] = (),
    ) -> None:
        """Re-render the rows of the keys in ``changed``; ``key_values`` are all of this
        node's keys, as the view model last read them, ``countdowns`` the seconds left of
        those that expire. A key in ``expired`` is gone from the pane (its tombstone is not
        listed, as a deleted key's is: nobody deleted it)."""
        countdowns = countdowns or {}
        keep = self.selected_key
        added = False
        if countdowns and not self._with_expiry:
            self.add_column(_EXPIRES[1], key=_EXPIRES[0], default=Text(""))
            self._with_expiry = True
        columns = (*_COLUMNS, _EXPIRES) if self._with_expiry else _COLUMNS
        shown = len(columns)  # rows keep every cell; the ones shown are updated
        for key in changed:
            value = None if is_internal(key) else key_values.get(key)
            if value is not None and value.is_deleted and key in expired:
                value = None
            old = self._rows.get(key)
            if value is None:
                if old is not None:
                    self.remove_row(key)
                    del self._rows[key]
                continue
            row = _row(value, key, countdowns.get(key))
            if old is None:
                cells = (Text(t, style=s, no_wrap=True) for t, s in row[:shown])
                self.add_row(*cells, key=key)
                added = True
            elif old != row:
                for (column, _label, _width), cell, old_cell in zip(
                    columns, row[:shown], old[:shown], strict=True
                ):
                    if cell != old_cell:
                        self.update_cell(key, column, Text(cell[0], style=cell[1], no_wrap=True))
            self._rows[key] = row
        if not countdowns and self._with_expiry:
            self.remove_column(_EXPIRES[0])
            self._with_expiry = False
        self._values = key_values
        order = sorted(self._rows)
        if added or order != self._order:
            rank = {key: index for index, key in enumerate(order)}
            self.sort("key", key=lambda cell: rank[cell.plain])
            self._order = order
        if keep is not None and keep in self._rows:
            index = self._order.index(keep)
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False)
        self._update_title()

    def _update_title(self) -> None:
        # The count is the rows shown; deleted keys stay listed until they are collected.
        deleted = sum(1 for key in self._rows if self._values[key].is_deleted)
        title = f"Local keys ({len(self._rows)})"
        self.border_title = title + (f" · {deleted} deleted" if deleted else "")
