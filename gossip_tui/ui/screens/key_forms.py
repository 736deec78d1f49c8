"""Forms to set, edit, set-with-TTL and delete the local node's keys."""

from __future__ import annotations

import enum
import unicodedata
from typing import ClassVar

import attrs
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from gossip_tui.node import MAX_KEY_VALUE_BYTES

# chitchat ships each key-value whole inside one datagram; the node refuses any that cannot
# fit (MAX_KEY_VALUE_BYTES). A value near that size would crowd out every other update of
# its round, so the dashboard holds keys and values to a few KB.
MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 8192
_ALLOWED_VALUE_CONTROLS = frozenset("\t\n")


class KeyFormMode(enum.Enum):
    SET = "set"
    EDIT = "edit"
    SET_WITH_TTL = "ttl"

    @property
    def title(self) -> str:
        return {
            KeyFormMode.SET: "Set a key on this node",
            KeyFormMode.EDIT: "Edit a key of this node",
            KeyFormMode.SET_WITH_TTL: "Set a key with TTL (deleted after the grace period)",
        }[self]


@attrs.frozen
class KeyFormResult:
    mode: KeyFormMode
    key: str
    value: str


def _control_characters(text: str, allowed: frozenset[str] = frozenset()) -> list[str]:
    return [c for c in text if unicodedata.category(c) == "Cc" and c not in allowed]


def validate_entry(key: str, value: str) -> str | None:
    """Why ``key``/``value`` cannot be set, or None when they can."""
    if not key:
        return "The key must not be empty."
    if key.strip() != key:
        return "The key must not start or end with spaces."
    if bad := _control_characters(key):
        return f"The key contains a control character ({bad[0]!r})."
    if bad := _control_characters(value, _ALLOWED_VALUE_CONTROLS):
        return f"The value contains a control character ({bad[0]!r})."
    key_size = len(key.encode("utf-8"))
    if key_size > MAX_KEY_BYTES:
        return f"The key is {key_size:,} bytes; keys are limited to {MAX_KEY_BYTES:,} bytes."
    value_size = len(value.encode("utf-8"))
    if key_size + value_size > MAX_KEY_VALUE_BYTES:
        return (
            f"The value is {value_size:,} bytes: it cannot fit in a gossip datagram "
            f"(a key-value gets at most {MAX_KEY_VALUE_BYTES:,} bytes), "
            "so no other node would ever see it."
        )
    if value_size > MAX_VALUE_BYTES:
        return (
            f"The value is {value_size:,} bytes; values are limited to {MAX_VALUE_BYTES:,} "
            "bytes so that they fit in a gossip datagram."
        )
    return None


class KeyFormScreen(ModalScreen[KeyFormResult | None]):
    """Key and value inputs; Enter in the key moves on, Enter in the value submits."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(
        self,
        mode: KeyFormMode,
        *,
        key: str = "",
        value: str = "",
        cursor_blink: bool = True,
    ) -> None:
        super().__init__()
        self.mode = mode
        self._key = key
        self._value = value
        self._cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        with Vertical(id="key-form", classes="modal-dialog"):
            yield Label(self.mode.title, classes="modal-title")
            yield Label("Key")
            yield Input(
                self._key,
                placeholder="key",
                id="key-input",
                disabled=self.mode is KeyFormMode.EDIT,
            )
            yield Label("Value")
            yield Input(self._value, placeholder="value", id="value-input")
            yield Label("", id="key-form-error", classes="form-error", markup=False)
            with Horizontal(classes="modal-buttons"):
                yield Button(
                    "Set with TTL" if self.mode is KeyFormMode.SET_WITH_TTL else "Set",
                    variant="primary",
                    id="key-form-ok",
                )
                yield Button("Cancel", id="key-form-cancel")

    def on_mount(self) -> None:
        for field in self.query(Input):
            field.cursor_blink = self._cursor_blink
        target = "#value-input" if self.mode is KeyFormMode.EDIT else "#key-input"
        self.query_one(target, Input).focus()

    @property
    def error(self) -> str:
        """The validation message on show (empty when there is none)."""
        return str(self.query_one("#key-form-error", Label).content)

    def show_error(self, message: str) -> None:
        error = self.query_one("#key-form-error", Label)
        error.update(message)
        error.set_class(bool(message), "visible")

    @on(Input.Submitted, "#key-input")
    def _key_submitted(self) -> None:
        self.query_one("#value-input", Input).focus()

    @on(Input.Submitted, "#value-input")
    @on(Button.Pressed, "#key-form-ok")
    def action_submit(self) -> None:
        key = self.query_one("#key-input", Input).value
        value = self.query_one("#value-input", Input).value
        problem = validate_entry(key, value)
        if problem is not None:
            self.show_error(problem)
            return
        self.dismiss(KeyFormResult(self.mode, key, value))

    @on(Input.Changed)
    def _clear_error(self) -> None:
        self.show_error("")

    @on(Button.Pressed, "#key-form-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDeleteScreen(ModalScreen[bool]):
    """Asks before deleting a local key; `y` confirms, `n` or Escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "Delete"),
        Binding("n,escape", "cancel", "Cancel"),
    ]

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-delete", classes="modal-dialog"):
            yield Label("Delete a key of this node", classes="modal-title")
            yield Label(
                f"Delete {self.key!r}? Other nodes see it deleted within a few rounds.",
                markup=False,
            )
            with Horizontal(classes="modal-buttons"):
                yield Button("Delete (y)", variant="error", id="confirm-delete-yes")
                yield Button("Cancel (n)", id="confirm-delete-no")

    def on_mount(self) -> None:
        self.query_one("#confirm-delete-no", Button).focus()

    @on(Button.Pressed, "#confirm-delete-yes")
    def action_confirm(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#confirm-delete-no")
    def action_cancel(self) -> None:
        self.dismiss(False)
