"""Every way the dashboard stops tells its peers first: a real headless peer over UDP on
127.0.0.1 shows the dashboard's node *left* within two gossip rounds of the exit."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import outcome
import pytest

from gossip_tui.core.models import SocketAddress
from gossip_tui.node import NodeConfig, open_node
from gossip_tui.ui import GossipApp
from tests.processes import REPO, free_port, get_json, running_node, wait_for
from tests.ui.conftest import wait_ready, wait_until

# The gossip interval of both nodes; "left within two rounds" is measured in it.
ROUND = 0.5
DASHBOARD_ID = "dash"


class Peer:
    """A headless node process whose HTTP API says how it sees the dashboard's node."""

    def __init__(self, gossip_addr: SocketAddress, cluster_id: str) -> None:
        self.gossip_addr = gossip_addr
        self.cluster_id = cluster_id

    def liveness_of(self, node_id: str) -> str | None:
        """The liveness of the newest generation of ``node_id`` here (None: unknown)."""
        nodes = get_json(f"http://{self.gossip_addr}/nodes")["nodes"]
        found = [n for n in nodes if n["chitchat_id"]["node_id"] == node_id]
        if not found:
            return None
        newest = max(found, key=lambda n: n["chitchat_id"]["generation_id"])
        return str(newest["liveness"])

    def sees(self, node_id: str, liveness: str) -> bool:
        return self.liveness_of(node_id) == liveness


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Peer]:
    port = free_port()
    # A cluster of its own: nothing else on this machine can merge into it.
    cluster_id = f"exit-{uuid.uuid4().hex[:8]}"
    addr = SocketAddress.parse(f"127.0.0.1:{port}")
    args = ["--listen-addr", str(addr), "--cluster-id", cluster_id]
    args += ["--interval-ms", str(int(ROUND * 1000))]
    with running_node(tmp_path, "peer", *args):
        wait_for(lambda: _answers(addr), 15, "the peer's HTTP API")
        yield Peer(addr, cluster_id)


def _answers(addr: SocketAddress) -> bool:
    try:
        get_json(f"http://{addr}/health")
    except OSError:
        return False
    return True


def dashboard_config(peer: Peer) -> NodeConfig:
    return NodeConfig(
        listen_addr=SocketAddress.parse("127.0.0.1:0"),
        node_id=DASHBOARD_ID,
        cluster_id=peer.cluster_id,
        seeds=(str(peer.gossip_addr),),
        gossip_interval=ROUND,
    )


def assert_left_within_two_rounds(peer: Peer, since: float) -> None:
    """The peer shows the dashboard's node left no later than two rounds after ``since``."""
    deadline = since + 2 * ROUND
    while not peer.sees(DASHBOARD_ID, "left"):
        now = time.monotonic()
        assert now < deadline, (
            f"{now - since:.2f} s after the exit the peer sees the dashboard's node as "
            f"{peer.liveness_of(DASHBOARD_ID)!r}, not 'left'"
        )


# --------------------------------------------------------------------------- keys (Pilot)


@pytest.mark.asyncio
@pytest.mark.parametrize("key", ["q", "ctrl+c"])
async def test_a_quit_key_leaves(peer: Peer, key: str) -> None:
    app = GossipApp(dashboard_config(peer), open_node, cursor_blink=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_ready(pilot)
        # Each live to the other: a node leaves by telling the peers it sees live.
        await wait_until(pilot, lambda: peer.sees(DASHBOARD_ID, "live"), what="the peer to see us")
        await wait_until(
            pilot,
            lambda: app.view_model is not None and app.view_model.counts.live == 2,
            what="us to see the peer live",
        )
        pressed = time.monotonic()
        await pilot.press(key)
    assert_left_within_two_rounds(peer, pressed)
    assert isinstance(app.trio_outcome, outcome.Value)


# --------------------------------------------------------------------------- signals (tmux)

TMUX = shutil.which("tmux")
needs_tmux = pytest.mark.skipif(
    TMUX is None, reason="tmux is not installed: these tests need a real terminal to run in"
)


class Terminal:
    """A tmux server of its own (a private socket), one session of one pane."""

    def __init__(self) -> None:
        assert TMUX is not None
        self._base = [TMUX, "-L", f"gossip-tui-exit-{uuid.uuid4().hex[:12]}", "-f", os.devnull]
        # Processes to kill in teardown if they outlive the test (a dashboard that hangs).
        self.processes: list[int] = []

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            [*self._base, *args], capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout

    def start(self, shell_command: str) -> None:
        self.tmux("new-session", "-d", "-s", "exit", "-x", "120", "-y", "36", shell_command)

    def flags(self) -> str:
        return self.tmux("display", "-p", "-t", "exit", FLAGS).strip()

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "exit")

    def pane_pid(self) -> int:
        return int(self.tmux("display", "-p", "-t", "exit", "#{pane_pid}"))

    def kill_server(self) -> None:
        subprocess.run([*self._base, "kill-server"], capture_output=True, timeout=10, check=False)
        for pid in self.processes:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


