"""Opt-in sealing of datagrams: only key holders join; tampering and replays are refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import trio

from gossip_tui.core.models import SocketAddress
from gossip_tui.node import (
    DatagramRejected,
    MemoryNetwork,
    SecretKeyError,
    generate_key,
    open_node,
    parse_key,
)
from gossip_tui.node._crypto import OVERHEAD, Sealer

from .helpers import all_see_each_other, fast_config, wait_until

REPO = Path(__file__).resolve().parents[2]

KEY_A = parse_key(generate_key())
KEY_B = parse_key(generate_key())


class _Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _reason(sealer: Sealer, datagram: bytes) -> str:
    with pytest.raises(DatagramRejected) as info:
        sealer.open(datagram)
    return info.value.reason


def test_seal_and_open() -> None:
    clock = _Clock()
    sender, receiver = Sealer([KEY_A], clock=clock), Sealer([KEY_A], clock=clock)
    sealed = sender.seal(b"hello")
    assert len(sealed) == len(b"hello") + OVERHEAD
    assert b"hello" not in sealed
    assert receiver.open(sealed) == b"hello"


def test_refusals_say_why() -> None:
    clock = _Clock()
    sender, receiver = Sealer([KEY_A], clock=clock), Sealer([KEY_A], clock=clock)
    sealed = sender.seal(b"payload")
    assert receiver.open(sealed) == b"payload"
    assert _reason(receiver, sealed) == "replay"
    tampered = bytearray(sender.seal(b"payload"))
    tampered[-1] ^= 1
    assert _reason(receiver, bytes(tampered)) == "auth_failed"
    assert _reason(receiver, b"\x53\xb0\x00\x03") == "unencrypted"
    assert _reason(Sealer([KEY_B], clock=clock), sender.seal(b"x")) == "unknown_key"
    old = sender.seal(b"old")
    clock.now += 121
    assert _reason(receiver, old) == "stale"


def test_replay_window_accepts_reordering_once() -> None:
    clock = _Clock()
    sender, receiver = Sealer([KEY_A], clock=clock), Sealer([KEY_A], clock=clock)
    sealed = [sender.seal(bytes([i % 256])) for i in range(2000)]
    assert receiver.open(sealed[1500]) == bytes([1500 % 256])
    assert receiver.open(sealed[1000]) == bytes([1000 % 256])  # late but within the window
    assert _reason(receiver, sealed[1000]) == "replay"
    assert _reason(receiver, sealed[100]) == "replay"  # too old to tell: refused
    assert receiver.open(sealed[1999]) == bytes([1999 % 256])


def test_rotation_sends_with_the_first_key_and_opens_with_any() -> None:
    clock = _Clock()
    rotated = Sealer([KEY_B, KEY_A], clock=clock)
    old = Sealer([KEY_A], clock=clock)
    assert rotated.open(old.seal(b"from old")) == b"from old"
    assert _reason(old, rotated.seal(b"from new")) == "unknown_key"
    assert Sealer([KEY_A, KEY_B], clock=clock).open(rotated.seal(b"x")) == b"x"


@pytest.mark.parametrize("text", ["", "not base64!", "c2hvcnQ="])
def test_bad_keys_are_refused(text: str) -> None:
    with pytest.raises(SecretKeyError):
        parse_key(text)


@pytest.mark.trio
async def test_only_key_holders_join(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork(seed=31)
    first_config = attrs.evolve(fast_config(node_id="a"), secret_keys=(KEY_A,))
    async with open_node(first_config, transport=network.transport()) as first:
        seed = (str(first.gossip_addr),)
        member = attrs.evolve(fast_config(seeds=seed, node_id="b"), secret_keys=(KEY_A,))
        plain = fast_config(seeds=seed, node_id="plain")
        wrong = attrs.evolve(fast_config(seeds=seed, node_id="wrong"), secret_keys=(KEY_B,))
        async with (
            open_node(member, transport=network.transport()) as second,
            open_node(plain, transport=network.transport()) as outsider,
            open_node(wrong, transport=network.transport()) as impostor,
        ):
            await wait_until(lambda: all_see_each_other([first, second]), 30, "members meet")
            second.set("secret", "s3cr3t")
            await wait_until(
                lambda: first.get("secret", second.self_id) == "s3cr3t", 30, "sealed gossip"
            )
            await wait_until(
                lambda: (
                    first.stats.dropped["unencrypted"] > 0
                    and first.stats.dropped["unknown_key"] > 0
                ),
                30,
                "outsiders refused",
            )
            for node in (first, second):
                assert set(node.engine.state.nodes()) == {first.self_id, second.self_id}
            assert set(outsider.engine.state.nodes()) == {outsider.self_id}
            assert set(impostor.engine.state.nodes()) == {impostor.self_id}


@pytest.mark.trio
async def test_a_replayed_datagram_is_refused(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork(seed=32)
    config = attrs.evolve(fast_config(node_id="a"), secret_keys=(KEY_A,))
    async with open_node(config, transport=network.transport()) as node:
        spy = Sealer([KEY_A])
        attacker = network.bind(SocketAddress.parse("127.0.0.1:0"))
        captured = spy.seal(b"\x53\xb0\x00\x03")  # a sealed BadCluster, captured once
        await attacker.send(captured, node.gossip_addr)
        await attacker.send(captured, node.gossip_addr)
        await wait_until(lambda: node.stats.dropped["replay"] == 1, 5, "the replay refused")
        assert node.stats.dropped["auth_failed"] == 0


def test_a_plaintext_node_does_not_load_cryptography() -> None:
    # OpenSSL's bindings cost ~7 MiB of RSS per node; only sealing needs them.
    probe = (
        "import sys, gossip_tui.node, gossip_tui.api, gossip_tui.cli; "
        "print('cryptography' in sys.modules)"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "False"
    Sealer([b"k" * 32])  # and sealing still finds it
    assert "cryptography" in sys.modules
