"""What happened, when: a time-stamped log of node events, and live-node count over time."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, RichLog, Sparkline

from gossip_tui.ui._format import one_line
from gossip_tui.ui._node_api import (
    KeyChanged,
    KeyDeleted,
    NodeDead,
    NodeEvent,
    NodeJoined,
    NodeLeft,
    NodeRemoved,
    NodeUpdated,
)


def describe(event: NodeEvent) -> Text:
    """One event as one line of text (without the time stamp)."""
    text = Text()
    match event:
        case NodeJoined(node=node):
            text.append("▲ joined  ", style="bold green")
            text.append(node.node_id)
            # A restarted node comes back under a new generation: worth seeing.
            text.append(f" gen {node.generation}", style="dim")
        case NodeLeft(node=node):
            text.append("◁ left    ", style="bold yellow")
            text.append(node.node_id)
        case NodeDead(node=node):
            text.append("▼ dead    ", style="bold red")
            text.append(node.node_id)
        case NodeRemoved(node=node):
            text.append("✖ removed ", style="magenta")
            text.append(node.node_id)
        case NodeUpdated(node=node, max_version=max_version):
            text.append("• updated ", style="dim")
            text.append(node.node_id)
            text.append(f" max_version={max_version}", style="dim")
        case KeyChanged(node=node, key=key, value=value, version=version):
            text.append("✎ key     ", style="cyan")
            text.append(f"{node.node_id} ")
            text.append(key, style="bold")
            text.append(f" = {one_line(value)}")
            text.append(f" (v{version})", style="dim")
        case KeyDeleted(node=node, key=key, version=version, reason=reason):
            text.append("⌛ expired " if reason == "expired" else "⌫ deleted ", style="yellow")
            text.append(f"{node.node_id} ")
            text.append(key, style="bold")
            text.append(f" (v{version})", style="dim")
    return text


class EventLog(RichLog):
    """Scrollable log; follows the tail unless the user scrolled up."""

    def __init__(self, *, max_lines: int = 2000, id: str | None = None) -> None:
        super().__init__(
            max_lines=max_lines, min_width=20, wrap=True, markup=False, highlight=False, id=id
        )

    def add_events(self, events: Iterable[NodeEvent], at: datetime) -> None:
        """One line per event: the view model's ViewChanges.log, already de-duplicated."""
        for event in events:
            self._write(describe(event), at)

    def note(self, message: str, at: datetime, style: str = "italic") -> None:
        """A line that is not a node event: the app's own actions and notices."""
        self._write(Text(message, style=style), at)

    def _write(self, line: Text, at: datetime) -> None:
        stamped = Text(at.strftime("%H:%M:%S "), style="dim")
        stamped.append_text(line)
        self.write(stamped, scroll_end=None)


class LiveHistory(Vertical):
    """Live-node count, sampled at a steady rate, as a sparkline."""

    def __init__(self, *, samples: int = 120, id: str | None = None) -> None:
        super().__init__(id=id)
        self._samples: deque[int] = deque(maxlen=samples)

    def compose(self) -> ComposeResult:
        yield Label("", id="live-count")
        yield Sparkline([], id="live-sparkline")

    def add_sample(self, live: int) -> None:
        self._samples.append(live)
        self._show_samples()

    def on_mount(self) -> None:
        self._show_samples()

    def _show_samples(self) -> None:
        labels = self.query("#live-count").results(Label)
        label = next(labels, None)
        if label is None or not self._samples:
            # The first sample can beat our children to the screen: on_mount shows it.
            return
        live, low, high = self._samples[-1], min(self._samples), max(self._samples)
        label.update(f"now {live} · min {low} · max {high}")
        self.query_one("#live-sparkline", Sparkline).data = list(self._samples)

    @property
    def samples(self) -> list[int]:
        return list(self._samples)
