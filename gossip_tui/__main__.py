"""``python -m gossip_tui``: the same as the ``gossip-tui`` command."""

from __future__ import annotations

from gossip_tui.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
