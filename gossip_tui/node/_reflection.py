"""Which peer addresses have shown that they receive what we send them.

A UDP source address is easy to forge: a 15-byte Syn with a victim's address would draw a
whole SynAck (up to ~64 KB) towards the victim. Until an address has shown that it
receives our datagrams, the replies it draws are held to a small multiple of the datagram
that drew them. An address shows it with an answer to something we sent it: a SynAck to
our recent Syn, or an Ack to our recent SynAck. (An attacker who forges that answer too,
blind, can still win a full reply per handshake; a blind one-datagram reflector cannot.)
"""

from __future__ import annotations

from collections import OrderedDict

from gossip_tui.core.messages import Ack, Message, Syn, SynAck
from gossip_tui.core.models import SocketAddress

# A reply to an address not yet shown to receive is at most this many times the datagram
# that drew it (QUIC's rule for unvalidated addresses). The one thing the engine adds past
# it is our own digest entry, so that a real peer learns us: a 15-byte Syn draws a SynAck
# of about 60 bytes, where a floor of one unfragmented datagram let it draw 80 times its
# size. A real peer's Syn carries its own digest, and its Ack then earns full replies.
REPLY_FACTOR = 3
# How long a Syn or SynAck we sent waits for its answer to count.
ANSWER_WINDOW = 30.0
# How long an address stays trusted after its last answer; peers in touch answer every few
# rounds.
TRUSTED_FOR = 600.0
# Addresses remembered per table: a flood of sources must not grow memory.
CAPACITY = 4_096


def _note(table: OrderedDict[SocketAddress, float], addr: SocketAddress, now: float) -> None:
    table[addr] = now
    table.move_to_end(addr)
    while len(table) > CAPACITY:
        table.popitem(last=False)


def _within(
    table: OrderedDict[SocketAddress, float], addr: SocketAddress, now: float, period: float
) -> bool:
    since = table.get(addr)
    if since is None:
        return False
    if now - since > period:
        del table[addr]
        return False
    return True


class ReplyBudgets:
    """The reply budget for each incoming message, from what we sent and what came back."""

    def __init__(self) -> None:
        self._syn_sent: OrderedDict[SocketAddress, float] = OrderedDict()
        self._synack_sent: OrderedDict[SocketAddress, float] = OrderedDict()
        self._trusted: OrderedDict[SocketAddress, float] = OrderedDict()

    def sent(self, message: Message, addr: SocketAddress, now: float) -> None:
        if isinstance(message, Syn):
            self.sent_syn(addr, now)
        elif isinstance(message, SynAck):
            _note(self._synack_sent, addr, now)

    def sent_syn(self, addr: SocketAddress, now: float) -> None:
        _note(self._syn_sent, addr, now)

    def is_trusted(self, addr: SocketAddress, now: float) -> bool:
        return _within(self._trusted, addr, now, TRUSTED_FOR)

    def budget(self, message: Message, source: SocketAddress, size: int, now: float) -> int | None:
        """The most the reply to ``message`` (``size`` bytes from ``source``) may take;
        None when ``source`` has shown it receives (the datagram limit applies)."""
        awaiting = None
        if isinstance(message, SynAck):
            awaiting = self._syn_sent
        elif isinstance(message, Ack):
            awaiting = self._synack_sent
        if awaiting is not None and _within(awaiting, source, now, ANSWER_WINDOW):
            del awaiting[source]
            _note(self._trusted, source, now)
            return None
        if self.is_trusted(source, now):
            return None
        return REPLY_FACTOR * size
