"""One datagram in, a reply and events out: the receive path every caller shares (the
node's UDP loop, the simulation, the fuzzers), so that what is tested is what runs.

Pure and synchronous: the caller brings the time, says how large a reply may be, sends
the reply and publishes the events.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import attrs

from .codec import DecodeError, decode
from .engine import GossipEngine, ReceiveStep
from .events import NodeEvent, step_events
from .fields_repr import fields_repr
from .messages import Message


@attrs.frozen
class Received:
    """What one datagram did: dropped undecoded (``dropped`` says why), or handled."""

    __repr__ = fields_repr

    message: Message | None
    # Why the decoder refused the datagram, for a dropped one.
    decode_error: DecodeError | None
    step: ReceiveStep | None
    # The cap the reply was held to (None: the datagram's full size).
    reply_budget: int | None
    events: tuple[NodeEvent, ...]

    @property
    def dropped(self) -> str | None:
        """The drop reason ("malformed", "decompression_bomb"...) of a dropped datagram."""
        return None if self.decode_error is None else self.decode_error.reason

    @property
    def reply(self) -> Message | None:
        return None if self.step is None else self.step.reply

    def drops(self) -> Counter[str]:
        """Input refused by this datagram, by reason: the decoder's drop or the engine's
        refusals. Added to the node's ``stats.dropped``."""
        if self.decode_error is not None:
            return Counter((self.decode_error.reason,))
        assert self.step is not None
        return Counter(self.step.refusals)


def receive_datagram(
    engine: GossipEngine,
    data: bytes,
    now: float,
    reply_budget: Callable[[Message], int | None] | None = None,
) -> Received:
    """Decode ``data`` and hand the message to ``engine``. A datagram the decoder refuses
    changes nothing and comes back with its reason. ``reply_budget`` caps the reply by
    message (see :meth:`GossipEngine.handle_message`); an exception from the engine (a
    bug) propagates to the caller, which must survive it."""
    try:
        message = decode(data)
    except DecodeError as exc:
        return Received(None, exc, None, None, ())
    return receive_message(engine, message, now, reply_budget)


def receive_message(
    engine: GossipEngine,
    message: Message,
    now: float,
    reply_budget: Callable[[Message], int | None] | None = None,
) -> Received:
    """:func:`receive_datagram` past the decoder, for a caller that decoded the datagram
    already (the simulation decodes a Syn sent to several targets once)."""
    budget = None if reply_budget is None else reply_budget(message)
    step = engine.handle_message(message, now, reply_budget=budget)
    return Received(message, None, step, budget, tuple(step_events(step)))
