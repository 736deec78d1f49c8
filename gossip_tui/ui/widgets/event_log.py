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
from gossip_tui.ui.widgets._in_place import RepaintsInPlace, update_in_place


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


class EventLog(RepaintsInPlace, RichLog):
    """Scrollable log; follows the tail unless the user scrolled up."""

    def __init__(self, *, max_lines: int = 2000, id: str | None = None) -> None:
        super().__init__(
            max_lines=max_lines, min_width=20, wrap=True, markup=False, highlight=False, id=id
        )

    def add_events(self, events: Iterable[NodeEvent], at: datetime) -> None:
        """One line per event: the view model's ViewChanges.log, already de-duplicated.
        A tick's events are one write: each write measures and renders on its own."""
        lines = [_stamped(describe(event), at) for event in events]
        if lines:
            self._append(Text("\n").join(lines))

    def note(self, message: str, at: datetime, style: str = "italic") -> None:
        """A line that is not a node event: the app's own actions and notices."""
        self._append(_stamped(Text(message, style=style), at))

    def _append(self, lines: Text) -> None:
        # New lines change the log's virtual size, which asks for a layout of the whole
        # screen; the log keeps its size on screen, so a repaint shows them (with 500
        # nodes, a layout a tick kept key presses from showing within 100 ms).
        with self.keeping_its_size():
            self.write(lines, scroll_end=False)
        if self._size_known:
            # What the skipped layout would have done for a log of the same size: the
            # scrollbar follows the new length (and a scrollbar that appears asks for a
            # layout itself).
            self._scroll_update(self.virtual_size)
        if self.auto_scroll:
            # At once, not after the next frame as write() would: that frame showed the
            # log as it was, and a second one the new lines, each repainting the pane.
            self.scroll_end(animate=False, immediate=True, x_axis=False)


def _stamped(line: Text, at: datetime) -> Text:
    stamped = Text(at.strftime("%H:%M:%S "), style="dim")
    stamped.append_text(line)
    return stamped


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
        # Fixed in size (app.tcss): a new figure is a repaint, not a layout.
        update_in_place(label, f"now {live} · min {low} · max {high}", fixed_size=True)
        self.query_one("#live-sparkline", Sparkline).data = list(self._samples)

    @property
    def samples(self) -> list[int]:
        return list(self._samples)
