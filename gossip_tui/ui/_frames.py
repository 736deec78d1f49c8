"""A frame written as soon as the screen has taken in what changed, not on the refresh timer."""

from __future__ import annotations

from typing import Any

from textual import events
from textual.screen import Screen
from textual.widget import Widget


class PromptScreen(Screen[Any]):
    """The dashboard's screen: asked to (``draw_when_idle``), it writes its next frame the
    moment it is idle, where Textual's screen resumes its refresh timer, which ticks at most
    every 1/60 s: a frame asked for within 1/60 s of the last waited up to 16 ms more (a
    filter key's frame, let go as soon as the rows follow the text, waited so once in
    every few keys). Idle means every repaint and layout the widgets sent the screen has
    arrived, as when the timer would have fired."""

    _draw_when_idle = False

    def draw_when_idle(self) -> None:
        self._draw_when_idle = True
        self.check_idle()

    async def _on_idle(self, event: events.Idle) -> None:
        if self._draw_when_idle and not self.app._batch_count and self.is_current:
            self._draw_when_idle = False
            self._on_timer_update()  # what the timer's tick runs: layout, then the frame
        await super()._on_idle(event)


def draw_when_idle(widget: Widget) -> None:
    """``widget``'s screen writes its next frame once idle (a PromptScreen), or on its
    refresh timer (any other)."""
    screen = widget.screen
    if isinstance(screen, PromptScreen):
        screen.draw_when_idle()
    else:
        screen.check_idle()
