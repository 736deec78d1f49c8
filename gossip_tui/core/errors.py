"""The base of every error gossip-tui raises on purpose, so that a caller can catch them
all in one clause. Each one also keeps its standard base (ValueError, OSError...), so
that ``except ValueError`` keeps working."""

from collections.abc import Container


class GossipTuiError(Exception):
    """An error of gossip-tui's own (not a bug): bad input, a refused write, a file."""


def os_error_in(exc: BaseException, errnos: Container[int]) -> OSError | None:
    """The first OSError with one of ``errnos`` that ``exc`` is or holds (exception groups
    nest: a Trio nursery wraps what its tasks raise), or None."""
    if isinstance(exc, OSError) and exc.errno in errnos:
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = os_error_in(inner, errnos)
            if found is not None:
                return found
    return None
