"""Every node this node knows of, updated in place, sortable and filterable.

One concern, though over 400 lines: the nodes table (its columns, their fit to the
window, sort, filter and in-place updates).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from typing import Any, ClassVar

import attrs
from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events, on
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from gossip_tui.core.models import Liveness, NodeId
from gossip_tui.ui._format import (
    DEFAULT_PHI_THRESHOLD,
    STATUS_LABELS,
    STATUS_ORDER,
    STATUS_STYLES,
    format_age,
    format_phi,
    node_age,
    phi_style,
)
from gossip_tui.ui._frames import draw_when_idle
from gossip_tui.ui._view_model import NodeRow, ViewChanges
from gossip_tui.ui.widgets._in_place import RepaintsInPlace
from gossip_tui.ui.widgets._one_refresh import OneRefresh
from gossip_tui.ui.widgets._steady_input import SteadyInput
from gossip_tui.ui.widgets._vim_keys import VIM_KEYS

# A cell as the table shows it: text and style. A changed row only touches the cells whose
# rendering actually changed.
CellSpec = tuple[str, str]
SortKey = Callable[[NodeRow, float], Any]

_INFINITY = float("inf")
# Up to this many rows in or out, a refilter adds and removes them one by one; past it
# the table is rebuilt (see NodesTable._refilter_all).
_FEW_ROWS = 16
# Rendered cells kept (see NodesTable._render_cell): a screenful is ~400, a cursor or a
# hover doubles a row's.
_CELL_CACHE_SIZE = 4096
# Rendered lines kept (see NodesTable._render_line): a screenful or two.
_LINE_CACHE_SIZE = 512


class Column:
    """One column: its key, label and sort key (the digit that sorts by it), how a node
    renders in it and sorts by it. Widths follow the content (see NodesTable._fit_columns)."""

    def __init__(self, key: str, label: str, sort_key: SortKey) -> None:
        self.key = key
        self.label = label
        self.sort_key = sort_key


# In the order of what tells nodes apart and healthy from failing: on a narrow screen the
# last columns are the ones past the right edge, never phi.
COLUMNS: tuple[Column, ...] = (
    Column("node", "Node", lambda n, _t: n.node.node_id),
    Column("status", "Status", lambda n, _t: STATUS_ORDER[n.liveness]),
    Column("phi", "Phi", lambda n, _t: -1.0 if n.phi is None else n.phi),
    Column("age", "Updated", lambda n, t: _age_sort(n, t)),
    Column("heartbeat", "Heartbeat", lambda n, _t: n.heartbeat),
    Column("keys", "Keys", lambda n, _t: n.key_count),
    Column("max_version", "Max ver", lambda n, _t: n.max_version),
    Column("generation", "Generation", lambda n, _t: n.node.generation),
    Column("address", "Address", lambda n, _t: n.node.gossip_addr.sort_key()),
)
# The columns that must stay on screen beside the node's name, whatever the width.
_ALWAYS_SHOWN = ("status", "phi", "age")
_MIN_NODE_WIDTH = 12
COLUMN_KEYS: tuple[str, ...] = tuple(column.key for column in COLUMNS)
_COLUMNS_BY_KEY = {column.key: column for column in COLUMNS}
_AGE_INDEX = COLUMN_KEYS.index("age")
_STATUS_INDEX = COLUMN_KEYS.index("status")
_RESTART_SHOWN = frozenset({Liveness.SELF, Liveness.LIVE})
# The node, generation and address cells together spell the row key (see _identity):
# DataTable.sort hands its key function cells, not row keys.
_IDENTITY = ("node", "generation", "address")


def _text_width(text: str) -> int:
    """The width Rich measures a Text of ``text`` at: its widest line."""
    return max(map(cell_len, text.splitlines()), default=0)


def _age_sort(row: NodeRow, taken_at: float) -> float:
    age = node_age(row, taken_at)
    return _INFINITY if age is None else age


# The cells of a NodeId never change: the row key (str(NodeId)), name, address and
# generation texts are computed once per node, not once per refresh.
_Identity = tuple[str, str, str, str]


def _identity(ident: NodeId) -> _Identity:
    addr = str(ident.gossip_addr)
    generation = str(ident.generation)
    return (f"{ident.node_id}:{generation}:{addr}", ident.node_id, addr, generation)


_NAME_STYLES = {liveness: "bold" if liveness is Liveness.SELF else "" for liveness in Liveness}
_STATUS_SPECS = {
    liveness: (STATUS_LABELS[liveness], STATUS_STYLES[liveness]) for liveness in Liveness
}


def _age_spec(row: NodeRow, taken_at: float) -> CellSpec:
    return (format_age(node_age(row, taken_at)), "dim")


def _status_spec(row: NodeRow, taken_at: float) -> CellSpec:
    """The liveness; on a live generation that older ones fold into, "↻" and how long ago
    it restarted (as first seen here)."""
    label, style = _STATUS_SPECS[row.liveness]
    if not row.restarted or row.liveness not in _RESTART_SHOWN:
        return (label, style)
    if row.restarted_at is None:
        return (f"{label} ↻", style)
    return (f"{label} ↻{format_age(max(0.0, taken_at - row.restarted_at))}", style)


def cell_specs(
    row: NodeRow,
    taken_at: float,
    phi_threshold: float = DEFAULT_PHI_THRESHOLD,
    identity: _Identity | None = None,
) -> tuple[CellSpec, ...]:
    """How one node renders, column by column (in COLUMNS order)."""
    liveness = row.liveness
    _key, name, addr, generation = identity or _identity(row.node)
    phi = row.phi
    return (
        (name, _NAME_STYLES[liveness]),
        _status_spec(row, taken_at),
        (format_phi(phi), phi_style(phi, phi_threshold)),
        _age_spec(row, taken_at),
        (str(row.heartbeat), ""),
        (str(row.key_count), ""),
        (str(row.max_version), ""),
        (generation, ""),
        (addr, ""),
    )


@attrs.frozen
class NodeQuery:
    """A parsed filter: words matched in a node's id, address and status, and k9s-style
    label selectors (``key=value``, ``key!=value``, ``key`` alone for "has the key" is a
    word) matched against its keys. Every part must match."""

    words: tuple[str, ...] = ()
    equal: tuple[tuple[str, str], ...] = ()
    not_equal: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> NodeQuery:
        words: list[str] = []
        equal: list[tuple[str, str]] = []
        not_equal: list[tuple[str, str]] = []
        for term in text.replace(",", " ").split():
            if "!=" in term:
                key, _op, value = term.partition("!=")
                not_equal.append((key, value))
            elif "=" in term:
                key, _op, value = term.partition("=")
                equal.append((key, value.removeprefix("=")))  # "==" reads as "="
            else:
                words.append(term.lower())
        return cls(tuple(words), tuple(equal), tuple(not_equal))

    @property
    def needs_keys(self) -> bool:
        return bool(self.equal or self.not_equal)

    def matches(self, haystack: str, key_values: Mapping[str, str]) -> bool:
        """``haystack``: the node's id, address and status, lower case."""
        return (
            all(word in haystack for word in self.words)
            and all(key_values.get(key) == value for key, value in self.equal)
            and all(key_values.get(key) != value for key, value in self.not_equal)
        )


