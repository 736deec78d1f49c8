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
    DatagramSocket,
    Node,
    NodeConfig,
    SecretKeyError,
    UdpTransport,
    generate_key,
    open_node,
    parse_key,
)
from gossip_tui.node._crypto import OVERHEAD, Misaddressed, Sealer
from gossip_tui.testing import MemoryNetwork

from .helpers import all_see_each_other, fast_config, wait_until

REPO = Path(__file__).resolve().parents[2]

KEY_A = parse_key(generate_key())
KEY_B = parse_key(generate_key())


class _Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


ADDR_A = SocketAddress.parse("127.0.0.1:7001")
ADDR_B = SocketAddress.parse("127.0.0.1:7002")
ADDR_C = SocketAddress.parse("127.0.0.1:7003")


def _reason(sealer: Sealer, datagram: bytes, source: SocketAddress = ADDR_A) -> str:
    with pytest.raises(DatagramRejected) as info:
        sealer.open(datagram, source)
    return info.value.reason


def _deliver(receiver: Sealer, datagram: bytes, source: SocketAddress) -> bytes:
    opened = receiver.open(datagram, source)
    assert opened.payload is not None and opened.answer is None
    return opened.payload


def _introduce(
    sender: Sealer, sender_addr: SocketAddress, receiver: Sealer, receiver_addr: SocketAddress
) -> None:
    """The cold-start handshake, as the sockets play it: refused, hello, sent again."""
    with pytest.raises(Misaddressed) as refused:
        receiver.open(sender.seal(b"first", receiver_addr), sender_addr)
    assert refused.value.reason == "unaddressed" and refused.value.answer is not None
    resent = sender.open(refused.value.answer, receiver_addr)
    assert resent.payload is None and resent.answer is not None
    assert _deliver(receiver, resent.answer, sender_addr) == b"first"


def test_seal_and_open() -> None:
    clock = _Clock()
    sender, receiver = Sealer([KEY_A], clock=clock), Sealer([KEY_A], clock=clock)
    _introduce(sender, ADDR_A, receiver, ADDR_B)
    sealed = sender.seal(b"hello", ADDR_B)
    assert len(sealed) == len(b"hello") + OVERHEAD
    assert b"hello" not in sealed
    assert _deliver(receiver, sealed, ADDR_A) == b"hello"
    # The receiver learnt the sender too: its answers go straight through.
    assert _deliver(sender, receiver.seal(b"answer", ADDR_A), ADDR_B) == b"answer"


def test_a_hello_is_small_and_never_draws_a_hello() -> None:
    clock = _Clock()
    sender, receiver = Sealer([KEY_A], clock=clock), Sealer([KEY_A], clock=clock)
    with pytest.raises(Misaddressed) as refused:
        receiver.open(sender.seal(b"x", ADDR_B), ADDR_A)
    hello = refused.value.answer
    assert hello is not None and len(hello) == OVERHEAD
    with pytest.raises(Misaddressed) as again:
        Sealer([KEY_A], clock=clock).open(hello, ADDR_B)  # a hello for someone else
    assert again.value.reason == "misaddressed" and again.value.answer is None


def test_refusals_say_why() -> None:
    clock = _Clock()
    sender, receiver = Sealer([KEY_A], clock=clock), Sealer([KEY_A], clock=clock)
    _introduce(sender, ADDR_A, receiver, ADDR_B)
    sealed = sender.seal(b"payload", ADDR_B)
    assert _deliver(receiver, sealed, ADDR_A) == b"payload"
    assert _reason(receiver, sealed) == "replay"
    tampered = bytearray(sender.seal(b"payload", ADDR_B))
    tampered[-1] ^= 1
    assert _reason(receiver, bytes(tampered)) == "auth_failed"
    readdressed = bytearray(sender.seal(b"payload", ADDR_B))
    readdressed[OVERHEAD - 8 - 16 - 1] ^= 1  # the recipient is authenticated too
    assert _reason(receiver, bytes(readdressed)) == "auth_failed"
    assert _reason(receiver, b"\x53\xb0\x00\x03") == "unencrypted"
    assert _reason(Sealer([KEY_B], clock=clock), sender.seal(b"x", ADDR_B)) == "unknown_key"
    old = sender.seal(b"old", ADDR_B)
    clock.now += 121
    assert _reason(receiver, old) == "stale"


