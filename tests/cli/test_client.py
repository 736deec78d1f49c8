"""The client commands (members, get, set, delete, watch) against running nodes.

The nodes run in this process over real UDP and TCP on 127.0.0.1; each command is a real
``python -m gossip_tui`` process writing to a pipe, as a script would run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from gossip_tui._config_file import CliSettings
from gossip_tui.client import http_service
from gossip_tui.core.models import KeyStatus, SocketAddress
from gossip_tui.node import Node, NodeConfig, open_node
from tests.processes import REPO, free_port

TOKEN = "client-test-token-0123456789"


@attrs.frozen
class Done:
    code: int
    stdout: str
    stderr: str


def _env(token_file: Path | None, node: SocketAddress | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOSSIP_TUI_")}
    env["PYTHONPATH"] = str(REPO)
    if token_file is not None:
        env["GOSSIP_TUI_API_TOKEN_FILE"] = str(token_file)
    if node is not None:
        env["GOSSIP_TUI_NODE"] = str(node)
    return env


async def _run(env: dict[str, str], *args: str) -> Done:
    done = await trio.to_thread.run_sync(
        partial(
            subprocess.run,
            [sys.executable, "-m", "gossip_tui", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    )
    return Done(done.returncode, done.stdout, done.stderr)


async def _run_all(*commands: tuple[dict[str, str], tuple[str, ...]]) -> list[Done]:
    """``_run`` of each (environment, arguments) at once; the results in that order."""
    results: list[Done | None] = [None] * len(commands)

    async def run_one(index: int, env: dict[str, str], args: tuple[str, ...]) -> None:
        results[index] = await _run(env, *args)

    async with trio.open_nursery() as nursery:
        for index, (env, args) in enumerate(commands):
            nursery.start_soon(run_one, index, env, args)
    finished = [done for done in results if done is not None]
    assert len(finished) == len(commands)
    return finished


def _wrong_token(tmp_path: Path) -> Path:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-token-0123456789\n")
    return wrong


def _config(name: str, seeds: tuple[str, ...] = ()) -> NodeConfig:
    return NodeConfig(
        listen_addr=SocketAddress.parse("127.0.0.1:0"),
        node_id=name,
        seeds=seeds,
        gossip_interval=0.05,
    )


@asynccontextmanager
async def _served_node(
    token_file: Path, name: str, seeds: tuple[str, ...] = ()
) -> AsyncIterator[tuple[Node, SocketAddress]]:
    # The API on a port of its own: the gossip port's number may be taken over TCP.
    settings = CliSettings(
        listen_addr=SocketAddress.parse("127.0.0.1:0"),
        http_addr=SocketAddress.parse("127.0.0.1:0"),
        api_token_file=token_file,
    )
    async with open_node(_config(name, seeds)) as node:
        addr = await http_service(settings)(node)
        yield node, addr


async def _until(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    with trio.move_on_after(timeout):
        while not condition():
            await trio.sleep(0.02)  # polling, with a deadline
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(f"{TOKEN}\n")
    return path


@pytest.mark.trio
async def test_members_get_set_delete_against_a_running_node(
    token_file: Path, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        a, http = await stack.enter_async_context(_served_node(token_file, "a"))
        b, _ = await stack.enter_async_context(_served_node(token_file, "b", (str(a.gossip_addr),)))
        b.set("app/size", "L")
        await _until(lambda: len(a.live_nodes()) == 2, "b live at a")
        await _until(lambda: a.get("app/size", b.self_id) == "L", "b's key at a")
        env = _env(token_file, http)
        anonymous = _env(None, http)

        # Commands that do not depend on each other's effects run at once (each is a
        # fresh interpreter: one at a time they were most of this test's time); those that
        # read what another wrote, or time themselves, run after it, alone.
        refused, wrong_token = await _run_all(
            (anonymous, ("set", "color", "red")),
            (_env(_wrong_token(tmp_path), http), ("set", "color", "red")),
        )
        refused_value = a.get("color")
        set_done = await _run(env, "set", "color", "red")
        stored = a.get("color")
        (
            got,
            of_b,
            ttl,
            *bad_ttls,
            both,
            table,
            as_json,
            dead,
            missing_on_b,
        ) = await _run_all(
            (anonymous, ("get", "color")),
            (anonymous, ("get", "app/size", "--node-id", "b")),
            (env, ("set", "lease", "x", "--chitchat-ttl")),
            *((env, ("set", "k", "v", "--ttl", bad)) for bad in ("0", "-5", "x")),
            (env, ("set", "k", "v", "--ttl", "5", "--chitchat-ttl")),
            (anonymous, ("members",)),
            (anonymous, ("members", "--format", "json")),
            (anonymous, ("members", "--format", "json", "--status", "dead")),
            (anonymous, ("get", "nope", "--node-id", "b")),
        )
        lease = a.snapshot().node(a.self_id)
        # The CLI's subprocesses take seconds under load: the expiry is checked against
        # the clock read around each command, not against a fixed slack.
        set_started = trio.current_time()
        timed = await _run(env, "set", "timed", "v", "--ttl", "5m")
        set_done_at = trio.current_time()
        timed_expiry = a.key_expiries()["timed"]
        json_started = trio.current_time()
        got_json = await _run(anonymous, "get", "timed", "--format", "json")
        json_done_at = trio.current_time()
        got_timed, deleted = await _run_all(
            (anonymous, ("get", "timed")), (env, ("delete", "color"))
        )
        after = await _run(anonymous, "get", "color")

    assert refused.code == 1
    assert refused.stderr.count("\n") == 1 and "API token" in refused.stderr
    assert wrong_token.code == 1 and "token was refused" in wrong_token.stderr
    assert refused_value is None
    assert (set_done.code, set_done.stdout, set_done.stderr) == (0, "", "")
    assert stored == "red"
    assert (got.code, got.stdout) == (0, "red\n")
    assert (of_b.code, of_b.stdout) == (0, "L\n")
    assert ttl.code == 0
    assert lease is not None
    assert lease.key_values["lease"].status is KeyStatus.DELETE_AFTER_TTL
    assert timed.code == 0 and set_started + 300 <= timed_expiry <= set_done_at + 300
    assert (got_timed.code, got_timed.stdout) == (0, "v\n")  # the bare value, for scripts
    assert got_timed.stderr.startswith("expires in ") and "Z)" in got_timed.stderr
    expires_in = json.loads(got_json.stdout)["expires_in"]
    assert timed_expiry - json_done_at - 1 <= expires_in <= timed_expiry - json_started + 1
    assert [bad.code for bad in bad_ttls] == [2, 2, 2]
    assert both.code == 2
    assert a.get("k") is None
    assert table.code == 0
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["NODE", "GENERATION", "ADDRESS", "STATUS", "HEARTBEAT", "KEYS"]
    assert "\x1b" not in table.stdout  # no colour in a pipe
    assert sorted(row.split()[0] for row in rows) == ["a", "b"]
    members = json.loads(as_json.stdout)
    assert [m["node_id"] for m in members] == ["a", "b"]
    assert set(members[0]) == {
        "node_id",
        "generation_id",
        "gossip_advertise_addr",
        "status",
        "is_self",
        "heartbeat",
        "max_version",
        "key_count",
        "phi",
    }
    assert [(m["status"], m["is_self"]) for m in members] == [("live", True), ("live", False)]
    assert json.loads(dead.stdout) == []
    assert deleted.code == 0
    assert after.code == 1 and "no key 'color'" in after.stderr
    assert missing_on_b.code == 1 and "no key 'nope'" in missing_on_b.stderr


@pytest.mark.trio
async def test_watch_sees_another_nodes_key_and_leave_then_ends(token_file: Path) -> None:
    lines: list[dict[str, Any]] = []
    command = [sys.executable, "-m", "gossip_tui", "watch", "--format", "json", "--prefix", "app/"]
    with ExitStack() as processes:
        async with _served_node(token_file, "a") as (a, http):
            watcher = processes.enter_context(
                subprocess.Popen(
                    command,
                    env=_env(token_file, http),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            processes.callback(lambda: watcher.poll() is None and watcher.kill())
            assert watcher.stdout is not None and watcher.stderr is not None

            def read(stream: Any = watcher.stdout) -> None:
                for line in stream:
                    lines.append(json.loads(line))

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            await _until(lambda: any(ln["type"] == "subscribed" for ln in lines), "subscribed")
            async with open_node(_config("b", (str(a.gossip_addr),))) as b:
                b.set("app/color", "blue")
                b.set("other", "x")
                await _until(lambda: any(ln.get("key") == "app/color" for ln in lines), "b's key")
                # Only a node a has announced live can be announced gone.
                await _until(
                    lambda: any(
                        ln["type"] == "node_joined" and ln["node"]["node_id"] == "b" for ln in lines
                    ),
                    "b joined on a's stream",
                )
                # b announces its leave to the peers it judges live: a must be one.
                await _until(lambda: a.self_id in b.live_nodes(), "a live at b")
            await _until(
                lambda: any(
                    ln["type"] == "node_left" and ln["node"]["node_id"] == "b" for ln in lines
                ),
                "b's leave",
            )
        # a closed: watch prints the end line and exits 0.
        code = await trio.to_thread.run_sync(partial(watcher.wait, 20))
        await trio.to_thread.run_sync(partial(reader.join, 10))
        errors = watcher.stderr.read()
    assert code == 0, errors
    assert lines[-1] == {"type": "end", "reason": "node closed"}
    changed = next(ln for ln in lines if ln.get("key") == "app/color")
    assert changed["type"] == "key_changed"
    assert changed["node"]["node_id"] == "b"
    assert changed["value"] == "blue"
    assert not any(ln.get("key") == "other" for ln in lines)


@pytest.mark.trio
async def test_clear_errors_and_exit_statuses() -> None:
    nobody = SocketAddress.parse(f"127.0.0.1:{free_port()}")
    env = _env(None, nobody)

    down = await _run(env, "members")
    usage = await _run(env, "members", "--format", "xml")
    bad_node = await _run(env, "get", "k", "--node", "not-an-address")

    assert down.code == 1
    assert down.stderr.count("\n") == 1
    assert f"no node answers at http://{nobody}/" in down.stderr
    assert usage.code == 2 and "xml" in usage.stderr
    assert bad_node.code == 2 and "invalid node address" in bad_node.stderr


def test_the_client_commands_do_not_import_trio() -> None:
    nobody = f"127.0.0.1:{free_port()}"
    probe = (
        "import sys\n"
        "from gossip_tui.cli import main\n"
        f"main(['members', '--node', '{nobody}'])\n"
        "print(sorted(m for m in ('trio', 'hypercorn', 'textual') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=_env(None, None),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "[]", done.stderr
