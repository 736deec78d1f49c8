"""One key (or every key under a prefix) across every node: the key grid's table.

The rows come from the view model (gossip_tui.ui._view_model): each node's row for its
liveness, its visible keys and values, and its key sightings (gossip_tui.ui._history) for
versions, statuses and the time each version was seen here.

A key's status reads as in the Local keys pane (KeyStatus.short_label: set, deleted, ttl)
and is what is true on each node: chitchat's delete-after-TTL mark travels, so every
node's row says ``ttl``; a ttl in seconds is the owner's own deadline (core.expiry), so
the owner's row says ``set · 29s left`` and the peers' rows, rightly, ``set``.

``apply`` re-renders only the nodes a push touched (this node's too when its keys'
countdowns moved), and the ages on a tick; nothing here reads the node.

One concern, though over 400 lines: the key grid's table (its rows, columns, sort and
fit to the window).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import attrs
from rich.text import Text
from textual import events, on
from textual.binding import BindingType
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from gossip_tui.core.models import KeyStatus, Liveness, NodeId
from gossip_tui.ui._format import (
    KEY_STATUS_STYLES,
    STATUS_LABELS,
    STATUS_ORDER,
    STATUS_STYLES,
    format_age,
    one_line,
)
from gossip_tui.ui._view_model import ClusterViewModel, ViewChanges
from gossip_tui.ui.widgets._one_refresh import OneRefresh
from gossip_tui.ui.widgets._vim_keys import VIM_KEYS
from gossip_tui.ui.widgets.nodes_table import CellSpec, _TextCache

# Where a typed key ends as a namespace: `svc.` (or `svc*`) asks for every key under it.
_PREFIX_ENDS = (".", "/", ":", "-", "_", "*")
_INFINITY = float("inf")
_VALUE_LIMIT = 200


@attrs.frozen
class KeyQuery:
    """What the grid shows: one exact key, or every key starting with a prefix (text that
    ends in ``*`` or in a separator, ``. / : - _``). Empty: nothing chosen yet."""

    text: str = ""

    @property
    def is_prefix(self) -> bool:
        return self.text.endswith(_PREFIX_ENDS)

    @property
    def stem(self) -> str:
        return self.text.removesuffix("*")

    def keys_in(self, keys: Iterable[str]) -> list[str]:
        """The keys of ``keys`` the query asks for, sorted."""
        if not self.text:
            return []
        if not self.is_prefix:
            return [self.text] if self.text in keys else []
        stem = self.stem
        return sorted(key for key in keys if key.startswith(stem))


@attrs.frozen
class GridRow:
    """One node's row for one key; ``key`` None: the node has no key the query asks for."""

    node: NodeId
    liveness: Liveness
    key: str | None = None
    value: str | None = None  # None for a tombstone (and when absent)
    version: int | None = None
    seen_at: float | None = None
    status: KeyStatus | None = None  # None when absent
    # Whole seconds left before the key expires (a ttl in seconds): on the owner's row only.
    expires_in: int | None = None

    @property
    def absent(self) -> bool:
        return self.key is None

    @property
    def deleted(self) -> bool:
        return self.status is KeyStatus.DELETED

    def age(self, taken_at: float) -> float | None:
        return None if self.seen_at is None else max(0.0, taken_at - self.seen_at)


def grid_rows_of(model: ClusterViewModel, node: NodeId, query: KeyQuery) -> list[GridRow]:
    """``node``'s rows for ``query``: one per matching key, or one absent row (none at
    all when the model no longer knows the node)."""
    row = model.rows.get(node)
    if row is None or not query.text:
        return []
    sightings = model.key_sightings.of(node)
    values = model.key_values_of(node)
    # Deadlines are the owner's alone: only this node knows its own.
    countdowns = model.local_countdowns if node == model.self_id else {}
    rows = []
    for key in query.keys_in(sightings):
        sighting = sightings[key]
        value = None if sighting.deleted else values.get(key)
        rows.append(
            GridRow(
                node,
                row.liveness,
                key,
                value,
                sighting.version,
                sighting.seen_at,
                sighting.status,
                countdowns.get(key),
            )
        )
    return rows or [GridRow(node, row.liveness)]