def test_replay_window_accepts_reordering_once() -> None:
    clock = _Clock()
    sender, receiver = Sealer([KEY_A], clock=clock), Sealer([KEY_A], clock=clock)
    _introduce(sender, ADDR_A, receiver, ADDR_B)
    sealed = [sender.seal(bytes([i % 256]), ADDR_B) for i in range(2000)]
    assert _deliver(receiver, sealed[1500], ADDR_A) == bytes([1500 % 256])
    # late but within the window
    assert _deliver(receiver, sealed[1000], ADDR_A) == bytes([1000 % 256])
    assert _reason(receiver, sealed[1000]) == "replay"
    assert _reason(receiver, sealed[100]) == "replay"  # too old to tell: refused
    assert _deliver(receiver, sealed[1999], ADDR_A) == bytes([1999 % 256])


def test_traffic_sealed_for_another_node_is_refused() -> None:
    clock = _Clock()
    a, b, c = (Sealer([KEY_A], clock=clock) for _ in range(3))
    _introduce(b, ADDR_B, a, ADDR_A)
    _introduce(b, ADDR_B, c, ADDR_C)
    captured = [b.seal(b"for c %d" % i, ADDR_C) for i in range(10)]
    for datagram in captured:
        assert _deliver(c, datagram, ADDR_B).startswith(b"for c")
    # Replayed to A, from B's address or any other: A knows B's session, and still refuses.
    for datagram in captured:
        assert _reason(a, datagram, ADDR_B) == "misaddressed"
        assert _reason(a, datagram, ADDR_C) == "replay"  # and draws no second hello
    assert _deliver(a, b.seal(b"for a", ADDR_A), ADDR_B) == b"for a"


def test_traffic_from_before_a_restart_is_refused() -> None:
    clock = _Clock()
    a, b = Sealer([KEY_A], clock=clock), Sealer([KEY_A], clock=clock)
    _introduce(b, ADDR_B, a, ADDR_A)
    captured = [b.seal(b"before %d" % i, ADDR_A) for i in range(10)]
    for datagram in captured:
        assert _deliver(a, datagram, ADDR_B).startswith(b"before")
    restarted = Sealer([KEY_A], clock=clock)
    clock.now += 1  # well within max_age: the clock alone would let these in
    for datagram in captured:
        assert _reason(restarted, datagram, ADDR_B) == "misaddressed"
    # B, still addressing the old run, is told the new session and gets through.
    with pytest.raises(Misaddressed) as refused:
        restarted.open(b.seal(b"after", ADDR_A), ADDR_B)
    assert refused.value.answer is not None
    resent = b.open(refused.value.answer, ADDR_A)
    assert resent.answer is not None
    assert _deliver(restarted, resent.answer, ADDR_B) == b"after"


def test_rotation_sends_with_the_first_key_and_opens_with_any() -> None:
    clock = _Clock()
    rotated = Sealer([KEY_B, KEY_A], clock=clock)
    old = Sealer([KEY_A], clock=clock)
    with pytest.raises(Misaddressed) as refused:  # opened with the second key
        rotated.open(old.seal(b"from old", ADDR_B), ADDR_A)
    assert refused.value.answer is not None
    assert _reason(old, refused.value.answer, ADDR_B) == "unknown_key"  # sent with the first
    both = Sealer([KEY_A, KEY_B], clock=clock)
    _introduce(rotated, ADDR_B, both, ADDR_C)
    assert _deliver(both, rotated.seal(b"x", ADDR_C), ADDR_B) == b"x"


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
        # A sealed BadCluster, captured once: the first copy only draws a hello.
        captured = spy.seal(b"\x53\xb0\x00\x03", node.gossip_addr)
        await attacker.send(captured, node.gossip_addr)
        await attacker.send(captured, node.gossip_addr)
        await wait_until(lambda: node.stats.dropped["replay"] == 1, 5, "the replay refused")
        assert node.stats.dropped["unaddressed"] == 1
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


