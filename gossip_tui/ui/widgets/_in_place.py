"""Updating a Static without laying the whole screen out again, for the panes a tick touches."""

from __future__ import annotations

from textual.visual import VisualType
from textual.widgets import Static


def update_in_place(static: Static, content: VisualType, *, fixed_size: bool = False) -> None:
    """Show ``content`` in ``static``; unchanged content is left alone.

    Static.update asks for a layout by default, and any layout request re-arranges and
    repaints every pane of the screen: with 500 nodes, once a tick, that was most of what
    kept a key press from showing. A repaint suffices when the widget keeps its size:
    always for ``fixed_size`` (width and height fixed in app.tcss), otherwise when the new
    content is as tall as the old at the widget's width (a detail pane whose values changed
    but not their line count).
    """
    if static.content == content:
        return
    size = static.content_size
    static.update(content, layout=False)
    if fixed_size:
        return
    if not size.width or static.get_content_height(size, size, size.width) != size.height:
        static.refresh(layout=True)
