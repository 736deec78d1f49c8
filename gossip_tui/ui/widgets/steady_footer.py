"""A Footer that changes its keys in place when only their enabled state changes."""

from __future__ import annotations

from textual.compose import compose
from textual.screen import Screen
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

# Classes a key gets from its state, not from what it shows: whether it is enabled, and
# the footer's compact flag (bound once the key is mounted).
_STATE_CLASSES = frozenset({"-disabled", "-compact"})


def _identity(key: FooterKey) -> tuple[object, ...]:
    """What a footer key shows, apart from whether it is enabled."""
    return (
        key.key,
        key.key_display,
        key.description,
        key.action,
        str(key.tooltip or ""),
        key.classes - _STATE_CLASSES,
    )


class SteadyFooter(Footer):
    """Footer rebuilds all its keys whenever its screen's bindings change, and a rebuild
    lays the whole screen out again. Opening a form on the dashboard changes only which of
    the main screen's keys are enabled (they dim behind the form), yet the rebuild cost
    three layouts of the 500-row dashboard per open and per close. Here the keys are
    compared with what is shown and, when only their enabled state differs, restyled in
    place: the same keys, dimmed or not, for a repaint. Any other change rebuilds.
    """

    relayouts = 0  # rebuilds (each lays the screen out), for the tests that count them

    def bindings_changed(self, screen: Screen[object]) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen:
            self.call_after_refresh(self._update_keys)

    async def _update_keys(self) -> None:
        if not self.is_attached:
            return
        wanted = compose(self)
        shown = list(self.query_children("*").exclude(".-textual-system"))
        same = len(wanted) == len(shown) and all(
            isinstance(new, FooterKey)
            and isinstance(old, FooterKey)
            and _identity(new) == _identity(old)
            for new, old in zip(wanted, shown, strict=True)
        )
        if not same:
            self.relayouts += 1
            await self.recompose()
            return
        for new, old in zip(wanted, shown, strict=True):
            assert isinstance(new, FooterKey) and isinstance(old, FooterKey)
            if old._disabled != new._disabled:
                old._disabled = new._disabled
                old.set_class(new._disabled, "-disabled")
