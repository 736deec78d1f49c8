"""How node state reads on screen: pure functions from model values to text and styles."""

from __future__ import annotations

import base64
import json
from typing import Any, Protocol

import attrs

from gossip_tui.core.models import KeyStatus, Liveness

#: chitchat's default phi threshold, above which a node is declared dead.
DEFAULT_PHI_THRESHOLD = 8.0

# Keyed by the enum's values so that a Liveness added to the core later still renders (with
# its own name) instead of breaking the table.
LEFT_STYLE = "blue"

_LOOKS: dict[str, tuple[str, str]] = {
    "self": ("self", "bold cyan"),
    "live": ("live", "green"),
    "unknown": ("joining", "yellow"),
    "dead": ("dead", "bold red"),
    # Not red: a node that said goodbye is not an alarm, and must not read as dead.
    "left": ("left", LEFT_STYLE),
    "scheduled_for_deletion": ("deleting", "magenta"),
}
_ORDER = ("self", "live", "unknown", "dead", "left", "scheduled_for_deletion")

STATUS_LABELS: dict[Liveness, str] = {
    liveness: _LOOKS.get(liveness.value, (liveness.value.replace("_", " "), ""))[0]
    for liveness in Liveness
}
STATUS_STYLES: dict[Liveness, str] = {
    liveness: _LOOKS.get(liveness.value, ("", "italic"))[1] for liveness in Liveness
}
STATUS_ORDER: dict[Liveness, int] = {
    liveness: _ORDER.index(liveness.value) if liveness.value in _ORDER else len(_ORDER)
    for liveness in Liveness
}


def phi_style(phi: float | None, threshold: float = DEFAULT_PHI_THRESHOLD) -> str:
    """Green while phi is far from the threshold, yellow half way, red when close to it."""
    if phi is None:
        return "dim"
    ratio = phi / threshold
    if ratio < 0.5:
        return "green"
    if ratio < 0.8:
        return "yellow"
    return "bold red"


def format_phi(phi: float | None) -> str:
    return "-" if phi is None else f"{phi:.1f}"


def format_age(seconds: float | None) -> str:
    """Whole seconds keep the column still between refreshes; sub-second is just "now"."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return "now"
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86400)}d"


class _Updated(Protocol):
    @property
    def last_update(self) -> float | None: ...


def node_age(node: _Updated, taken_at: float) -> float | None:
    """Seconds since ``node`` (a snapshot or a table row) was last heard of."""
    if node.last_update is None:
        return None
    return max(0.0, taken_at - node.last_update)


@attrs.frozen
class DecodedValue:
    """A key's value decoded for display: JSON (possibly base64-wrapped) or plain text."""

    text: str
    encoding: str | None  # None, "json" or "base64 json"
    data: Any = None


def decode_value(value: str) -> DecodedValue:
    """Recognise JSON objects and arrays, directly or base64-encoded, for pretty-printing.

    Scalars stay plain text: ``42`` or ``"x"`` gain nothing from a JSON rendering.
    """
    stripped = value.strip()
    data = _json_container(stripped)
    if data is not None:
        return DecodedValue(value, "json", data)
    if len(stripped) >= 4 and len(stripped) % 4 == 0:
        try:
            raw = base64.b64decode(stripped, validate=True)
            data = _json_container(raw.decode("utf-8").strip())
        except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8 inside
            data = None
        if data is not None:
            return DecodedValue(value, "base64 json", data)
    return DecodedValue(value, None)


def _json_container(text: str) -> Any:
    if not text or text[0] not in "[{":
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict | list) else None


def pretty_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False)


def one_line(value: str, limit: int = 60) -> str:
    """A value squeezed onto one line: control characters escaped, long values cut."""
    flat = value if value.isprintable() else "".join(_printable(c) for c in value)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _printable(char: str) -> str:
    return char if char.isprintable() else repr(char)[1:-1]


# One colour per key status, in every pane; the spelling is KeyStatus.short_label
# ("set", "deleted", "ttl"; KeyStatus.label is chitchat's, for JSON).
KEY_STATUS_STYLES: dict[KeyStatus, str] = {
    KeyStatus.SET: "green",
    KeyStatus.DELETED: "red",
    KeyStatus.DELETE_AFTER_TTL: "yellow",
}
