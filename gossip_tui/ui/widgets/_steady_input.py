"""An Input whose keystrokes repaint it instead of laying its whole screen out again."""

from __future__ import annotations

from textual.widgets import Input

from gossip_tui.ui.widgets._in_place import RepaintsInPlace


class SteadyInput(RepaintsInPlace, Input):
    """Input sets its virtual width to the text's on every change of value, and that asks
    for a layout of the whole screen: with 500 nodes behind the filter, each character
    typed laid the dashboard out again. A field whose size is fixed by its styles (every
    field here: width from the layout, height 1) does not move when its text grows; a
    repaint shows the new text, and the scrolling to the cursor reads the virtual width
    from the widget itself, not from the layout. A field sized by its content still gets
    its layout.
    """

    def _watch_value(self, value: str) -> None:
        with self.keeping_its_size(not self.styles.auto_dimensions):
            super()._watch_value(value)
