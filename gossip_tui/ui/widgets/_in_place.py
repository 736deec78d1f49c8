"""Updating a Static without laying the whole screen out again, for the panes a tick touches."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Self

from textual.geometry import Region
from textual.visual import VisualType
from textual.widget import Widget
from textual.widgets import Static


def update_in_place(
    static: Static, content: VisualType, *, fixed_size: bool = False, min_height: int = 0
) -> None:
    """Show ``content`` in ``static``; unchanged content is left alone.

    Static.update asks for a layout by default, and any layout request re-arranges and
    repaints every pane of the screen: with 500 nodes, once a tick, that was most of what
    kept a key press from showing. A repaint suffices when the widget keeps its size:
    always for ``fixed_size`` (width and height fixed in app.tcss), otherwise when the new
    content is as tall as the old at the widget's width (a detail pane whose values changed
    but not their line count). ``min_height``: the height the widget's styles give it at
    the least (its content's lines counting as that many when fewer).
    """
    if static.content == content:
        return
    size = static.content_size
    static.update(content, layout=False)
    if fixed_size:
        return
    if not size.width:
        static.refresh(layout=True)
        return
    height = max(min_height, static.get_content_height(size, size, size.width))
    if height != size.height:
        static.refresh(layout=True)


if TYPE_CHECKING:
    _WidgetMixin = Widget
else:
    # A plain mixin at run time: a Widget base listed first would shadow the class
    # attributes Textual merges per widget class (COMPONENT_CLASSES, CSS...).
    _WidgetMixin = object


class RepaintsInPlace(_WidgetMixin):
    """For a widget that can drop the layout requests of a change that keeps its size on
    screen (see :meth:`keeping_its_size`): a layout re-arranges and repaints every pane of
    the screen, where a repaint of this widget shows the change. Listed before the
    Textual widget it refines (``class SteadyInput(RepaintsInPlace, Input)``)."""

    _keeping_its_size = False

    @contextmanager
    def keeping_its_size(self, keeps: bool = True) -> Iterator[None]:
        """While inside, refresh repaints but asks for no layout (when ``keeps``)."""
        self._keeping_its_size = keeps
        try:
            yield
        finally:
            self._keeping_its_size = False

    def refresh(
        self,
        *regions: Region,
        repaint: bool = True,
        layout: bool = False,
        recompose: bool = False,
    ) -> Self:
        if self._keeping_its_size:
            layout = False
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)
