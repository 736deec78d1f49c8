"""schemathesis hooks for scripts/schemathesis_api.py (loaded through SCHEMATHESIS_HOOKS).

``GET /events`` is a stream that stays open until the node leaves: a request without a
bound would never answer, and one with ``timeout=86400`` (valid) would hold the run for a
day. Before each call the stream is bounded to at most a second, and only where the
query is valid already: an invalid ``timeout`` or ``limit`` (the negative cases) is sent as
generated and must be refused with a 400.
"""

from __future__ import annotations

import math
from typing import Any

import schemathesis

EVENTS_PATH = "/events"
# Long enough to see the Subscribed line and a keep-alive-free End, short enough for a run.
BOUND_SECONDS = 1.0


def _bounded_timeout(value: Any) -> Any:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return value  # invalid: the node must answer 400, leave it
    if not math.isfinite(seconds) or seconds <= 0 or seconds > 86400:
        return value
    return min(seconds, BOUND_SECONDS)


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    if case.operation.path != EVENTS_PATH:
        return
    query = dict(case.query or {})
    query["timeout"] = _bounded_timeout(query.get("timeout", BOUND_SECONDS))
    case.query = query
