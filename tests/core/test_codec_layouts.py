"""A digest laid out as the last one decoded is cut at the same places (codec._LAYOUTS):
whatever came before, it decodes to what a parse from scratch gives, and fails the same
way when it is malformed."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossip_tui.core import codec
from gossip_tui.core.codec import PROTOCOL_V0, PROTOCOL_V1, DecodeError, decode, encode
from gossip_tui.core.messages import Digest, Message, NodeDigest, Syn
from gossip_tui.core.models import NodeId, SocketAddress


def _node(name: str, port: int, v6: bool = False) -> NodeId:
    ip = ipaddress.ip_address("::1" if v6 else "127.0.0.1")
    return NodeId(name, 1, SocketAddress(ip, port))


NODES = [_node(f"node-{i}", 10_000 + i, v6=i % 4 == 0) for i in range(12)]


def _syn(entries: dict[NodeId, NodeDigest], version: int = PROTOCOL_V0) -> bytes:
    return encode(Syn("c", Digest(entries), protocol_version=version))


@contextmanager
def _empty_caches() -> Iterator[None]:
    kept = codec._LAYOUTS.copy(), codec._ENTRIES_BY_WIRE.copy()
    codec._LAYOUTS.clear()
    codec._ENTRIES_BY_WIRE.clear()
    try:
        yield
    finally:
        codec._LAYOUTS.clear()
        codec._LAYOUTS.update(kept[0])
        codec._ENTRIES_BY_WIRE.clear()
        codec._ENTRIES_BY_WIRE.update(kept[1])


def _outcome(wire: bytes) -> Message | str:
    try:
        return decode(wire)
    except DecodeError as exc:
        return f"{type(exc).__name__}: {exc}"


def _from_scratch(wire: bytes) -> Message | str:
    with _empty_caches():
        return _outcome(wire)


@pytest.mark.parametrize("version", [PROTOCOL_V0, PROTOCOL_V1])
def test_a_digest_laid_out_as_the_last_decodes_as_from_scratch(version: int) -> None:
    base = {node: NodeDigest(5, 0, 3) for node in NODES}
    first = _syn(base, version)
    assert _outcome(first) == _from_scratch(first)
    # Same nodes, some heartbeats moved: the layout holds, the moved entries are new.
    moved = dict(base)
    moved[NODES[3]] = NodeDigest(6, 0, 3)
    moved[NODES[11]] = NodeDigest(9, 1, 4)
    # A node of another length in the middle, same count: the layout breaks there.
    renamed = dict(base)
    del renamed[NODES[5]]
    renamed[_node("node-5-with-a-much-longer-name", 10_005)] = NodeDigest(5, 0, 3)
    for entries in (moved, renamed, base, moved):
        wire = _syn(entries, version)
        decoded = _outcome(wire)
        assert decoded == _from_scratch(wire)
        assert isinstance(decoded, Syn) and dict(decoded.digest.nodes) == entries


@pytest.mark.parametrize("version", [PROTOCOL_V0, PROTOCOL_V1])
def test_a_digest_shorter_than_the_layout_decodes_as_from_scratch(version: int) -> None:
    # Same start and count as the layout kept, but a shorter name near the end: the
    # datagram ends before the layout does, so its entries cannot be cut by the layout's
    # struct (codec._Layout.cut) and are sliced and parsed as far as they go.
    base = {node: NodeDigest(5, 0, 3) for node in NODES}
    decode(_syn(base, version))
    shorter = dict(base)
    del shorter[NODES[-1]]
    shorter[_node("n", 10_011)] = NodeDigest(5, 0, 3)
    wire = _syn(shorter, version)
    decoded = _outcome(wire)
    assert decoded == _from_scratch(wire)
    assert isinstance(decoded, Syn) and dict(decoded.digest.nodes) == shorter


def test_a_malformed_digest_fails_the_same_way_with_a_layout_kept() -> None:
    entries = {node: NodeDigest(5, 0, 3) for node in NODES}
    wire = _syn(entries)
    decode(wire)
    truncated = wire[: len(wire) // 2]
    # The IP version byte of the fourth entry.
    entry_lengths = [len(codec.node_id_bytes(node)) + 24 for node in sorted(NODES)]
    fourth = 6 + sum(entry_lengths[:3])
    name_len = wire[fourth] | wire[fourth + 1] << 8
    bad_ip = bytearray(wire)
    bad_ip[fourth + 10 + name_len] = 7
    for broken in (truncated, bytes(bad_ip)):
        decode(wire)  # the layout is the good one's
        failed = _outcome(broken)
        assert isinstance(failed, str)
        assert failed == _from_scratch(broken)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sets(st.integers(0, len(NODES) - 1), max_size=len(NODES)),
            st.integers(0, 3),
            st.sampled_from([PROTOCOL_V0, PROTOCOL_V1]),
            st.one_of(st.none(), st.tuples(st.integers(0, 400), st.integers(0, 255))),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_any_sequence_of_digests_decodes_as_each_would_alone(
    steps: list[tuple[set[int], int, int, tuple[int, int] | None]],
) -> None:
    with _empty_caches():
        for members, heartbeat, version, flip in steps:
            entries = {NODES[i]: NodeDigest(heartbeat, 0, i) for i in sorted(members)}
            wire = _syn(entries, version)
            if flip is not None and version == PROTOCOL_V0:
                at, byte = flip
                at %= len(wire)
                wire = wire[:at] + bytes((byte,)) + wire[at + 1 :]
            assert _outcome(wire) == _from_scratch(wire)


@pytest.mark.parametrize("version", [PROTOCOL_V0, PROTOCOL_V1])
@pytest.mark.parametrize("moved_at", [[7], [0, 11], [1, 2, 4, 8], list(range(1, 12))])
def test_a_digest_with_some_entries_new_takes_each_where_it_lies(
    version: int, moved_at: list[int]
) -> None:
    # The new entries of a digest laid out as the last are picked out of the columns
    # read at once (codec._picker): one of them, a few, all but one.
    base = {node: NodeDigest(5, 0, 3) for node in NODES}
    decode(_syn(base, version))
    moved = dict(base)
    for at in moved_at:
        moved[NODES[at]] = NodeDigest(100 + at, at, 3 + at)
    wire = _syn(moved, version)
    decoded = _outcome(wire)
    assert isinstance(decoded, Syn) and dict(decoded.digest.nodes) == moved
    assert decoded == _from_scratch(wire)
    # Each entry's bytes kept beside it (what a state takes as its own entry) are its own.
    kept = decoded.digest.received_entries
    assert kept is not None
    assert [codec.node_id_bytes(node) for node in decoded.digest.nodes] == [
        entry[:-24] for entry in kept
    ]
    assert [
        (nd.heartbeat, nd.last_gc_version, nd.max_version) for nd in decoded.digest.nodes.values()
    ] == [codec._U64X3.unpack(entry[-24:]) for entry in kept]
    # Decoded again, every entry is one held: the same message.
    assert decode(wire) == decoded
