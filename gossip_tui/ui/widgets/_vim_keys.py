"""The row-moving keys of k9s, htop and lazygit, for every table of the dashboard."""

from __future__ import annotations

from textual.binding import Binding, BindingType

# DataTable already moves with the arrows; j/k and g/G are what vim hands expect.
VIM_KEYS: list[BindingType] = [
    Binding("j", "cursor_down", "Down", show=False),
    Binding("k", "cursor_up", "Up", show=False),
    Binding("g", "scroll_top", "First row", show=False),
    Binding("G", "scroll_bottom", "Last row", show=False),
]
