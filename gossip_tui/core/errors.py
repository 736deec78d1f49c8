"""The base of every error gossip-tui raises on purpose, so that a caller can catch them
all in one clause. Each one also keeps its standard base (ValueError, OSError...), so
that ``except ValueError`` keeps working."""


class GossipTuiError(Exception):
    """An error of gossip-tui's own (not a bug): bad input, a refused write, a file."""
