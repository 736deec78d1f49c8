"""A node's life as operators live it: how it stops, restarts and is forgotten.

Real UDP on 127.0.0.1, real time, deadlines rather than sleeps.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import trio

from gossip_tui.core.models import Liveness, NodeId, SocketAddress
from gossip_tui.node import (
    Node,
    NodeConfig,
    NodeEvent,
    NodeIsLive,
    NodeRemoved,
    SeedAnswered,
    SeedUnreachable,
    open_node,
)
from gossip_tui.node._node_base import SEED_UNREACHABLE_AFTER

from .helpers import all_see_each_other, fast_config, wait_until

INTERVAL = 0.2
# Two gossip rounds, and slack for a loaded machine.
LEFT_DEADLINE = 2 * INTERVAL + 1.0


def _liveness(node: Node, other: NodeId) -> Liveness | None:
    found = node.snapshot().node(other)
    return None if found is None else found.liveness


def _heartbeat(node: Node, other: NodeId) -> int | None:
    found = node.snapshot().node(other)
    return None if found is None else found.heartbeat


@pytest.mark.trio
@pytest.mark.parametrize("how", ["outer_cancel_scope", "normal_exit"])
async def test_a_stopping_node_is_left_on_its_peer_within_two_rounds(how: str) -> None:
    async with open_node(fast_config(node_id="peer", interval=INTERVAL)) as peer:
        config = fast_config(node_id="goer", interval=INTERVAL, seeds=(str(peer.gossip_addr),))
        with trio.move_on_after(60) as outer:
            async with open_node(config) as goer:
                goer_id = goer.self_id
                await wait_until(lambda: all_see_each_other([peer, goer]), 20, "a live pair")
                if how == "outer_cancel_scope":
                    outer.deadline = trio.current_time()  # what move_on_after expiring does
                    await trio.sleep_forever()
        closed_at = trio.current_time()
        assert not outer.cancelled_caught or how == "outer_cancel_scope"
        await wait_until(
            lambda: _liveness(peer, goer_id) is Liveness.LEFT,
            LEFT_DEADLINE,
            "the peer to show the goer LEFT",
        )
        # The close itself waited for the peer's SynAck, not for the leave timeout.
        assert trio.current_time() - closed_at < LEFT_DEADLINE


def _config_with_state(state_dir: Path, seed: Node) -> NodeConfig:
    # No node id and no generation given: what an operator's restart does.
    return attrs.evolve(
        fast_config(seeds=(str(seed.gossip_addr),)),
        node_id=None,
        generation=None,
        state_dir=state_dir,
    )


@pytest.mark.trio
async def test_a_node_restarted_with_a_state_dir_keeps_its_id_and_is_folded(
    tmp_path: Path,
) -> None:
    async with open_node(fast_config(node_id="peer")) as peer:
        async with open_node(_config_with_state(tmp_path, peer)) as first:
            first_id = first.self_id
            await wait_until(lambda: all_see_each_other([peer, first]), 20, "a live pair")
        await wait_until(lambda: _liveness(peer, first_id) is Liveness.LEFT, 10, "first left")
        assert first_id in peer.dead_nodes()  # nothing folds it yet: it is just gone

        async with open_node(_config_with_state(tmp_path, peer)) as second:
            second_id = second.self_id
            await wait_until(lambda: all_see_each_other([peer, second]), 20, "the restart live")
            # Same name, read back from the state directory; a new generation.
            assert second_id.node_id == first_id.node_id
            assert second_id.generation > first_id.generation
            # The peer still holds the old generation (chitchat would too) but shows one node.
            assert peer.snapshot().node(first_id) is not None
            assert first_id not in peer.dead_nodes()
            restart = peer.restarts()[second_id]
            assert (restart.previous, restart.current) == (first_id, second_id)
            assert restart.at is not None
    assert first_id.node_id.startswith(f"server:{first_id.gossip_addr}-")
    assert (tmp_path / "node-id").read_text() == first_id.node_id + "\n"


@pytest.mark.trio
async def test_without_a_state_dir_each_start_is_a_new_chitchat_test_style_id() -> None:
    config = attrs.evolve(fast_config(), node_id=None)
    async with open_node(config) as one:
        first = one.self_id
    async with open_node(config) as two:
        second = two.self_id
    for node in (first, second):
        assert node.node_id.startswith(f"server:{node.gossip_addr}-")
    assert first.node_id != second.node_id or first.gossip_addr != second.gossip_addr


@pytest.mark.trio
@pytest.mark.parametrize("content", [b"", b"\xff\xfe", b"two\nlines\n"])
async def test_a_node_id_file_that_holds_no_id_is_moved_aside(
    tmp_path: Path, content: bytes
) -> None:
    (tmp_path / "node-id").write_bytes(content)
    config = attrs.evolve(fast_config(), node_id=None, state_dir=tmp_path)
    async with open_node(config) as node:
        name = node.self_id.node_id
    assert (tmp_path / "node-id").read_text() == name + "\n"
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("node-id.corrupt-")]
    assert [p.read_bytes() for p in aside] == [content]


@pytest.mark.trio
async def test_a_forgotten_node_does_not_come_back_from_a_peers_echo() -> None:
    async with open_node(fast_config(node_id="a")) as a:
        seeds = (str(a.gossip_addr),)
        async with open_node(fast_config(node_id="c", seeds=seeds)) as c:
            async with open_node(fast_config(node_id="b", seeds=seeds)) as b:
                b_id = b.self_id
                await wait_until(lambda: all_see_each_other([a, b, c]), 20, "three live nodes")
            await wait_until(
                lambda: _liveness(a, b_id) is Liveness.LEFT and _liveness(c, b_id) is Liveness.LEFT,
                10,
                "b left on both",
            )
            # An echo is b's last heartbeat as a holds it: a heartbeat of b's that reached c
            # and not yet a is news, not an echo, and brings b back by design (engine.forget).
            await wait_until(
                lambda: _heartbeat(a, b_id) == _heartbeat(c, b_id), 10, "one last heartbeat of b"
            )
            with pytest.raises(NodeIsLive):
                a.forget(c.self_id)
            with pytest.raises(NodeIsLive):
                a.forget(a.self_id)
            events = a.subscribe()
            assert a.forget(b_id)
            assert events.receive_nowait() == NodeRemoved(b_id)
            assert a.forget(b_id) is False  # unknown now
            # c still holds b and gossips it (the same old heartbeat) to a, round after round.
            rounds = a.stats.rounds + 10
            await wait_until(lambda: a.stats.rounds >= rounds, 10, "ten more rounds")
            assert c.snapshot().node(b_id) is not None
            assert a.snapshot().node(b_id) is None
            assert b_id not in a.dead_nodes()


@pytest.mark.trio
async def test_an_unreachable_seed_is_reported_once_and_again_when_it_answers() -> None:
    silent = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await silent.bind(("127.0.0.1", 0))
    seed_addr = SocketAddress.parse(f"127.0.0.1:{silent.getsockname()[1]}")
    async with open_node(fast_config(node_id="lonely", seeds=(str(seed_addr),))) as node:
        events = node.subscribe()
        seen: list[NodeEvent] = []

        def seed_events() -> list[NodeEvent]:
            while True:
                try:
                    event = events.receive_nowait()
                except trio.WouldBlock:
                    break
                if isinstance(event, (SeedUnreachable, SeedAnswered)):
                    seen.append(event)
            return seen

        await wait_until(lambda: bool(seed_events()), 10, "the seed reported unreachable")
        assert seen == [SeedUnreachable(seed_addr, SEED_UNREACHABLE_AFTER)]
        [status] = node.seed_status()
        assert (status.addr, status.reachable, status.last_answer) == (seed_addr, False, None)
        rounds = node.stats.rounds + 5
        await wait_until(lambda: node.stats.rounds >= rounds, 10, "five more rounds")
        assert seed_events() == [SeedUnreachable(seed_addr, SEED_UNREACHABLE_AFTER)]  # once

        silent.close()  # the seed comes up on its address
        async with open_node(fast_config(str(seed_addr), node_id="seed")):
            await wait_until(lambda: len(seed_events()) == 2, 10, "the seed answering")
            assert seen[1] == SeedAnswered(seed_addr)
            [status] = node.seed_status()
            assert status.reachable and status.unanswered == 0 and status.last_answer is not None


@pytest.mark.trio
async def test_an_unusable_state_dir_does_not_stop_the_node(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    config = attrs.evolve(fast_config(), node_id=None, state_dir=not_a_dir)
    async with open_node(config) as node:
        assert node.self_id.node_id.startswith("server:")
    assert not_a_dir.read_text() == "x"


@pytest.mark.trio
@pytest.mark.parametrize("attempt", range(5))
async def test_a_seed_that_answers_is_never_reported_unreachable(
    caplog: pytest.LogCaptureFixture, attempt: int
) -> None:
    # While a node knows nobody, a round can pick its seed twice or more (as a peer and as
    # the seed): one round, one question.
    async with open_node(fast_config(node_id="seed")) as seed:
        config = fast_config(node_id=f"joiner-{attempt}", seeds=(str(seed.gossip_addr),))
        async with open_node(config) as joiner:
            await wait_until(lambda: all_see_each_other([seed, joiner]), 20, "a pair")
            rounds = joiner.stats.rounds + 5
            await wait_until(lambda: joiner.stats.rounds >= rounds, 10, "five more rounds")
            assert all(status.reachable for status in joiner.seed_status())
    assert "has not answered" not in caplog.text