def _restamped(strip: Strip, row_index: int) -> Strip:
    """``strip`` with its mouse meta's row set to ``row_index`` (DataTable stamps each
    cell's segments, and the stretch past the last column, with their row; a later meta's
    keys replace an earlier's when Rich adds styles). Segments without a meta keep none."""
    row_meta = Style.from_meta({"row": row_index})
    restyled: dict[Style, Style] = {}
    segments = []
    for text, style, control in strip:
        if style is not None and style._meta:
            new_style = restyled.get(style)
            if new_style is None:
                new_style = restyled[style] = style + row_meta
            style = new_style
        segments.append(Segment(text, style, control))
    return Strip(segments, strip.cell_length)


class _TextCache:
    """Shared Text objects for cells that repeat ("live", "now", "0.4" in green...).

    DataTable never mutates a cell's Text, so one object can sit in many cells. Bounded:
    heartbeats are unique per round and would otherwise pile up.
    """

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._texts: dict[CellSpec, Text] = {}

    def __call__(self, spec: CellSpec) -> Text:
        text = self._texts.get(spec)
        if text is None:
            if len(self._texts) >= self._limit:
                self._texts.clear()
            text = Text(spec[0], style=spec[1], no_wrap=True, overflow="ellipsis")
            self._texts[spec] = text
        return text


