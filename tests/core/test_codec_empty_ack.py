"""The empty Ack, a third of an idle node's datagrams, decodes to one shared message per
version without a walk of its block stream (codec._EMPTY_ACKS), equal to what a parse
gives; any other Ack is parsed."""

from __future__ import annotations

import pytest

from gossip_tui.core import codec
from gossip_tui.core.codec import PROTOCOL_VERSIONS, decode, encode
from gossip_tui.core.messages import Ack, Delta


@pytest.mark.parametrize("version", PROTOCOL_VERSIONS)
def test_an_empty_ack_is_one_shared_message_that_reads_no_stream(
    version: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = encode(Ack(Delta(), protocol_version=version))
    parsed = decode(wire + b"\x00")  # a trailing byte: the parse, which chitchat ignores
    assert parsed == Ack(Delta(), protocol_version=version)

    def no_stream(data: bytes, pos: int) -> tuple[bytes, int]:
        raise AssertionError("the empty Ack's stream was walked")

    monkeypatch.setattr(codec, "_read_stream", no_stream)
    shared = decode(wire)
    assert shared == parsed
    assert decode(bytearray(wire)) is shared


def test_an_ack_that_is_not_the_empty_one_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    walked: list[int] = []
    read_stream = codec._read_stream

    def counted(data: bytes, pos: int) -> tuple[bytes, int]:
        walked.append(pos)
        return read_stream(data, pos)

    monkeypatch.setattr(codec, "_read_stream", counted)
    wire = encode(Ack(Delta()))
    assert decode(wire + b"\x00") == Ack(Delta())
    assert walked == [4]