class _RecordingSocket:
    """A UDP socket that keeps a copy of what it sends (sealed, since it sits below the
    sealing): the attacker's capture."""

    def __init__(self, inner: DatagramSocket, sent: list[tuple[bytes, SocketAddress]]) -> None:
        self._inner = inner
        self._sent = sent

    @property
    def local_address(self) -> SocketAddress:
        return self._inner.local_address

    async def send(self, data: bytes, addr: SocketAddress) -> None:
        self._sent.append((data, addr))
        await self._inner.send(data, addr)

    async def recv(self) -> tuple[bytes, SocketAddress]:
        return await self._inner.recv()

    def close(self) -> None:
        self._inner.close()


class _RecordingUdp:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, SocketAddress]] = []

    async def bind(self, addr: SocketAddress) -> DatagramSocket:
        return _RecordingSocket(await UdpTransport().bind(addr), self.sent)


def _sealed(node_id: str, seeds: tuple[str, ...] = (), listen: str = "127.0.0.1:0") -> NodeConfig:
    return attrs.evolve(fast_config(listen, seeds=seeds, node_id=node_id), secret_keys=(KEY_A,))


def _refused(node: Node) -> int:
    return sum(node.stats.dropped[reason] for reason in ("unaddressed", "misaddressed", "replay"))


@pytest.mark.trio
async def test_udp_replays_to_another_node_are_refused_and_counted() -> None:
    recorder = _RecordingUdp()
    async with (
        open_node(_sealed("a")) as a,
        open_node(_sealed("c", seeds=(str(a.gossip_addr),))) as c,
        open_node(_sealed("b", seeds=(str(c.gossip_addr),)), transport=recorder) as b,
    ):
        nodes = [a, b, c]
        await wait_until(lambda: all_see_each_other(nodes), 30, "sealed nodes converge")
        b.set("k", "v")
        await wait_until(lambda: a.get("k", b.self_id) == "v", 30, "b's key reaches a")
        b_to_c = [data for data, addr in recorder.sent if addr == c.gossip_addr]
        assert b_to_c
        before_in, before_refused = a.stats.datagrams_in, _refused(a)
        attacker = await UdpTransport().bind(SocketAddress.parse("127.0.0.1:0"))
        try:
            for data in b_to_c:
                await attacker.send(data, a.gossip_addr)
            await wait_until(
                lambda: _refused(a) - before_refused >= len(b_to_c), 30, "every replay refused"
            )
        finally:
            attacker.close()
        assert a.stats.datagrams_in - before_in >= len(b_to_c)
        # a holds of b only what b itself published since: b's own keys (its view summary)
        # may rise meanwhile under load, so a's copy is compared with b's, not with a
        # snapshot taken before the replays.
        b_at_a = a.engine.state.node_state(b.self_id)
        b_own = b.engine.state.node_state(b.self_id)
        assert b_at_a is not None and b_own is not None
        assert b_at_a.max_version <= b_own.max_version
        assert a.get("k", b.self_id) == "v"
        await wait_until(lambda: all_see_each_other(nodes), 30, "still converged")


@pytest.mark.trio
async def test_udp_traffic_from_before_a_restart_is_refused_after() -> None:
    recorder = _RecordingUdp()
    async with open_node(_sealed("b"), transport=recorder) as b:
        first = _sealed("a", seeds=(str(b.gossip_addr),))
        async with open_node(first) as a:
            await wait_until(lambda: all_see_each_other([a, b]), 30, "sealed nodes meet")
            a_addr = a.gossip_addr
        b_to_a = [data for data, addr in recorder.sent if addr == a_addr]
        assert b_to_a
        # The same address and port, a new run.
        again = attrs.evolve(_sealed("a", seeds=(str(b.gossip_addr),), listen=str(a_addr)))
        again = attrs.evolve(again, generation=2)
        async with open_node(again) as restarted:
            attacker = await UdpTransport().bind(SocketAddress.parse("127.0.0.1:0"))
            try:
                for data in b_to_a:
                    await attacker.send(data, a_addr)
                await wait_until(
                    lambda: _refused(restarted) >= len(b_to_a), 30, "the old traffic refused"
                )
            finally:
                attacker.close()
            # And the two interoperate after the restart.
            restarted.set("run", "2")
            await wait_until(
                lambda: (
                    b.get("run", restarted.self_id) == "2" and all_see_each_other([restarted, b])
                ),
                30,
                "the restarted node rejoins",
            )
