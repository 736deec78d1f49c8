"""Which of a node's keys the dashboard shows and lets the user change.

Two kinds of keys belong to the node rather than to its user. Internal ones (their names
start with ``__gossip_tui.``, such as the leave announcement) are bookkeeping between
gossip-tui nodes: never shown, never set from the dashboard. Managed ones (``bind``, the
public address chitchat-test's users read) are shown, but changing them is gossiped to
every tool that reads them, so the dashboard asks before it does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from gossip_tui.core.engine import LEAVING_KEY

INTERNAL_PREFIX = "__gossip_tui."
assert LEAVING_KEY.startswith(INTERNAL_PREFIX)

#: Keys the node sets itself, and why changing them by hand needs a confirmation.
PROTECTED_KEYS: Mapping[str, str] = {
    "bind": (
        "The node sets 'bind' to its public gossip address; other nodes and tools "
        "(chitchat-test's clients) read it to reach this node."
    ),
}

_V = TypeVar("_V")


def is_internal(key: str) -> bool:
    return key.startswith(INTERNAL_PREFIX)


def user_keys(key_values: Mapping[str, _V]) -> dict[str, _V]:
    """``key_values`` without the internal keys: what the panes show."""
    return {key: value for key, value in key_values.items() if not is_internal(key)}


def protection_of(key: str) -> str | None:
    """Why changing ``key`` needs a confirmation, or None when it does not."""
    return PROTECTED_KEYS.get(key)
