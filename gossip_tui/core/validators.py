"""attrs validators shared by the config classes, with messages an operator can act on.

The command line checks its settings with the config classes' own validators (see
gossip_tui._config_file), so these messages are also what a bad option reports.
"""

from __future__ import annotations

from typing import Any

__all__ = ["non_negative"]


def non_negative(_instance: Any, attribute: Any, value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value:g}")
