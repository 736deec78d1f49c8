"""A V1 digest too large in chitchat's own encoding is compacted: the same entries, in an
order and at a level that compress better, still a valid block stream chitchat decodes."""

from __future__ import annotations

import random

from gossip_tui.core.codec import (
    BLOCK_THRESHOLD,
    COMPACT_DIGEST_ABOVE,
    MAX_DATAGRAM_SIZE,
    PROTOCOL_V1,
    _block_stream,
    _digest_entries,
    _read_stream,
    decode,
    encode,
    encode_digest,
)
from gossip_tui.core.messages import Digest, NodeDigest, Syn
from gossip_tui.core.models import NodeId
from gossip_tui.core.simulation import chitchat_test_name, short_name, sim_address


def _digest(size: int, name_of: object) -> Digest:
    assert callable(name_of)
    rng = random.Random(size)
    return Digest(
        {
            NodeId(name_of(i), 1, sim_address(i)): NodeDigest(
                rng.randrange(100_000, 5_000_000), 0, rng.randrange(5, 500)
            )
            for i in range(size)
        }
    )


def _chitchat_encoding(digest: Digest) -> bytes:
    """What chitchat sends: entries in id order, zstd's default level."""
    return _block_stream(b"".join(_digest_entries(digest)))


def test_a_5000_node_digest_of_chitchat_test_ids_fits_once_compacted() -> None:
    digest = _digest(5_000, chitchat_test_name)
    assert len(_chitchat_encoding(digest)) > MAX_DATAGRAM_SIZE
    syn = Syn("sim", digest, protocol_version=PROTOCOL_V1)
    datagram = encode(syn)
    assert len(datagram) <= MAX_DATAGRAM_SIZE
    assert decode(datagram) == syn
    # Still chitchat's framing: no block decompresses past the 16 KiB threshold.
    wire = encode_digest(digest, PROTOCOL_V1)
    stream, end = _read_stream(wire, 0)
    assert end == len(wire)
    assert len(stream) == len(b"".join(_digest_entries(digest)))
    pos, blocks = 0, 0
    while wire[pos] != 0:
        blocks += 1
        pos += 3 + int.from_bytes(wire[pos + 1 : pos + 3], "little")
    assert blocks == -(-len(stream) // BLOCK_THRESHOLD)


def test_a_digest_that_fits_is_sent_as_chitchat_sends_it() -> None:
    digest = _digest(3_000, chitchat_test_name)
    expected = _chitchat_encoding(digest)
    assert len(expected) <= COMPACT_DIGEST_ABOVE
    assert encode_digest(digest, PROTOCOL_V1) == expected


def test_a_digest_far_past_any_gain_is_not_recompressed() -> None:
    # Nothing compacting does brings it under the limit: chitchat's encoding, no CPU spent.
    digest = _digest(8_000, chitchat_test_name)
    assert encode_digest(digest, PROTOCOL_V1) == _chitchat_encoding(digest)


def test_compacting_never_makes_a_digest_larger() -> None:
    # Short ids compress best in id order: the reordering is not kept when it is worse.
    digest = _digest(6_700, short_name)
    default = _chitchat_encoding(digest)
    assert len(default) > COMPACT_DIGEST_ABOVE
    assert len(encode_digest(digest, PROTOCOL_V1)) <= len(default)
