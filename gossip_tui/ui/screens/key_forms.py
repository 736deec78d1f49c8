"""Forms to set, edit, set-with-TTL and delete the local node's keys."""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Callable
from functools import partial
from typing import ClassVar

import attrs
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from gossip_tui.core.expiry import InvalidTtl, parse_duration
from gossip_tui.node import MAX_KEY_VALUE_BYTES
from gossip_tui.ui._keys import INTERNAL_PREFIX, is_internal
from gossip_tui.ui.screens._type_ahead import focus_now
from gossip_tui.ui.widgets._steady_input import SteadyInput

# chitchat ships each key-value whole inside one datagram; the node refuses any that cannot
# fit (MAX_KEY_VALUE_BYTES). A value near that size would crowd out every other update of
# its round, so the dashboard holds keys and values to a few KB.
MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 8192
_ALLOWED_VALUE_CONTROLS = frozenset("\t\n")


class _FormInput(SteadyInput):
    """An Input that hands a paste of several lines to its form (KeyFormScreen.take_paste)."""

    def _on_paste(self, event: events.Paste) -> None:
        screen = self.screen
        if isinstance(screen, KeyFormScreen) and ("\n" in event.text or "\r" in event.text):
            event.prevent_default()  # not Input's handler, which keeps the first line
            event.stop()
            screen.take_paste(self, event.text)


class KeyFormMode(enum.Enum):
    SET = "set"
    EDIT = "edit"
    SET_WITH_TTL = "ttl"

    @property
    def title(self) -> str:
        return {
            KeyFormMode.SET: "Set a key on this node",
            KeyFormMode.EDIT: "Edit a key of this node",
            KeyFormMode.SET_WITH_TTL: "Set a key with a TTL (deleted when it runs out)",
        }[self]


@attrs.frozen
class KeyFormResult:
    mode: KeyFormMode
    key: str
    value: str
    # Seconds the key lives (the TTL form); None: no duration (in the TTL form: chitchat's
    # TTL, deleted after the node's grace period).
    ttl: float | None = None


def parse_ttl_field(text: str) -> float | None:
    """The TTL field: a duration (``30s``, ``5m``, ``90``) in seconds; None when empty
    (chitchat's TTL). Raises ValueError (InvalidTtl) with a message for the form."""
    if not text.strip():
        return None
    return parse_duration(text)


def _control_characters(text: str, allowed: frozenset[str] = frozenset()) -> list[str]:
    return [c for c in text if unicodedata.category(c) == "Cc" and c not in allowed]


def validate_entry(key: str, value: str) -> str | None:
    """Why ``key``/``value`` cannot be set, or None when they can."""
    problem = validate_fields(key, value)
    return problem[1] if problem is not None else None


def validate_fields(key: str, value: str) -> tuple[str, str] | None:
    """(id of the field at fault, why) when ``key``/``value`` cannot be set, else None."""
    if not key:
        return "key-input", "The key must not be empty."
    if key.strip() != key:
        return "key-input", "The key must not start or end with spaces."
    if bad := _control_characters(key):
        return "key-input", f"The key contains a control character ({bad[0]!r})."
    if is_internal(key):
        return "key-input", f"Keys starting with {INTERNAL_PREFIX!r} belong to the node itself."
    if bad := _control_characters(value, _ALLOWED_VALUE_CONTROLS):
        return "value-input", f"The value contains a control character ({bad[0]!r})."
    key_size = len(key.encode("utf-8"))
    if key_size > MAX_KEY_BYTES:
        return (
            "key-input",
            f"The key is {key_size:,} bytes; keys are limited to {MAX_KEY_BYTES:,} bytes.",
        )
    value_size = len(value.encode("utf-8"))
    if key_size + value_size > MAX_KEY_VALUE_BYTES:
        return "value-input", (
            f"The value is {value_size:,} bytes: it cannot fit in a gossip datagram "
            f"(a key-value gets at most {MAX_KEY_VALUE_BYTES:,} bytes), "
            "so no other node would ever see it."
        )
    if value_size > MAX_VALUE_BYTES:
        return "value-input", (
            f"The value is {value_size:,} bytes; values are limited to {MAX_VALUE_BYTES:,} "
            "bytes so that they fit in a gossip datagram."
        )
    return None


