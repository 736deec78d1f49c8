"""Modal screens: the help overlay and the local key forms."""

from gossip_tui.ui.screens.help_screen import HelpScreen
from gossip_tui.ui.screens.key_forms import (
    ConfirmDeleteScreen,
    KeyFormMode,
    KeyFormResult,
    KeyFormScreen,
    validate_entry,
)

__all__ = [
    "ConfirmDeleteScreen",
    "HelpScreen",
    "KeyFormMode",
    "KeyFormResult",
    "KeyFormScreen",
    "validate_entry",
]
