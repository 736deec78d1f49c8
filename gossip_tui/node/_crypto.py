"""Opt-in authenticated encryption of every datagram (ChaCha20-Poly1305).

A sealed datagram is::

    magic "GTE1" | key id (4) | nonce (12) | ChaCha20-Poly1305(timestamp_ms u64 | payload)

The key id (the first bytes of SHA-256 of the key) lets a receiver holding several keys
(during a rotation) pick the right one; the first configured key is the one we send with.
The nonce is a per-process random session id (4 bytes) and a counter (8 bytes), so a
nonce never repeats under one key. Replays are refused with a sliding window per sender
session, and datagrams sealed more than ``max_age`` seconds away from our clock are
refused, so a datagram recorded before our own restart cannot be replayed either.

Plaintext stays the default, so that chitchat peers can still join a cluster.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

from gossip_tui.core.keys import parse_key_lines
from gossip_tui.core.models import SocketAddress

from ._transport import DatagramRejected, DatagramSocket, Transport

MAGIC = b"GTE1"
_KEY_ID_LEN = 4
_NONCE_LEN = 12
_TAG_LEN = 16
_TIMESTAMP = struct.Struct("<Q")
_COUNTER = struct.Struct(">Q")
_HEADER_LEN = len(MAGIC) + _KEY_ID_LEN + _NONCE_LEN
#: Bytes a sealed datagram adds to its payload.
OVERHEAD = _HEADER_LEN + _TIMESTAMP.size + _TAG_LEN
_WINDOW = 1024
_MAX_SESSIONS = 4096


def read_key_file(path: Path) -> list[bytes]:
    """Keys from a file, as :func:`gossip_tui.core.keys.parse_key_lines` reads them."""
    return parse_key_lines(path.read_text(encoding="utf-8"), str(path))


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"gossip-tui key id\x00" + key).digest()[:_KEY_ID_LEN]


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
        # Imported here: OpenSSL's bindings cost a plaintext node (the default) ~7 MiB.
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

        self._invalid_tag = InvalidTag
        self._send_key_id = _key_id(keys[0])
        self._ciphers = {_key_id(key): ChaCha20Poly1305(key) for key in keys}
        self._session = session if session is not None else os.urandom(4)
        self._counter = 0
        self._max_age = max_age
        self._clock = clock
        self._windows: OrderedDict[bytes, _ReplayWindow] = OrderedDict()

    def seal(self, payload: bytes) -> bytes:
        self._counter += 1
        nonce = self._session + _COUNTER.pack(self._counter)
        header = MAGIC + self._send_key_id + nonce
        stamp = _TIMESTAMP.pack(int(self._clock() * 1000))
        sealed = self._ciphers[self._send_key_id].encrypt(nonce, stamp + payload, header)
        return header + sealed

    def open(self, datagram: bytes) -> bytes:
        """The payload, or :class:`DatagramRejected` saying why not."""
        if len(datagram) < OVERHEAD or not datagram.startswith(MAGIC):
            raise DatagramRejected("unencrypted")
        key_id = datagram[len(MAGIC) : len(MAGIC) + _KEY_ID_LEN]
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise DatagramRejected("unknown_key")
        nonce = datagram[len(MAGIC) + _KEY_ID_LEN : _HEADER_LEN]
        try:
            plain = cipher.decrypt(nonce, datagram[_HEADER_LEN:], datagram[:_HEADER_LEN])
        except self._invalid_tag:
            raise DatagramRejected("auth_failed") from None
        (stamp_ms,) = _TIMESTAMP.unpack_from(plain)
        if abs(self._clock() - stamp_ms / 1000) > self._max_age:
            raise DatagramRejected("stale")
        session, (counter,) = nonce[:4], _COUNTER.unpack(nonce[4:])
        window = self._windows.get(session)
        if window is None:
            window = self._windows[session] = _ReplayWindow()
            while len(self._windows) > _MAX_SESSIONS:
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(session)
        if not window.check_and_mark(counter):
            raise DatagramRejected("replay")
        return plain[_TIMESTAMP.size :]


class SealedSocket:
    def __init__(self, inner: DatagramSocket, sealer: Sealer) -> None:
        self._inner = inner
        self._sealer = sealer

    @property
    def local_address(self) -> SocketAddress:
        return self._inner.local_address

    async def send(self, data: bytes, addr: SocketAddress) -> None:
        await self._inner.send(self._sealer.seal(data), addr)

    async def recv(self) -> tuple[bytes, SocketAddress]:
        data, source = await self._inner.recv()
        return self._sealer.open(data), source

    def close(self) -> None:
        self._inner.close()


class SealedTransport:
    """Wraps another transport so that every datagram is sealed with the keys."""

    def __init__(self, inner: Transport, keys: Sequence[bytes]) -> None:
        self._inner = inner
        self._keys = tuple(keys)

    async def bind(self, addr: SocketAddress) -> SealedSocket:
        return SealedSocket(await self._inner.bind(addr), Sealer(self._keys))