class NodesTable(RepaintsInPlace, OneRefresh, DataTable[Text]):
    """The cluster's nodes, one row per NodeId, keyed by ``str(NodeId)``.

    ``apply`` takes the view model's changes: rows are added and removed as nodes come and
    go, cells of the rows that changed are updated only where their text or style did, the
    ages follow the clock, the order is re-established only when it moved, and the cursor
    stays on the node it was on.

    Its size on screen is its pane's (app.tcss: the height is 1fr, the width the pane's),
    whatever its rows and column widths: those change only what scrolls, so they repaint
    the table rather than lay the dashboard out (see _update_dimensions).
    """

    class NodeHighlighted(Message):
        """The cursor moved to another node (``node_key`` is ``str(node)``; both None when
        no row is left)."""

        def __init__(self, node_key: str | None, node: NodeId | None) -> None:
            super().__init__()
            self.node_key = node_key
            self.node = node

    BINDINGS: ClassVar[list[BindingType]] = VIM_KEYS

    class SortChanged(Message):
        """The sort column or direction changed (by key, header click or code)."""

        def __init__(self, column: str, reverse: bool) -> None:
            super().__init__()
            self.column = column
            self.reverse = reverse

    def __init__(
        self,
        *,
        phi_threshold: float = DEFAULT_PHI_THRESHOLD,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        # Before DataTable's __init__, which already clears the caches (see _render_cell).
        self._cell_lines: LRUCache[tuple[Any, ...], tuple[int, list[list[Segment]]]] = LRUCache(
            _CELL_CACHE_SIZE
        )
        self._line_strips: LRUCache[tuple[Any, ...], Strip] = LRUCache(_LINE_CACHE_SIZE)
        # The rows' lines, by what they show, with the index each was last stamped for.
        self._row_lines: LRUCache[tuple[Any, ...], tuple[int, Strip]] = LRUCache(_LINE_CACHE_SIZE)
        # Table lines drawn afresh (not from a cache), for test_keypress_cost.py.
        self.lines_rendered = 0
        # The update_cell calls made (see _render_line: DataTable counts them among its
        # updates, and a line of a row whose cells are unchanged need not be drawn again).
        self._cell_updates = 0
        super().__init__(cursor_type="row", zebra_stripes=True, id=id, classes=classes)
        # The name, status, phi and age stay put when the table scrolls sideways to the
        # columns past the right edge of a narrow window.
        self.fixed_columns = 1 + len(_ALWAYS_SHOWN)
        self.phi_threshold = phi_threshold
        self.sort_column = "node"
        self.sort_reverse = False
        self._filter = ""
        self._query = NodeQuery()
        # A node's keys and values, for key=value filters (the app hands the view model's).
        self.key_values_of: Callable[[NodeId], Mapping[str, str]] = lambda _node: {}
        self._taken_at = 0.0
        # Every row the view model has, by row key; those passing the filter are shown.
        self._rows: dict[str, NodeRow] = {}
        self._shown: dict[str, NodeRow] = {}
        self._cells: dict[str, tuple[CellSpec, ...]] = {}
        self._order: list[str] = []
        self._highlighted: str | None = None
        self._identities: dict[NodeId, _Identity] = {}
        # What each row's cells in the table were drawn from: its row and the clock then.
        self._drawn: dict[str, tuple[NodeRow, float]] = {}
        # Counts for the tests of what a tick or a keystroke costs (test_table_cost.py).
        self.cells_written = 0
        self.rebuilds = 0
        # DataTable's own key objects, kept to spare it re-wrapping strings on every update.
        self._row_keys: dict[str, RowKey] = {}
        self._column_keys: list[ColumnKey] = []
        self._texts = _TextCache()

    def on_mount(self) -> None:
        self._column_keys = [self.add_column(column.label, key=column.key) for column in COLUMNS]
        self._update_title()

    def on_resize(self, _event: events.Resize) -> None:
        self._fit_columns()
        self._draw_visible()

    # -- rendering -------------------------------------------------------------------------

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> list[list[Segment]]:
        """A cell's lines, cached by what the cell shows rather than by DataTable's update
        count: any update_cell, anywhere, bumps that count and throws every rendered cell
        away, and a tick changes some cells of every row. A cell renders from its text and
        style, width and highlight; its row index only goes into the mouse's meta, so a cell
        drawn before at another index (the filter rebuilt the rows) is the same lines with
        the meta stamped again, not a Rich render (with 500 nodes a rebuild drew every cell
        on screen from scratch, most of a slow filter key)."""
        specs = None
        if row_index >= 0 and column_index >= 0:
            row_key = self._row_locations.get_key(row_index)
            specs = self._cells.get(row_key.value) if row_key is not None else None  # type: ignore[arg-type]
        if specs is None:  # the header, or a row not yet known here
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        cache_key = (
            column_index,
            specs[column_index],
            base_style,
            width,
            cursor,
            hover,
            self._show_hover_cursor,
            self.show_cursor,
            self._pseudo_class_state,
        )
        cached = self._cell_lines.get(cache_key)
        if cached is None:
            lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
            self._cell_lines[cache_key] = (row_index, lines)
            return lines
        drawn_at, lines = cached
        if drawn_at != row_index:
            # DataTable's meta for the mouse, as its _render_cell adds it: a later meta's
            # keys replace an earlier's when Rich adds styles.
            meta = Style.from_meta({"row": row_index, "column": column_index})
            lines = [
                [
                    Segment(text, style + meta if style else meta, control)
                    for text, style, control in line
                ]
                for line in lines
            ]
            self._cell_lines[cache_key] = (row_index, lines)
        return lines

    def _render_line(self, y: int, x1: int, x2: int, base_style: Style) -> Strip:
        """A line of the table, cached by what its row shows rather than by where it sits.

        DataTable keys every line on the cursor's coordinate, so each `j` drew every row
        on screen again, when only the row the cursor left and the one it reached look
        different (a row cursor highlights whole rows). And it keys every line on its y and
        update count, which any update_cell bumps and a rebuild of the rows changes for
        every line: a tick that changed three rows drew every row on screen again, and a
        filter key that rebuilt the rows drew every line again (~3 ms a line at 500
        nodes), though most rows it showed had been drawn before, elsewhere. A row's line
        depends on its cells (their specs, see _draw_visible), the column widths, whether
        it is the cursor's or the mouse's, its stripe (the index's parity) and the
        table's settings; its index goes only into the mouse's meta, which a line drawn
        at another index gets stamped again (see _restamped)."""
        if self.cursor_type != "row":
            return super()._render_line(y, x1, x2, base_style)
        try:
            row_key, line_in_row = self._get_offsets(y)
        except LookupError:
            return super()._render_line(y, x1, x2, base_style)
        row_index = self._row_locations.get(row_key)
        if row_index is None:
            row_index = -1  # the header
        specs = self._cells.get(row_key.value) if row_index >= 0 else None  # type: ignore[arg-type]
        shared = (
            x1,
            x2,
            self.size.width,
            self.show_cursor and row_index == self.cursor_row,
            self._show_hover_cursor and row_index == self.hover_row,
            base_style,
            self._show_hover_cursor,
            self.show_cursor,
            tuple(column.get_render_width(self) for column in self.ordered_columns),
            self._pseudo_class_state,
        )
        if specs is None:
            # The header, or a row not drawn from specs (not known here yet): keyed where
            # it sits, as DataTable does. The header's labels change only with the
            # columns, never with a cell.
            at = (
                y,
                self._update_count - self._cell_updates if row_index < 0 else self._update_count,
            )
            strip = self._line_strips.get((*at, *shared))
            if strip is None:
                self.lines_rendered += 1
                strip = super()._render_line(y, x1, x2, base_style)
                self._line_strips[(*at, *shared)] = strip
            return strip
        row_key_of_line = (
            specs,
            line_in_row,
            row_index % 2 if self.zebra_stripes else 0,
            row_index < self.fixed_rows,
            self.fixed_columns,
            self.show_row_labels,
            self.cell_padding,
            *shared,
        )
        cached = self._row_lines.get(row_key_of_line)
        if cached is None:
            self.lines_rendered += 1
            strip = super()._render_line(y, x1, x2, base_style)
            self._row_lines[row_key_of_line] = (row_index, strip)
            return strip
        drawn_at, strip = cached
        if drawn_at != row_index:
            strip = _restamped(strip, row_index)
            self._row_lines[row_key_of_line] = (row_index, strip)
        return strip

    def _clear_caches(self) -> None:
        # The cells and the rows' lines stay: keyed by what they show (and restamped with
        # their row), they are as good after DataTable's clear() as before it; a new style
        # clears them (notify_style_update).
        super()._clear_caches()
        self._line_strips.clear()

    def notify_style_update(self) -> None:
        self._cell_lines.clear()  # a new theme or CSS: the same text renders otherwise
        self._line_strips.clear()
        self._row_lines.clear()
        super().notify_style_update()

    def _fit_columns(self) -> None:
        """Every column as wide as its content, but the node column no wider than what
        leaves status, phi and age on screen: names tell nodes apart by their ends too, so
        they get all the room there is, and an ellipsis only when there is none."""
        columns = self.columns
        if not columns or not self.size.width:
            return
        node = columns[self._column_keys[0]]
        pad = 2 * self.cell_padding
        others = sum(columns[ColumnKey(key)].get_render_width(self) for key in _ALWAYS_SHOWN)
        room = self.scrollable_content_region.width - others - pad
        # DataTable measures new rows only when it next renders: measure the names here.
        longest = max(
            (cell_len(self._identities[row.node][1]) for row in self._shown.values()), default=0
        )
        width = max(_MIN_NODE_WIDTH, min(max(longest, len("Node")), room))
        if node.auto_width or node.width != width:
            node.auto_width = False
            node.width = width
            # The virtual width follows on idle (_update_dimensions), without a layout.
            self._require_update_dimensions = True
            self.refresh()

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        """DataTable's new virtual size (rows came or went, columns widened), as a repaint.

        A new virtual size asks for a layout of the whole screen, which re-arranges and
        repaints every pane: with 500 nodes a filter keystroke that hid or showed rows
        cost ~70 ms of layout (more than the rest of the keystroke). The table keeps its
        size on screen, so what the layout would do for it is what _scroll_update does:
        the scrollbars follow the new size (the vertical one is always there, see
        _scroll_update).

        The new rows' cells are measured from their specs (the text's width, as Rich
        measures a Text), not through Rich's measure protocol: that asks the console for
        its options, hence the terminal's size, once a cell, and a filter key that rebuilt
        500 rows spent more time measuring 4,500 cells than rebuilding them."""
        self._measure_rows(new_rows)
        with self.keeping_its_size():
            super()._update_dimensions(())  # the virtual size, every row measured
        if self.size:
            self._scroll_update(self.virtual_size)

    def _measure_rows(self, row_keys: Iterable[RowKey]) -> None:
        """Widen the columns to the cells of ``row_keys`` (as DataTable does: widths only
        grow); a row removed since it was added is skipped."""
        columns = [self.columns[key] for key in self._column_keys]
        widths = [column.content_width for column in columns]
        cells = self._cells
        for row_key in row_keys:
            specs = cells.get(row_key.value)  # type: ignore[arg-type]
            if specs is None:
                continue
            for index, (text, _style) in enumerate(specs):
                width = _text_width(text)
                if width > widths[index]:
                    widths[index] = width
        for column, width in zip(columns, widths, strict=True):
            column.content_width = width

    def _scroll_update(self, virtual_size: Size) -> None:
        """The vertical scrollbar is always shown (app.tcss), so rows coming and going
        never change the table's content width (a layout of the dashboard): when they fit,
        it is an empty track rather than a thumb the whole height."""
        super()._scroll_update(virtual_size)
        if self.show_vertical_scrollbar:
            bar = self.vertical_scrollbar
            if virtual_size.height <= bar.window_size:
                bar.window_virtual_size = 0

    def remove_row(self, row_key: RowKey | str) -> None:
        # DataTable asks for a layout at once; the new virtual size follows on idle, as a
        # repaint (see _update_dimensions).
        with self.keeping_its_size():
            super().remove_row(row_key)

    # -- reading ---------------------------------------------------------------------------

    @property
    def selected_key(self) -> str | None:
        """``str(NodeId)`` of the node under the cursor."""
        if not self._order or not self.is_valid_row_index(self.cursor_row):
            return None
        return self._order[self.cursor_row]

    @property
    def selected_row(self) -> NodeRow | None:
        key = self.selected_key
        return None if key is None else self._shown.get(key)

    @property
    def shown_keys(self) -> list[str]:
        """Row keys in display order."""
        return list(self._order)

    @property
    def filter_text(self) -> str:
        return self._filter

    # -- updating --------------------------------------------------------------------------

    def apply(self, changes: ViewChanges, taken_at: float) -> None:
        """Bring the table in line with the view model after ``changes``; ``taken_at`` is
        its clock, against which ages are shown."""
        touched: list[str] = []
        identities = self._identities
        for node in changes.removed:
            identity = identities.pop(node, None)
            if identity is not None:
                self._rows.pop(identity[0], None)
                touched.append(identity[0])
        for row in (*changes.added, *changes.updated):
            identity = identities.get(row.node)
            if identity is None:
                identity = identities[row.node] = _identity(row.node)
            self._rows[identity[0]] = row
            touched.append(identity[0])
        ticked = changes.ticked and taken_at != self._taken_at
        self._taken_at = taken_at
        if touched or ticked:
            self._sync(touched, ticked=ticked)

    def _sync(self, keys: Iterable[str], *, ticked: bool) -> None:
        """Take in the rows ``keys`` (added, changed, gone or refiltered): rows come and go
        at once, the order follows, and the cells are drawn for the rows on screen only
        (see _draw_visible); ``ticked``: the clock moved (every age did)."""
        keep_cursor_on = self.selected_key
        structure_changed = False
        order_may_change = ticked and self.sort_column == "age"
        sort_key = _COLUMNS_BY_KEY[self.sort_column].sort_key
        taken_at = self._taken_at
        rows, shown, cells = self._rows, self._shown, self._cells
        with self.app.batch_update(), self._one_refresh():
            done: set[str] = set()
            for key in keys:
                if key in done:
                    continue
                done.add(key)
                row = rows.get(key)
                if row is None or not self._matches(row, key):
                    if key in cells:
                        self.remove_row(self._row_keys.pop(key))
                        del cells[key], shown[key]
                        self._drawn.pop(key, None)
                        structure_changed = True
                    continue
                old = shown.get(key)
                shown[key] = row
                if key not in cells:
                    self._add(key, row)
                    structure_changed = True
                elif old is not None and sort_key(old, taken_at) != sort_key(row, taken_at):
                    order_may_change = True
            if structure_changed:
                self._fit_columns()
            if structure_changed or order_may_change:
                self._sort_rows()
            self._restore_cursor(keep_cursor_on)
            self._draw_visible()
            self._update_title()

    def _add(self, key: str, row: NodeRow) -> None:
        specs = cell_specs(row, self._taken_at, self.phi_threshold, self._identities[row.node])
        self._row_keys[key] = self.add_row(*map(self._texts, specs), key=key)
        self._cells[key] = specs
        self._drawn[key] = (row, self._taken_at)

    def _visible_keys(self) -> list[str]:
        """The rows on screen (and one either side), in display order."""
        height = self.scrollable_content_region.height - (
            self.header_height if self.show_header else 0
        )
        if height <= 0:
            return []
        top = max(0, int(self.scroll_y) - 1)
        return self._order[top : top + height + 2]

    def _draw_visible(self) -> None:
        """Bring the cells of the rows on screen up to date, each changed cell alone.

        Rows off screen keep what they showed, ages included, until they scroll into view
        (watch_scroll_y) or the window grows: with 500 nodes a tick moves every age and
        heartbeat, and writing them all into the table cost more than the tick itself."""
        taken_at = self._taken_at
        threshold = self.phi_threshold
        shown, cells, drawn = self._shown, self._cells, self._drawn
        cell = self._texts
        row_keys = self._row_keys
        column_keys = self._column_keys
        with self._one_refresh():
            for key in self._visible_keys():
                row = shown[key]
                was = drawn.get(key)
                if was is not None and was[0] is row and was[1] == taken_at:
                    continue
                drawn[key] = (row, taken_at)
                specs = cell_specs(row, taken_at, threshold, self._identities[row.node])
                old = cells[key]
                if specs == old:
                    continue
                row_key = row_keys[key]
                for column_key, spec, old_spec in zip(column_keys, specs, old, strict=True):
                    if spec != old_spec:
                        self.update_cell(row_key, column_key, cell(spec))
                        self._cell_updates += 1
                        self.cells_written += 1
                cells[key] = specs

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._draw_visible()

    def set_filter(self, text: str) -> None:
        """Show only the nodes ``text`` matches (see NodeQuery): words found in the id,
        address or status (case-insensitive), and key=value / key!=value on their keys."""
        text = " ".join(text.split())
        if text == self._filter:
            return
        self._filter = text
        self._query = NodeQuery.parse(text)
        self._refilter_all()

    def refilter(self) -> None:
        """Match the filter again (a key=value filter, after keys changed)."""
        if self._query.needs_keys:
            self._refilter_all()

    def _refilter_all(self) -> None:
        """Match every row against the filter; when the rows shown change, the table is
        rebuilt at once: DataTable.remove_row renumbers every row after it, and one removal
        at a time made a keystroke that hides 450 of 500 rows quadratic."""
        matching = [key for key, row in self._rows.items() if self._matches(row, key)]
        differ = self._shown.keys() ^ set(matching)
        if len(differ) <= _FEW_ROWS:
            if differ:
                self._sync(differ, ticked=False)
        else:
            self._rebuild(matching)

    def _rebuild(self, keys: list[str]) -> None:
        keep_cursor_on = self.selected_key
        cursor_row = self.cursor_row
        self.rebuilds += 1
        with self.app.batch_update(), self._one_refresh():
            # Emptied first: clear() scrolls to the top, and the rows drawn on that scroll
            # (watch_scroll_y) must be the new ones, not the cleared.
            self._order = []
            self._cells.clear()
            self._drawn.clear()
            self._row_keys.clear()
            self.clear()
            self._shown = {key: self._rows[key] for key in keys}
            self._order = self._desired_order()
            for key in self._order:
                self._add(key, self._shown[key])
            self._fit_columns()
            if keep_cursor_on not in self._shown and self._order:
                # As removing rows did: the cursor stays at its index, or the last row.
                self.move_cursor(row=min(cursor_row, len(self._order) - 1), animate=False)
            self._restore_cursor(keep_cursor_on)
            self._update_title()

    def sort_by(self, column: str, reverse: bool | None = None) -> None:
        if column not in _COLUMNS_BY_KEY:
            raise ValueError(f"no column {column!r}")
        previous = self.sort_column
        self.sort_column = column
        self.sort_reverse = (
            reverse if reverse is not None else (previous == column and not self.sort_reverse)
        )
        self._update_title()
        keep_cursor_on = self.selected_key
        self._sort_rows()
        self._restore_cursor(keep_cursor_on)
        self._draw_visible()
        self.post_message(self.SortChanged(self.sort_column, self.sort_reverse))

    def sort_by_key(self, column: str) -> None:
        """A column's own sort key: sorts by it, and reverses when it already sorts."""
        self.sort_by(column, reverse=not self.sort_reverse if column == self.sort_column else False)

    def action_cycle_sort(self) -> None:
        index = COLUMN_KEYS.index(self.sort_column)
        self.sort_by(COLUMN_KEYS[(index + 1) % len(COLUMN_KEYS)], reverse=False)

    def action_reverse_sort(self) -> None:
        self.sort_by(self.sort_column, reverse=not self.sort_reverse)

    # -- internals -------------------------------------------------------------------------

    def _matches(self, row: NodeRow, row_key: str) -> bool:
        query = self._query
        if not self._filter:
            return True
        haystack = f"{row_key} {STATUS_LABELS[row.liveness]}".lower()
        key_values = self.key_values_of(row.node) if query.needs_keys else {}
        return query.matches(haystack, key_values)

    def _desired_order(self) -> list[str]:
        column = _COLUMNS_BY_KEY[self.sort_column]
        taken_at = self._taken_at
        shown = self._shown

        def key(row_key: str) -> tuple[Any, Any]:
            row = shown[row_key]
            return (column.sort_key(row, taken_at), row.node.sort_key())

        return sorted(shown, key=key, reverse=self.sort_reverse)

    def _sort_rows(self) -> None:
        order = self._desired_order()
        if order == self._order and len(order) == self.row_count:
            return
        rank = {row_key: index for index, row_key in enumerate(order)}

        def by_rank(identity: tuple[Text, Text, Text]) -> int:
            node_id, generation, address = identity
            return rank[f"{node_id.plain}:{generation.plain}:{address.plain}"]

        self.sort(*_IDENTITY, key=by_rank)
        self._order = order

    def _restore_cursor(self, row_key: str | None) -> None:
        if row_key is not None and row_key in self._shown:
            index = self._order.index(row_key)
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False)
        self._announce_highlight()

    def _announce_highlight(self) -> None:
        key = self.selected_key
        if key != self._highlighted:
            self._highlighted = key
            row = self._shown.get(key) if key is not None else None
            self.post_message(self.NodeHighlighted(key, row.node if row is not None else None))

    def _update_title(self) -> None:
        label = _COLUMNS_BY_KEY[self.sort_column].label.lower()
        arrow = "▼" if self.sort_reverse else "▲"
        title = f"Nodes {len(self._shown)}/{len(self._rows)} · sort: {label} {arrow}"
        if self._filter:
            title += f" · filter: {self._filter}"
        if title != self.border_title:
            self.border_title = title

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table is self:
            event.stop()
            self._announce_highlight()

    @on(DataTable.HeaderSelected)
    def _header_selected(self, event: DataTable.HeaderSelected) -> None:
        if event.data_table is self:
            event.stop()
            self.sort_by(str(event.column_key.value))


