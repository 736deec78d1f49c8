"""Opt-in authenticated encryption of every datagram (ChaCha20-Poly1305).

A sealed datagram is::

    magic "GTE2" | key id (4) | nonce (12) | recipient (4)
        | ChaCha20-Poly1305(timestamp_ms u64 | payload)

with everything before the ciphertext authenticated. The key id (the first bytes of SHA-256
of the key) lets a receiver holding several keys (during a rotation) pick the right one; the
first configured key is the one we send with. The nonce is the sender's session (4 random
bytes drawn at start) and a counter (8 bytes), so a nonce never repeats under one key.

The recipient is the session of the node the datagram is meant for, as the sender learnt it
from that node's traffic. A node only takes datagrams addressed to its own session, so
traffic sealed for another node, or for an earlier run of this one, is refused: a replay
window per sender session alone cannot tell those apart. A sender that does not know the
peer's session yet (a cold start, or the peer restarted) gets a *hello* back: an empty
payload addressed to the sender, carrying the peer's session. The sender then seals its
last datagram for that peer again, correctly addressed. A hello never draws a hello, and it
is no larger than the datagram that drew it.

Replays of datagrams addressed to us are refused with a sliding window per sender session,
and datagrams sealed more than ``max_age`` seconds away from our clock are refused.

Plaintext stays the default, so that chitchat peers can still join a cluster.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

from gossip_tui.core.fields_repr import fields_repr
from gossip_tui.core.keys import parse_key_lines
from gossip_tui.core.models import SocketAddress

from ._transport import DatagramRejected, DatagramSocket, Transport

MAGIC = b"GTE2"
_KEY_ID_LEN = 4
_SESSION_LEN = 4
_NONCE_LEN = _SESSION_LEN + 8
_TAG_LEN = 16
_TIMESTAMP = struct.Struct("<Q")
_COUNTER = struct.Struct(">Q")
_NONCE_AT = len(MAGIC) + _KEY_ID_LEN
_RECIPIENT_AT = _NONCE_AT + _NONCE_LEN
_HEADER_LEN = _RECIPIENT_AT + _SESSION_LEN
#: Bytes a sealed datagram adds to its payload.
OVERHEAD = _HEADER_LEN + _TIMESTAMP.size + _TAG_LEN
# The recipient of a datagram sent before the peer's session is known.
UNKNOWN_SESSION = bytes(_SESSION_LEN)
_WINDOW = 1024
_MAX_SESSIONS = 4096
# Peers whose session we remember, by address.
_MAX_PEERS = 4096
# Destinations whose last payload we keep, to seal it again when a hello asks for it. Few:
# a hello comes within a round trip of the datagram that drew it.
_MAX_RESENDABLE = 256


def read_key_file(path: Path) -> list[bytes]:
    """Keys from a file, as :func:`gossip_tui.core.keys.parse_key_lines` reads them."""
    return parse_key_lines(path.read_text(encoding="utf-8"), str(path))


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"gossip-tui key id\x00" + key).digest()[:_KEY_ID_LEN]


def _new_session() -> bytes:
    while True:
        session = os.urandom(_SESSION_LEN)
        if session != UNKNOWN_SESSION:
            return session


def _remember(
    table: OrderedDict[SocketAddress, bytes], addr: SocketAddress, value: bytes, cap: int
) -> None:
    table[addr] = value
    table.move_to_end(addr)
    while len(table) > cap:
        table.popitem(last=False)


class _ReplayWindow:
    """Which of the last counters of one sender session were already seen."""

    __slots__ = ("highest", "seen")

    def __init__(self) -> None:
        self.highest = -1
        self.seen = 0  # bit i: counter (highest - i) was seen

    def check_and_mark(self, counter: int) -> bool:
        if counter > self.highest:
            shift = counter - self.highest
            self.seen = ((self.seen << shift) | 1) & ((1 << _WINDOW) - 1)
            self.highest = counter
            return True
        offset = self.highest - counter
        if offset >= _WINDOW or self.seen >> offset & 1:
            return False
        self.seen |= 1 << offset
        return True


@attrs.frozen
class Opened:
    """What an authentic datagram gives: a payload for the node, or nothing (a handshake),
    and perhaps a datagram to send back to its source."""

    __repr__ = fields_repr

    payload: bytes | None
    answer: bytes | None = None


class Misaddressed(DatagramRejected):
    """An authentic datagram sealed for another session; ``answer`` is our hello, if due."""

    def __init__(self, reason: str, answer: bytes | None) -> None:
        super().__init__(reason)
        self.answer = answer


class Sealer:
    """Seals and opens datagrams with a set of keys; pure apart from randomness and the
    clock, both of which can be passed in."""

    def __init__(
        self,
        keys: Sequence[bytes],
        *,
        max_age: float = 120.0,
        clock: Callable[[], float] = time.time,
        session: bytes | None = None,
    ) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        if session is not None and (len(session) != _SESSION_LEN or session == UNKNOWN_SESSION):
            raise ValueError(f"a session is {_SESSION_LEN} bytes, not all zero")
        # Imported here: OpenSSL's bindings cost a plaintext node (the default) ~7 MiB.
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

        self._invalid_tag = InvalidTag
        self._send_key_id = _key_id(keys[0])
        self._ciphers = {_key_id(key): ChaCha20Poly1305(key) for key in keys}
        self.session = session if session is not None else _new_session()
        self._counter = 0
        self._max_age = max_age
        self._clock = clock
        self._windows: OrderedDict[bytes, _ReplayWindow] = OrderedDict()
        self._peer_sessions: OrderedDict[SocketAddress, bytes] = OrderedDict()
        self._resendable: OrderedDict[SocketAddress, bytes] = OrderedDict()

    def peer_session(self, addr: SocketAddress) -> bytes:
        """The session we address datagrams for ``addr`` to (UNKNOWN_SESSION if none yet)."""
        return self._peer_sessions.get(addr, UNKNOWN_SESSION)

    def _seal_for(self, payload: bytes, recipient: bytes) -> bytes:
        self._counter += 1
        nonce = self.session + _COUNTER.pack(self._counter)
        header = MAGIC + self._send_key_id + nonce + recipient
        stamp = _TIMESTAMP.pack(int(self._clock() * 1000))
        sealed = self._ciphers[self._send_key_id].encrypt(nonce, stamp + payload, header)
        return header + sealed

    def seal(self, payload: bytes, destination: SocketAddress) -> bytes:
        """``payload`` sealed for the node at ``destination``. Kept until the next one for
        the same destination, in case that node asks for it again (see the module doc)."""
        if not payload:
            raise ValueError("an empty payload is a hello; gossip always has a header")
        _remember(self._resendable, destination, payload, _MAX_RESENDABLE)
        return self._seal_for(payload, self.peer_session(destination))

    def open(self, datagram: bytes, source: SocketAddress) -> Opened:
        """The payload (or a handshake's answer), or :class:`DatagramRejected` saying why not."""
        if len(datagram) < OVERHEAD or not datagram.startswith(MAGIC):
            raise DatagramRejected("unencrypted")
        key_id = datagram[len(MAGIC) : _NONCE_AT]
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise DatagramRejected("unknown_key")
        nonce = datagram[_NONCE_AT:_RECIPIENT_AT]
        try:
            plain = cipher.decrypt(nonce, datagram[_HEADER_LEN:], datagram[:_HEADER_LEN])
        except self._invalid_tag:
            raise DatagramRejected("auth_failed") from None
        (stamp_ms,) = _TIMESTAMP.unpack_from(plain)
        if abs(self._clock() - stamp_ms / 1000) > self._max_age:
            raise DatagramRejected("stale")
        sender, (counter,) = nonce[:_SESSION_LEN], _COUNTER.unpack(nonce[_SESSION_LEN:])
        # Every authentic datagram goes through the window, addressed to us or not: a
        # counter is used once by its sender, so marking a misaddressed one costs nothing,
        # and a replayed one then draws no second hello.
        if not self._window(sender).check_and_mark(counter):
            raise DatagramRejected("replay")
        payload = plain[_TIMESTAMP.size :]
        recipient = datagram[_RECIPIENT_AT:_HEADER_LEN]
        if recipient != self.session:
            if not payload:
                raise Misaddressed("misaddressed", None)  # a hello never draws a hello
            reason = "unaddressed" if recipient == UNKNOWN_SESSION else "misaddressed"
            # Empty, so never larger than the datagram that drew it.
            raise Misaddressed(reason, self._seal_for(b"", sender))
        # Addressed to this run of ours, and fresh: the sender's session is current.
        _remember(self._peer_sessions, source, sender, _MAX_PEERS)
        if payload:
            return Opened(payload)
        # A hello: the peer now knows how to reach us, and we it; send what it refused again.
        last = self._resendable.pop(source, None)
        return Opened(None, None if last is None else self._seal_for(last, sender))

    def _window(self, sender: bytes) -> _ReplayWindow:
        window = self._windows.get(sender)
        if window is None:
            window = self._windows[sender] = _ReplayWindow()
            while len(self._windows) > _MAX_SESSIONS:
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(sender)
        return window


class SealedSocket:
    def __init__(self, inner: DatagramSocket, sealer: Sealer) -> None:
        self._inner = inner
        self._sealer = sealer

    @property
    def local_address(self) -> SocketAddress:
        return self._inner.local_address

    async def send(self, data: bytes, addr: SocketAddress) -> None:
        await self._inner.send(self._sealer.seal(data, addr), addr)

    async def _answer(self, answer: bytes | None, source: SocketAddress) -> None:
        if answer is None:
            return
        # On failure the peer tries again; a vanished one is the failure detector's business.
        with contextlib.suppress(OSError):
            await self._inner.send(answer, source)

    async def recv(self) -> tuple[bytes, SocketAddress]:
        while True:
            data, source = await self._inner.recv()
            try:
                opened = self._sealer.open(data, source)
            except Misaddressed as refused:
                await self._answer(refused.answer, source)
                raise
            await self._answer(opened.answer, source)
            if opened.payload is not None:
                return opened.payload, source
            # A handshake, handled here: nothing for the node.

    def close(self) -> None:
        self._inner.close()


class SealedTransport:
    """Wraps another transport so that every datagram is sealed with the keys."""

    def __init__(self, inner: Transport, keys: Sequence[bytes]) -> None:
        self._inner = inner
        self._keys = tuple(keys)

    async def bind(self, addr: SocketAddress) -> SealedSocket:
        return SealedSocket(await self._inner.bind(addr), Sealer(self._keys))
