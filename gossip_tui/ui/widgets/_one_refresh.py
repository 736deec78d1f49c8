"""One refresh for a batch of cell updates, for the dashboard's big tables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Self

from textual.geometry import Region

if TYPE_CHECKING:
    from textual.widget import Widget

    _Base = Widget
else:
    # A plain mixin at run time: Textual takes a widget's styles and component classes
    # from its first base that is a widget, which must stay the DataTable.
    _Base = object


class OneRefresh(_Base):
    """A mixin (before DataTable in the bases) whose ``_one_refresh()`` block coalesces the
    refresh every update_cell/add_row/remove_row asks for into one.

    Each of those calls refresh(), which marks the widget dirty and recomputes its regions:
    1,500 of them per round of a 500-node cluster would cost more than the whole update. One
    full refresh at the end repaints the same.
    """

    # While a block runs, refresh requests are collected (class-level: DataTable's own
    # __init__ already refreshes). _deferred is None (none asked) or whether layout is needed.
    _deferring: bool = False
    _deferred: bool | None = None

    @contextmanager
    def _one_refresh(self) -> Iterator[None]:
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
            if self._deferred is not None:
                layout = self._deferred
                self._deferred = None
                super().refresh(layout=layout)

    def refresh(
        self,
        *regions: Region,
        repaint: bool = True,
        layout: bool = False,
        recompose: bool = False,
    ) -> Self:
        if self._deferring and not recompose:
            self._deferred = bool(self._deferred) or layout
            return self
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)
