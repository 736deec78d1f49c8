"""The handshake that keeps type-ahead while a screen comes up (see GossipApp.hold_keys)."""

from __future__ import annotations

from textual.app import App
from textual.widget import Widget


def focus_now(app: App[object], widget: Widget) -> None:
    """Focus ``widget`` at once and let the app replay the keys it held meanwhile.

    Screen.set_focus rather than Widget.focus: the latter moves focus only after the
    messages already queued, so keys typed in between would go to the old widget."""
    widget.screen.set_focus(widget)
    release = getattr(app, "release_keys", None)
    if callable(release):  # a plain App (a test harness) holds nothing
        release()
