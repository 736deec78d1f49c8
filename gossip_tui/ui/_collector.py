"""The dashboard process's garbage-collector policy: full collections while nobody types.

A dashboard of hundreds of nodes holds millions of objects the cyclic collector tracks
(the node's states, the table's rows and drawn lines). A full collection walks all of
them: 100-400 ms on this kind of machine, and Python starts one whenever the old
generation has grown by a quarter, whatever the operator is doing. With 500 nodes those
collections were most of the key presses that took over 100 ms (keypress.py --explain).
So the dashboard process (the CLI's dashboard and demo, and the bench that measures them;
never a library user or a test session, whose collector is theirs) keeps Python from
starting full collections and runs them itself at a moment no key has come for a while:
a pause then shows no keystroke late. Young collections are left to Python (cheap: they
walk only new objects). Memory stays bounded: reference counting frees nearly everything
this code allocates, and a full collection still runs at least every ``at_most_after``
seconds, typing or not.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

# Python's own trigger for a full collection is the number of middle-generation
# collections since the last one; past this it never fires on its own.
_NEVER = 2**31 - 1


class QuietCollector:
    """When the dashboard process runs its full collections (see the module docstring)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        quiet_for: float = 1.0,
        every: float = 30.0,
        at_most_after: float = 120.0,
        check_every: float = 2.0,
        collector: Any = gc,
    ) -> None:
        self._clock = clock
        self.quiet_for = quiet_for
        self.every = every
        self.at_most_after = at_most_after
        self.check_every = check_every
        self._gc = collector
        self._last_key = float("-inf")
        self._last_full = clock()
        self.full_collections = 0
        # The thresholds found at install, given back at uninstall.
        self._found: tuple[int, int, int] | None = None

    def install(self) -> None:
        """Take full collections from Python. Run once the app is up: what start-up built
        (Textual's styles, the widgets) is frozen out of every later collection."""
        self._gc.freeze()
        self._found = young, middle, _old = self._gc.get_threshold()
        self._gc.set_threshold(young, middle, _NEVER)
        self._last_full = self._clock()

    def uninstall(self) -> None:
        """Give full collections back to Python as install found them (the app is gone:
        the process may go on, a test session's among them)."""
        if self._found is None:
            return
        found, self._found = self._found, None
        self._gc.set_threshold(*found)
        self._gc.unfreeze()

    def key_seen(self) -> None:
        self._last_key = self._clock()

    def collect_if_quiet(self) -> bool:
        """A full collection if one is due and no key came for ``quiet_for`` seconds (or
        none ran for ``at_most_after``). True if it ran."""
        now = self._clock()
        since_full = now - self._last_full
        quiet = now - self._last_key >= self.quiet_for
        if not ((quiet and since_full >= self.every) or since_full >= self.at_most_after):
            return False
        self._gc.collect()
        self._last_full = self._clock()
        self.full_collections += 1
        return True
