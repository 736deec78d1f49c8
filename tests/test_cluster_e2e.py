"""Five real `gossip-tui --headless` processes on 127.0.0.1, driven through their HTTP API."""

from __future__ import annotations

import signal
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.processes import answers, free_port, get_json, running_node, wait_for


def _live_names(port: int) -> set[str]:
    return {n["node_id"] for n in get_json(f"http://127.0.0.1:{port}/")["live_nodes"]}


def _dead_names(port: int) -> set[str]:
    return {n["node_id"] for n in get_json(f"http://127.0.0.1:{port}/")["dead_nodes"]}


def _value_of(port: int, owner: str, key: str) -> Any:
    index = get_json(f"http://127.0.0.1:{port}/")
    for state in index["cluster_state"]["node_states"]:
        if state["chitchat_id"]["node_id"] == owner:
            entry = state["key_values"].get(key)
            return None if entry is None else entry["value"]
    return None


@pytest.mark.slow
def test_five_processes_converge_share_keys_detect_death_and_keep_clusters_apart(
    tmp_path: Path,
) -> None:
    ports = [free_port() for _ in range(5)]
    names = [f"e2e-{i}" for i in range(5)]
    common = ("--interval-ms", "100")
    with ExitStack() as stack:
        procs = []
        for i, port in enumerate(ports):
            seed = () if i == 0 else ("--seed", f"127.0.0.1:{ports[0]}")
            proc, _ = stack.enter_context(
                running_node(
                    tmp_path, names[i], "--listen-addr", f"127.0.0.1:{port}", *common, *seed
                )
            )
            procs.append(proc)
        # Another cluster, seeded with our node 0, never mixes with us. It starts with the
        # five (one process start-up in parallel rather than one more after them) and so
        # knocks at node 0 for the whole test, from before the cluster forms.
        other_port = free_port()
        stack.enter_context(
            running_node(
                tmp_path,
                "intruder",
                "--listen-addr",
                f"127.0.0.1:{other_port}",
                "--cluster-id",
                "other",
                "--seed",
                f"127.0.0.1:{ports[0]}",
                *common,
            )
        )
        wait_for(
            lambda: all(answers(f"http://127.0.0.1:{p}/") for p in [*ports, other_port]),
            30,
            "HTTP up on the five and the intruder",
        )
        wait_for(
            lambda: all(_live_names(p) == set(names) for p in ports), 30, "5 live nodes everywhere"
        )

        # A key set through HTTP on one node is read through HTTP on all the others.
        get_json(f"http://127.0.0.1:{ports[2]}/set_kv/?key=colour&value=teal")
        wait_for(
            lambda: all(_value_of(p, names[2], "colour") == "teal" for p in ports),
            15,
            "the key on every node",
        )

        # kill -9 one node: every other node declares it dead.
        procs[4].send_signal(signal.SIGKILL)
        procs[4].wait(timeout=10)
        wait_for(
            lambda: all(names[4] in _dead_names(p) for p in ports[:4]), 60, "the killed node dead"
        )
        for port in ports[:4]:
            index = get_json(f"http://127.0.0.1:{port}/")
            known = {s["chitchat_id"]["node_id"] for s in index["cluster_state"]["node_states"]}
            assert "intruder" not in known
            assert _live_names(port) == set(names[:4])
        intruder_view = get_json(f"http://127.0.0.1:{other_port}/")
        assert {
            s["chitchat_id"]["node_id"] for s in intruder_view["cluster_state"]["node_states"]
        } == {"intruder"}
