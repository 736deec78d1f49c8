"""An Input whose keystrokes repaint it instead of laying its whole screen out again."""

from __future__ import annotations

from typing import Self

from textual.geometry import Region
from textual.widgets import Input


class SteadyInput(Input):
    """Input sets its virtual width to the text's on every change of value, and that asks
    for a layout of the whole screen: with 500 nodes behind the filter, each character
    typed laid the dashboard out again. A field whose size is fixed by its styles (every
    field here: width from the layout, height 1) does not move when its text grows; a
    repaint shows the new text, and the scrolling to the cursor reads the virtual width
    from the widget itself, not from the layout. A field sized by its content still gets
    its layout.
    """

    _steady_value_change = False

    def _watch_value(self, value: str) -> None:
        self._steady_value_change = not self.styles.auto_dimensions
        try:
            super()._watch_value(value)
        finally:
            self._steady_value_change = False

    def refresh(
        self,
        *regions: Region,
        repaint: bool = True,
        layout: bool = False,
        recompose: bool = False,
    ) -> Self:
        if self._steady_value_change:
            layout = False
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)