class NodeFilter(SteadyInput):
    """The `/` filter over the nodes table. Escape clears it and hands focus back."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Clear filter", tooltip="Clear the filter, close it"),
    ]

    class Dismissed(Message):
        """The user cleared the filter with Escape."""

    def __init__(self, *, id: str | None = None, cursor_blink: bool = True) -> None:
        super().__init__(
            placeholder="id, address or status words; key=value, key!=value (Esc clears)",
            id=id,
        )
        self.cursor_blink = cursor_blink
        self._frames_held: ExitStack | None = None

    # A new text is drawn with the rows it filters, in one frame: the field's own repaint
    # went out first, in a frame of its own, and the rows (and the detail of the node the
    # cursor landed on) in one or two more, each repainting the table. From the moment the
    # text changes, the app's frames wait (a batch update) until whoever applies the text
    # lets them go (release_frames); every change of text is an Input.Changed to the app,
    # which applies it, and a field taken away lets them go too.

    def _watch_value(self, value: str) -> None:
        self.hold_frames()
        super()._watch_value(value)

    def hold_frames(self) -> None:
        """Hold the app's frames until release_frames (once, however often called)."""
        if self._frames_held is None and self.is_attached:
            held = ExitStack()
            held.enter_context(self.app.batch_update())
            self._frames_held = held

    def release_frames(self) -> None:
        held, self._frames_held = self._frames_held, None
        if held is not None:
            held.close()
            # The screen draws when it is next idle: at once, not when a message next
            # reaches it, nor on its refresh timer's next tick.
            if self.is_attached:
                draw_when_idle(self)

    def on_unmount(self) -> None:
        self.release_frames()

    def action_dismiss(self) -> None:
        self.value = ""
        self.post_message(self.Dismissed())