# The pane's screen modes: alternate screen, mouse reporting (any of its kinds), cursor shown.
FLAGS = "#{alternate_on} #{mouse_any_flag}#{mouse_button_flag}#{mouse_standard_flag} #{cursor_flag}"
RESTORED = "0 000 1"


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal()
    try:
        yield term
    finally:
        term.kill_server()


def dashboard_command(peer: Peer) -> str:
    """The real `gossip-tui` dashboard, as an operator runs it, joining ``peer``."""
    args = ["--listen-addr", "127.0.0.1:0", "--no-http", "--node-id", DASHBOARD_ID]
    args += ["--cluster-id", peer.cluster_id, "--seed", str(peer.gossip_addr)]
    args += ["--interval-ms", str(int(ROUND * 1000))]
    return shlex.join([sys.executable, "-m", "gossip_tui", *args])


def dashboard_pid(terminal: Terminal) -> int:
    """The dashboard's process: the pane's shell's child."""
    shell = terminal.pane_pid()
    children: list[int] = []

    def found() -> bool:
        children[:] = [int(p) for p in _children_of(shell)]
        return len(children) == 1

    wait_for(found, 15, "the dashboard's process")
    terminal.processes.append(children[0])
    return children[0]


def _children_of(pid: int) -> list[str]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return path.read_text().split() if path.exists() else []


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return status.rsplit(")", 1)[1].split()[0] == "Z"


def start_dashboard(terminal: Terminal, peer: Peer) -> int:
    """The dashboard in a shell in the pane, then DONE and its exit status; the shell
    stays (cat) so that the pane can still be looked at. Returns the dashboard's pid."""
    script = f"cd {shlex.quote(str(REPO))} && {dashboard_command(peer)}; echo DONE rc=$?; exec cat"
    terminal.start(f"sh -c {shlex.quote(script)}")
    pid = dashboard_pid(terminal)
    both_live(terminal, peer)
    assert terminal.flags().split()[0] == "1"  # the dashboard is up, in the alternate screen
    return pid


def both_live(terminal: Terminal, peer: Peer) -> None:
    """Each live to the other: a node leaves by telling the peers it sees live (the
    dashboard's header counts itself and the peer)."""
    wait_for(lambda: peer.sees(DASHBOARD_ID, "live"), 20, "the peer to see the dashboard")
    wait_for(lambda: "2 live" in terminal.screen(), 20, "the dashboard to see the peer live")


@needs_tmux
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_leaves_and_restores_the_terminal(
    peer: Peer, terminal: Terminal, signum: signal.Signals
) -> None:
    pid = start_dashboard(terminal, peer)
    sent = time.monotonic()
    os.kill(pid, signum)
    assert_left_within_two_rounds(peer, sent)
    wait_for(lambda: "DONE rc=0" in terminal.screen(), 15, "the dashboard to exit")
    # Back on the normal screen, mouse reporting off, cursor shown.
    assert terminal.flags() == RESTORED


@needs_tmux
@pytest.mark.parametrize("close", ["kill-session", "kill-pane"])
def test_closing_the_terminal_leaves(peer: Peer, terminal: Terminal, close: str) -> None:
    # The dashboard is the pane's own process here, as in a terminal window that is closed.
    terminal.start(f"cd {shlex.quote(str(REPO))} && exec {dashboard_command(peer)}")
    pid = terminal.pane_pid()
    terminal.processes.append(pid)
    both_live(terminal, peer)
    closed = time.monotonic()
    terminal.tmux(close, "-t", "exit")  # tmux hangs up on the pane: SIGHUP
    assert_left_within_two_rounds(peer, closed)
    wait_for(lambda: _gone(pid), 15, "the dashboard's process to end")