SortKey = Callable[[GridRow, float], Any]


@attrs.frozen
class GridColumn:
    key: str
    label: str
    sort_key: SortKey
    # Shown only when the query is a prefix (an exact key would repeat in every row).
    prefix_only: bool = False


def _age_sort(row: GridRow, taken_at: float) -> float:
    age = row.age(taken_at)
    return _INFINITY if age is None else age


def _key_status_sort(row: GridRow, _taken_at: float) -> tuple[bool, int, float]:
    # Absent rows last; the keys that expire soonest first among those set.
    status = -1 if row.status is None else int(row.status)
    return (row.absent, status, _INFINITY if row.expires_in is None else row.expires_in)


def key_status_text(row: GridRow) -> str:
    """``set``, ``deleted``, ``ttl`` (as the Local keys pane spells them), and on the
    owner's row of a key that expires, the time left: ``set · 29s left`` (``set · due``
    once its deadline passed, until the node's next round deletes it)."""
    if row.status is None:
        return ""
    label = row.status.short_label
    if row.expires_in is None:
        return label
    return (
        f"{label} · due" if row.expires_in <= 0 else f"{label} · {format_age(row.expires_in)} left"
    )


GRID_COLUMNS: tuple[GridColumn, ...] = (
    GridColumn("node", "Node", lambda r, _t: r.node.node_id),
    GridColumn("status", "Status", lambda r, _t: STATUS_ORDER[r.liveness]),
    GridColumn("version", "Ver", lambda r, _t: -1 if r.version is None else r.version),
    GridColumn("age", "Changed", _age_sort),
    GridColumn("key", "Key", lambda r, _t: r.key or "", prefix_only=True),
    # The key's status ("State": "Status" is the node's liveness, as in the nodes table).
    GridColumn("key_status", "State", _key_status_sort),
    # Last: _fit_columns gives it the room left. Absent rows sort after every value,
    # tombstones just before them.
    GridColumn("value", "Value", lambda r, _t: (r.absent, r.deleted, r.value or "")),
)
# Below this width the node column is held to _NODE_WIDTH_NARROW (less, down to
# _NODE_WIDTH_MIN, when the value would get under _MIN_VALUE_WIDTH) and long names lose
# their beginning, not their end: demo and real names share a prefix and differ at the end.
_WIDE = 120
_NODE_WIDTH_NARROW = 18
_NODE_WIDTH_MIN = 8
_MIN_VALUE_WIDTH = 12


def fit_name(name: str, width: int) -> str:
    """``name`` in ``width`` cells, cut from the left (``…34001-peer01``)."""
    return name if len(name) <= width else "…" + name[len(name) - width + 1 :]


def _cell_specs(row: GridRow, taken_at: float, columns: tuple[GridColumn, ...]) -> list[CellSpec]:
    specs: list[CellSpec] = []
    dim = " dim" if row.absent else ""
    for column in columns:
        match column.key:
            case "node":
                style = "bold" if row.liveness is Liveness.SELF else ""
                specs.append((row.node.node_id, "dim" if row.absent else style))
            case "status":
                specs.append((STATUS_LABELS[row.liveness], STATUS_STYLES[row.liveness] + dim))
            case "version":
                specs.append(("" if row.version is None else str(row.version), ""))
            case "age":
                specs.append((_age_text(row, taken_at), "dim"))
            case "key":
                specs.append((row.key or "", "bold"))
            case "key_status":
                style = "" if row.status is None else KEY_STATUS_STYLES[row.status]
                specs.append((key_status_text(row), style))
            case "value":
                if row.absent:
                    specs.append(("absent", "dim italic"))
                elif row.deleted:
                    specs.append(("", ""))  # a tombstone has no value; its status says so
                else:
                    specs.append((one_line(row.value or "", _VALUE_LIMIT), ""))
    return specs


def _age_text(row: GridRow, taken_at: float) -> str:
    return "" if row.absent else format_age(row.age(taken_at))


