"""Per-key expiry of the local node's own keys: ``set(key, value, ttl=SECONDS)``.

chitchat has no per-key duration: its "TTL" (``set_with_ttl``, DeleteAfterTtl) only says
that a key goes after the marked-for-deletion grace period, a setting of each node. Here
the owner keeps a deadline per key and deletes the key when it passes. Nothing of it
travels: peers (chitchat or gossip-tui) only see the deletion, an ordinary change.

An expired key becomes a tombstone (a delete), not DeleteAfterTtl. DeleteAfterTtl keeps
the value readable on every peer until the grace period ends, so a key meant to live 30 s
would stay visible for another hour by default; a tombstone empties the value at once and
readers everywhere see the key gone within a few rounds. The tombstone itself is
collected after the grace period, as every delete's is.

Pure: time is a parameter (the runtime passes its clock), so tests drive it by hand.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from types import MappingProxyType

from .errors import GossipTuiError
from .state import NodeState

__all__ = [
    "MAX_TTL_SECONDS",
    "InvalidTtl",
    "KeyExpiries",
    "check_ttl",
    "expire_due",
    "parse_duration",
]

# Ten years: longer is no expiry an operator means, and a bound keeps deadlines in the
# range where the clock's float keeps sub-millisecond precision and wall-clock dates exist.
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600.0

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# One or more number+unit parts: "90", "1.5", "30s", "5m", "1h30m". A bare number is seconds.
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([smhd]?)")


class InvalidTtl(GossipTuiError, ValueError):
    """A TTL that is not a finite number of seconds above zero and at most ten years."""


def check_ttl(seconds: object) -> float:
    """``seconds`` as a float once it is a valid TTL; raises :class:`InvalidTtl`."""
    # bool is an int: ttl=True is chitchat's flag, never one second.
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InvalidTtl(f"a TTL must be a number of seconds, not {type(seconds).__name__}")
    try:
        value = float(seconds)
    except OverflowError:  # an int too large for a float
        value = math.inf
    if math.isnan(value) or value <= 0:
        raise InvalidTtl(f"a TTL must be more than 0 seconds, not {seconds!r}")
    if value > MAX_TTL_SECONDS:
        raise InvalidTtl(f"a TTL must be at most {MAX_TTL_SECONDS:,.0f} seconds (ten years)")
    return value


def parse_duration(text: str) -> float:
    """A duration as people type it (``90``, ``30s``, ``5m``, ``1h30m``, ``2d``) in seconds,
    checked as a TTL; raises :class:`InvalidTtl` for anything else."""
    cleaned = text.strip().lower().replace(" ", "")
    parts = _PART.findall(cleaned)
    if not cleaned or "".join(number + unit for number, unit in parts) != cleaned:
        raise InvalidTtl(f"{text!r} is not a duration: write 90, 30s, 5m, 2h or 1d")
    if len(parts) > 1 and any(not unit for _number, unit in parts):
        raise InvalidTtl(f"{text!r} is not a duration: give every part a unit (1h30m)")
    return check_ttl(sum(float(number) * _UNITS[unit] for number, unit in parts))


class KeyExpiries:
    """The deadlines of the keys that expire, in the clock the caller passes as ``now``."""

    __slots__ = ("_deadlines", "_earliest")

    def __init__(self) -> None:
        self._deadlines: dict[str, float] = {}
        # No deadline is earlier than this (it may be stale low after a clear): the sweep
        # looks at the keys only once it has passed.
        self._earliest = math.inf

    @property
    def deadlines(self) -> Mapping[str, float]:
        """Key -> deadline, read-only."""
        return MappingProxyType(self._deadlines)

    def __len__(self) -> int:
        return len(self._deadlines)

    @property
    def earliest(self) -> float:
        """No deadline is earlier than this (inf without one): :meth:`due` takes no key
        before it."""
        return self._earliest

    def schedule(self, key: str, deadline: float) -> None:
        """``key`` expires at ``deadline`` (replacing any earlier schedule)."""
        self._deadlines[key] = deadline
        self._earliest = min(self._earliest, deadline)

    def clear(self, key: str) -> bool:
        """``key`` no longer expires; False when it had no deadline."""
        return self._deadlines.pop(key, None) is not None

    def due(self, now: float) -> list[str]:
        """Take the keys whose deadline is ``now`` or earlier, earliest first."""
        if now < self._earliest:
            return []
        passed = sorted(
            (deadline, key) for key, deadline in self._deadlines.items() if deadline <= now
        )
        for _deadline, key in passed:
            del self._deadlines[key]
        self._earliest = min(self._deadlines.values(), default=math.inf)
        return [key for _deadline, key in passed]


def expire_due(state: NodeState, expiries: KeyExpiries, now: float) -> list[str]:
    """Delete (tombstone, see the module's note) the keys of ``state`` whose deadline has
    passed; the keys deleted, earliest deadline first. A key already gone is skipped."""
    expired = []
    for key in expiries.due(now):
        if state.get(key) is not None and state.delete(key, now):
            expired.append(key)
    return expired
