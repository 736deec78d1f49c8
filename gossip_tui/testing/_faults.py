"""The fault model: what a link does to a datagram, decided in one place.

The in-memory network and the UDP fault proxy both ask :func:`decide_fate`, with their own
seeded RNG, so a fault means the same thing on either and a seeded run repeats exactly.
"""

from __future__ import annotations

import random

import attrs


@attrs.define
class LinkFaults:
    """What happens to datagrams on one directed link.

    Mutable on purpose: a test or the fault script turns a knob of the default faults
    (``network.default_faults.loss = 0.2``) and the next datagram sees it.
    """

    loss: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    duplicate: float = 0.0
    corrupt: float = 0.0
    blocked: bool = False


@attrs.frozen
class Delivery:
    """One copy of a datagram that goes on, ``delay`` seconds from now."""

    delay: float
    payload: bytes
    corrupted: bool = False


@attrs.frozen
class Fate:
    """What becomes of one datagram: ``dropped`` says why none goes on ("blocked" or
    "loss"), else ``deliveries`` holds one copy, or two when ``duplicated``."""

    deliveries: tuple[Delivery, ...]
    dropped: str | None = None
    duplicated: bool = False


BLOCKED = Fate((), dropped="blocked")
LOST = Fate((), dropped="loss")


def flip_bit(rng: random.Random, data: bytes) -> bytes:
    """``data`` with one random bit inverted (the byte is drawn first, then the bit)."""
    mutable = bytearray(data)
    mutable[rng.randrange(len(mutable))] ^= 1 << rng.randrange(8)
    return bytes(mutable)


def decide_fate(faults: LinkFaults, rng: random.Random, data: bytes) -> Fate:
    """Drop, duplicate, corrupt and delay one datagram as ``faults`` say.

    The RNG is drawn only for the faults that are set, always in this order: loss, then
    duplication, then per copy corruption (a bit flip) and jitter. Changing the order
    changes every seeded run, in memory and through the proxy alike.
    """
    if faults.blocked:
        return BLOCKED
    if faults.loss and rng.random() < faults.loss:
        return LOST
    duplicated = bool(faults.duplicate) and rng.random() < faults.duplicate
    deliveries = []
    for _ in range(2 if duplicated else 1):
        payload = data
        corrupted = bool(faults.corrupt) and bool(payload) and rng.random() < faults.corrupt
        if corrupted:
            payload = flip_bit(rng, payload)
        latency = faults.delay + (rng.uniform(0, faults.jitter) if faults.jitter else 0.0)
        deliveries.append(Delivery(latency, payload, corrupted))
    return Fate(tuple(deliveries), duplicated=duplicated)