def _row_key(row: GridRow) -> str:
    node = row.node
    return f"{node.node_id}:{node.generation}:{node.gossip_addr}\x00{row.key or ''}"


class KeyGridTable(OneRefresh, DataTable[Text]):
    """The grid: rows keyed by node and key, updated in place, sorted by any column
    (`o` next column, `O` reverse, a header click), absent nodes dimmed or hidden."""

    BINDINGS: ClassVar[list[BindingType]] = VIM_KEYS

    class SortChanged(Message):
        def __init__(self, column: str, reverse: bool) -> None:
            super().__init__()
            self.column = column
            self.reverse = reverse

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, id=id)
        self.key_query = KeyQuery()
        self.show_absent = True
        self.sort_column = "node"
        self.sort_reverse = False
        self._model: ClusterViewModel | None = None
        self._taken_at = 0.0
        self._columns: tuple[GridColumn, ...] = ()
        self._column_keys: list[ColumnKey] = []
        # Every grid row by row key, those shown with their cells, and each node's keys.
        self._rows: dict[str, GridRow] = {}
        self._by_node: dict[NodeId, list[str]] = {}
        self._cells: dict[str, list[CellSpec]] = {}
        self._row_keys: dict[str, RowKey] = {}
        # Each shown row's own node cell: its id() tells rows apart when DataTable.sort
        # hands the key function cells rather than row keys.
        self._node_cells: dict[str, Text] = {}
        self._order: list[str] = []
        self._texts = _TextCache()
        self._node_width = _NODE_WIDTH_NARROW
        # Each node's liveness and max version as its rows were last built.
        self._shown_as: dict[NodeId, tuple[Liveness, int]] = {}
        self._widths_moved = False

    # -- reading ---------------------------------------------------------------------------

    @property
    def columns_shown(self) -> tuple[str, ...]:
        return tuple(column.key for column in self._columns)

    @property
    def shown_keys(self) -> list[str]:
        return list(self._order)

    @property
    def shown_rows(self) -> list[GridRow]:
        return [self._rows[key] for key in self._order]

    @property
    def selected_row(self) -> GridRow | None:
        if not self._order or not self.is_valid_row_index(self.cursor_row):
            return None
        return self._rows.get(self._order[self.cursor_row])

    @property
    def counts(self) -> tuple[int, int]:
        """(nodes holding a matching key, nodes without one), over every known node."""
        absent = sum(1 for keys in self._by_node.values() if self._rows[keys[0]].absent)
        return len(self._by_node) - absent, absent

    # -- feeding ---------------------------------------------------------------------------

    def show_query(self, model: ClusterViewModel, query: KeyQuery) -> None:
        """Every node again, for ``query`` (a new key, or the first showing)."""
        self._model = model
        self._taken_at = model.taken_at
        self.key_query = query
        columns = tuple(c for c in GRID_COLUMNS if query.is_prefix or not c.prefix_only)
        self.clear(columns=columns != self._columns)
        if columns != self._columns:
            self._columns = columns
            self._column_keys = [self.add_column(c.label, key=c.key) for c in columns]
        self._rows.clear()
        self._by_node.clear()
        self._cells.clear()
        self._row_keys.clear()
        self._node_cells.clear()
        self._shown_as.clear()
        self._order = []
        if self.sort_column not in self.columns_shown:
            self.sort_column, self.sort_reverse = "node", False
        self._sync(list(model.rows), ages=False)

    def apply(self, changes: ViewChanges) -> None:
        """The view model moved: re-render the nodes it touched (a key change moves its
        node's max version, hence its row), and the ages if the clock moved."""
        model = self._model
        if model is None:
            return
        # A tick updates every node whose heartbeat moved; only its liveness and its keys
        # (its max version) change what the grid shows, and ages are done below.
        shown = self._shown_as
        touched = {row.node for row in changes.added}
        touched.update(
            row.node
            for row in changes.updated
            if shown.get(row.node) != (row.liveness, row.max_version)
        )
        touched.update(changes.removed)
        if changes.local_keys and model.self_id in model.rows:
            # This node's keys moved, or their countdowns did.
            touched.add(model.self_id)
        ticked = changes.ticked and model.taken_at != self._taken_at
        self._taken_at = model.taken_at
        if touched or ticked:
            self._sync(touched, ages=ticked)

    def toggle_absent(self) -> None:
        self.show_absent = not self.show_absent
        if self._model is not None:
            self._sync(list(self._by_node), ages=False)

    def sort_by(self, column: str, reverse: bool | None = None) -> None:
        if column not in self.columns_shown:
            return
        previous = self.sort_column
        self.sort_column = column
        self.sort_reverse = (
            reverse if reverse is not None else (previous == column and not self.sort_reverse)
        )
        keep = self._selected_key()
        self._sort_rows()
        self._restore_cursor(keep)
        self.post_message(self.SortChanged(self.sort_column, self.sort_reverse))

    def sort_by_index(self, index: int) -> None:
        """The ``index``-th column shown (from 1), as the digit keys sort; again: reverse."""
        if 1 <= index <= len(self._columns):
            column = self._columns[index - 1].key
            again = column == self.sort_column
            self.sort_by(column, reverse=not self.sort_reverse if again else False)

    def action_cycle_sort(self) -> None:
        keys = self.columns_shown
        index = keys.index(self.sort_column) if self.sort_column in keys else -1
        self.sort_by(keys[(index + 1) % len(keys)], reverse=False)

    def action_reverse_sort(self) -> None:
        self.sort_by(self.sort_column, reverse=not self.sort_reverse)

    # -- internals -------------------------------------------------------------------------

    def _selected_key(self) -> str | None:
        if not self._order or not self.is_valid_row_index(self.cursor_row):
            return None
        return self._order[self.cursor_row]

    def _sync(self, nodes: Iterable[NodeId], *, ages: bool) -> None:
        model = self._model
        assert model is not None
        keep = self._selected_key()
        taken_at = self._taken_at
        columns = self._columns
        sort_index = self.columns_shown.index(self.sort_column)
        structure = False
        order_moved = False
        with self.app.batch_update(), self._one_refresh():
            done: set[str] = set()
            for node in nodes:
                rows = grid_rows_of(model, node, self.key_query)
                node_row = model.rows.get(node)
                if node_row is None:
                    self._shown_as.pop(node, None)
                else:
                    self._shown_as[node] = (node_row.liveness, node_row.max_version)
                new_keys = [_row_key(row) for row in rows]
                for key in self._by_node.pop(node, []):
                    if key not in new_keys:
                        self._rows.pop(key, None)
                        structure |= self._hide(key)
                if rows:
                    self._by_node[node] = new_keys
                for key, row in zip(new_keys, rows, strict=True):
                    self._rows[key] = row
                    done.add(key)
                    if row.absent and not self.show_absent:
                        structure |= self._hide(key)
                        continue
                    specs = _cell_specs(row, taken_at, columns)
                    old = self._cells.get(key)
                    if old is None:
                        structure = True
                        self._add(key, specs)
                    elif specs != old:
                        self._update(key, specs, old)
                        order_moved |= specs[sort_index] != old[sort_index]
            if ages and "age" in self.columns_shown:
                age_index = self.columns_shown.index("age")
                sightings = model.key_sightings
                for key, old in self._cells.items():
                    if key in done:
                        continue
                    row = self._rows[key]
                    if row.key is not None and row.seen_at is None:
                        # Seen by an event, stamped by this reading.
                        sighting = sightings.of(row.node).get(row.key)
                        if sighting is not None and sighting.seen_at is not None:
                            row = self._rows[key] = attrs.evolve(row, seen_at=sighting.seen_at)
                    if _age_text(row, taken_at) != old[age_index][0]:
                        self._update(key, _cell_specs(row, taken_at, columns), old)
                        order_moved |= sort_index == age_index
            if structure or self._widths_moved:
                self._widths_moved = False
                self._fit_columns()
            if structure or order_moved:
                self._sort_rows()
            self._restore_cursor(keep)

    def _node_cell(self, spec: CellSpec) -> Text:
        name = fit_name(spec[0], self._node_width)
        return Text(name, style=spec[1], no_wrap=True, overflow="ellipsis")

    def _add(self, key: str, specs: list[CellSpec]) -> None:
        node_cell = self._node_cells[key] = self._node_cell(specs[0])
        cells = [node_cell, *map(self._texts, specs[1:])]
        self._row_keys[key] = self.add_row(*cells, key=key)
        self._cells[key] = specs

    def _update(self, key: str, specs: list[CellSpec], old: list[CellSpec]) -> None:
        row_key = self._row_keys[key]
        for index, (column_key, spec, old_spec) in enumerate(
            zip(self._column_keys, specs, old, strict=True)
        ):
            if spec == old_spec:
                continue
            # A middle column's widest cell may have moved (a countdown came or went).
            self._widths_moved |= 0 < index < len(specs) - 1 and len(spec[0]) != len(old_spec[0])
            if index == 0:
                cell = self._node_cells[key] = self._node_cell(spec)
            else:
                cell = self._texts(spec)
            self.update_cell(row_key, column_key, cell)
        self._cells[key] = specs

    def _hide(self, key: str) -> bool:
        if key not in self._cells:
            return False
        self.remove_row(self._row_keys.pop(key))
        del self._cells[key], self._node_cells[key]
        return True

    def _sort_rows(self) -> None:
        column = next(c for c in self._columns if c.key == self.sort_column)
        taken_at = self._taken_at
        rows = self._rows

        def order_key(row_key: str) -> tuple[Any, Any, str]:
            row = rows[row_key]
            return (column.sort_key(row, taken_at), row.node.sort_key(), row.key or "")

        order = sorted(self._cells, key=order_key, reverse=self.sort_reverse)
        if order != self._order or len(order) != self.row_count:
            rank = {id(self._node_cells[key]): index for index, key in enumerate(order)}
            self.sort("node", key=lambda cell: rank[id(cell)])
            self._order = order

    def _restore_cursor(self, key: str | None) -> None:
        if key is not None and key in self._cells:
            index = self._order.index(key)
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False)

    def on_resize(self, _event: events.Resize) -> None:
        self._fit_columns()

    def _fit_columns(self) -> None:
        """Names whole where the width allows, the value column taking what is left."""
        if not self._column_keys or not self.size.width:
            return
        pad = 2 * self.cell_padding
        room = self.scrollable_content_region.width
        node = self.columns[self._column_keys[0]]
        # From the cells held here: the table measures its columns only at its next layout.
        others = sum(
            pad
            + max(
                len(column.label), max((len(c[index][0]) for c in self._cells.values()), default=0)
            )
            for index, column in enumerate(self._columns[1:-1], start=1)
        )
        longest = max((len(spec[0][0]) for spec in self._cells.values()), default=4)
        if room >= _WIDE:
            node_width = max(4, longest)
        else:
            spare = max(_NODE_WIDTH_MIN, room - others - 2 * pad - _MIN_VALUE_WIDTH)
            node_width = min(max(4, longest), _NODE_WIDTH_NARROW, spare)
        if node_width != self._node_width:
            # The names are cut to the column: cut them again.
            self._node_width = node_width
            for key, specs in self._cells.items():
                cell = self._node_cells[key] = self._node_cell(specs[0])
                self.update_cell(self._row_keys[key], self._column_keys[0], cell)
        value = self.columns[self._column_keys[-1]]
        value_width = max(_MIN_VALUE_WIDTH, room - node_width - others - 2 * pad)
        if node.width != node_width or value.width != value_width or node.auto_width:
            node.auto_width = value.auto_width = False
            node.width, value.width = node_width, value_width
            self._require_update_dimensions = True
            self.refresh(layout=True)

    @on(DataTable.HeaderSelected)
    def _header_selected(self, event: DataTable.HeaderSelected) -> None:
        if event.data_table is self:
            event.stop()
            self.sort_by(str(event.column_key.value))