class KeyFormScreen(ModalScreen[KeyFormResult | None]):
    """Key and value inputs; Enter in the key moves on, Enter in the value submits.

    Enter is a priority binding and focus moves with Screen.set_focus, at once: keys typed
    fast (a paste through tmux, type-ahead) are routed as they arrive, so the characters
    after an Enter land in the next field. Widget.focus() would move focus only after the
    keys already queued, which went to the old field.

    The app builds one form per mode and keeps it (installed) between uses: composing and
    laying out a form on every `s` cost several layouts each time, while a form already
    built only has its fields reset (``prepare``) and is painted when it is pushed again.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("enter", "enter", "Next field / submit", show=False, priority=True),
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
            yield _FormInput(
                self._key,
                placeholder="key",
                id="key-input",
                disabled=self.mode is KeyFormMode.EDIT,
            )
            yield Label("Value")
            yield _FormInput(self._value, placeholder="value", id="value-input")
            if self.mode is KeyFormMode.SET_WITH_TTL:
                yield Label("TTL")
                yield _FormInput(
                    "",
                    placeholder="30s, 5m, 2h, 90 (empty: after the grace period)",
                    id="ttl-input",
                )
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

    def on_screen_resume(self) -> None:
        # Every time the form comes up, built now or kept from an earlier use.
        target = "value-input" if self.mode is KeyFormMode.EDIT else "key-input"
        focus_now(self.app, self._field(target))

    def prepare(self, *, key: str = "", value: str = "") -> None:
        """Make a kept form as new for its next use: ``key`` and ``value`` in the fields
        (an edit's), the TTL empty and no error shown. Before it is pushed."""
        self._key, self._value = key, value
        if not self.is_mounted:
            return  # compose fills the fields
        fields = {"key-input": key, "value-input": value, "ttl-input": ""}
        for field in self.query(Input):
            if field.id in fields:
                field.value = fields[field.id]
                field.cursor_position = len(field.value)
        self.show_error("")

    def _field(self, field_id: str) -> Input:
        return self.query_one(f"#{field_id}", Input)

    @property
    def error(self) -> str:
        """The validation message on show (empty when there is none)."""
        return str(self.query_one("#key-form-error", Label).content)

    def show_error(self, message: str) -> None:
        error = self.query_one("#key-form-error", Label)
        if str(error.content) == message:
            return  # every keystroke clears it: no layout for an error already gone
        error.update(message)
        error.set_class(bool(message), "visible")

    def _field_ids(self) -> list[str]:
        fields = ["key-input", "value-input"]
        return [*fields, "ttl-input"] if self.mode is KeyFormMode.SET_WITH_TTL else fields

    def action_enter(self) -> None:
        focused = self.focused
        fields = self._field_ids()
        if isinstance(focused, Input) and focused.id in fields[:-1]:
            self.set_focus(self._field(fields[fields.index(focused.id) + 1]))
        elif isinstance(focused, Button):
            focused.press()
        else:
            # The fields may still hold typed keys in their queues (this binding runs as the
            # Enter is routed): submit once each field, in order, is drained.
            submit: Callable[[], object] = self.action_submit
            for field_id in reversed(fields):
                submit = partial(self._field(field_id).call_later, submit)
            submit()

    def _ttl(self) -> float | None:
        if self.mode is not KeyFormMode.SET_WITH_TTL:
            return None
        return parse_ttl_field(self._field("ttl-input").value)

    @on(Input.Submitted, "#value-input")
    @on(Input.Submitted, "#ttl-input")
    @on(Button.Pressed, "#key-form-ok")
    def action_submit(self) -> None:
        key = self._field("key-input").value
        value = self._field("value-input").value
        problem = validate_fields(key, value)
        ttl: float | None = None
        if problem is None:
            try:
                ttl = self._ttl()
            except InvalidTtl as exc:
                problem = "ttl-input", f"{exc}."
        if problem is not None:
            field_id, message = problem
            self.show_error(message)
            # Focus goes where the fix is to be typed (never to the disabled key of an edit).
            field = self._field(field_id)
            if field.focusable:
                self.set_focus(field)
            return
        self.dismiss(KeyFormResult(self.mode, key, value, ttl))

    def take_paste(self, field: Input, text: str) -> None:
        """A paste of several lines is taken whole (Input keeps only a paste's first line).
        Pasted into the key, the first line is the key and the rest the value; pasted into
        the value, every line is the value (a value may hold line breaks). A final line
        break is dropped."""
        focused = field
        text = text.replace("\r\n", "\n").replace("\r", "\n").removesuffix("\n")
        if focused.id == "key-input":
            key, _newline, value = text.partition("\n")
            focused.insert_text_at_cursor(key)
            value_field = self._field("value-input")
            value_field.insert_text_at_cursor(value)
            self.set_focus(value_field)
        else:
            focused.insert_text_at_cursor(text)

    @on(Input.Changed)
    def _clear_error(self) -> None:
        self.show_error("")

    @on(Button.Pressed, "#key-form-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; `y` confirms, `n` or Escape cancels (the default)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "Confirm"),
        Binding("n,escape", "cancel", "Cancel"),
    ]

    def __init__(self, title: str, question: str, yes_label: str) -> None:
        super().__init__()
        self._title = title
        self._question = question
        self._yes_label = yes_label

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm", classes="modal-dialog"):
            yield Label(self._title, classes="modal-title", markup=False)
            yield Label(self._question, markup=False)
            with Horizontal(classes="modal-buttons"):
                yield Button(f"{self._yes_label} (y)", variant="error", id="confirm-yes")
                yield Button("Cancel (n)", id="confirm-no")

    def on_mount(self) -> None:
        focus_now(self.app, self.query_one("#confirm-no", Button))

    @on(Button.Pressed, "#confirm-yes")
    def action_confirm(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#confirm-no")
    def action_cancel(self) -> None:
        self.dismiss(False)


class ConfirmDeleteScreen(ConfirmScreen):
    """Asks before deleting a local key."""

    def __init__(self, key: str) -> None:
        super().__init__(
            "Delete a key of this node",
            f"Delete {key!r}? Other nodes see it deleted within a few rounds.",
            "Delete",
        )
        self.key = key


class ConfirmForgetScreen(ConfirmScreen):
    """Asks before forgetting a dead or left node (this node's view only)."""

    def __init__(self, node: str) -> None:
        super().__init__(
            "Forget a node here",
            f"Forget {node}? It leaves this node's view now; other nodes keep it until their"
            " dead-node grace period ends.",
            "Forget",
        )
        self.node = node


class ConfirmProtectedScreen(ConfirmScreen):
    """Asks before changing a key the node manages itself (see gossip_tui.ui._keys)."""

    def __init__(self, key: str, verb: str, why: str) -> None:
        super().__init__(
            f"{verb.capitalize()} {key!r}, a key the node manages?",
            f"{why} {verb.capitalize()} it anyway? Every node gossips the change.",
            verb.capitalize(),
        )
        self.key = key
