"""Command palette entries for the dashboard's actions."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

# (title, action, help): the action is run on the app, as a key binding would.
PALETTE_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("Set a key", "set_key", "Set a key-value on this node (s)"),
    ("Edit the selected key", "edit_key", "Change the value of the selected local key (e)"),
    ("Delete the selected key", "delete_key", "Delete the selected local key (d)"),
    ("Set a key with TTL", "set_key_ttl", "Set a key that is deleted when its TTL runs out (t)"),
    ("Filter nodes", "filter", "Filter the nodes table: words, key=value, key!=value (/)"),
    ("Sort nodes by the next column", "cycle_sort", "Cycle the nodes table's sort column (o)"),
    ("Stop a random peer", "kill_peer", "Demo: stop a peer, restart it with a new generation (x)"),
    ("Show keys", "help", "List every key binding (?)"),
    ("Quit", "quit", "Leave the dashboard and stop the node (q)"),
)


class GossipCommands(Provider):
    """The dashboard's actions, minus those not available right now (e.g. demo-only ones)."""

    def _available(self) -> list[tuple[str, str, str]]:
        # Not check_action: that one also says no while an input (the palette's own) has
        # focus, as letters typed there are text.
        available = getattr(self.app, "action_available", None)
        return [
            command
            for command in PALETTE_COMMANDS
            if (available(command[1]) if callable(available) else True)
        ]

    async def discover(self) -> Hits:
        for title, action, help_text in self._available():
            yield DiscoveryHit(title, partial(self.app.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, action, help_text in self._available():
            score = matcher.match(title)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(title),
                    partial(self.app.run_action, action),
                    text=title,
                    help=help_text,
                )
