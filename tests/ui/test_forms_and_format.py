"""The pure parts: key-form validation and how values and numbers read on screen."""

from __future__ import annotations

import base64
import json

import pytest

from gossip_tui.core.models import Liveness
from gossip_tui.node import MAX_KEY_VALUE_BYTES
from gossip_tui.ui._format import (
    STATUS_LABELS,
    STATUS_ORDER,
    STATUS_STYLES,
    decode_value,
    format_age,
    one_line,
    phi_style,
)
from gossip_tui.ui.screens.key_forms import MAX_KEY_BYTES, MAX_VALUE_BYTES, validate_entry


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("", "x", "must not be empty"),
        (" padded", "x", "start or end with spaces"),
        ("bell\x07", "x", "control character"),
        ("ok", "nul\x00", "control character"),
        ("k" * (MAX_KEY_BYTES + 1), "x", "keys are limited"),
        ("ok", "v" * (MAX_VALUE_BYTES + 1), "values are limited"),
        ("ok", "v" * MAX_KEY_VALUE_BYTES, "cannot fit in a gossip datagram"),
    ],
)
def test_validation_refuses(key: str, value: str, problem: str) -> None:
    message = validate_entry(key, value)
    assert message is not None and problem in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("role", "worker"),
        ("empty-value", ""),
        ("clé/ünïcode", "多字节"),
        ("multi", "line one\nline two\tand a tab"),
        ("k" * MAX_KEY_BYTES, "v" * MAX_VALUE_BYTES),
    ],
)
def test_validation_accepts(key: str, value: str) -> None:
    assert validate_entry(key, value) is None


def test_the_datagram_message_says_why() -> None:
    message = validate_entry("big", "x" * 70_000)
    assert message is not None
    assert "70,000 bytes" in message and "datagram" in message


def test_json_values_are_recognised_directly_and_in_base64() -> None:
    data = {"shards": [1, 2], "leader": True}
    direct = decode_value(json.dumps(data))
    assert direct.encoding == "json" and direct.data == data
    wrapped = decode_value(base64.b64encode(json.dumps(data).encode()).decode())
    assert wrapped.encoding == "base64 json" and wrapped.data == data
    assert decode_value("[1, 2, 3]").data == [1, 2, 3]


@pytest.mark.parametrize(
    "value",
    ["42", '"quoted"', "plain text", "{not json", "aGVsbG8=", "", "abcd", "ÿÿÿÿ"],
)
def test_other_values_stay_plain(value: str) -> None:
    assert decode_value(value).encoding is None


def test_phi_colours_follow_the_threshold() -> None:
    assert phi_style(None) == "dim"
    assert phi_style(0.5) == "green"
    assert phi_style(4.5) == "yellow"
    assert phi_style(7.5) == "bold red"
    assert phi_style(3.0, threshold=4.0) == "yellow"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.3, "now"), (5.9, "5s"), (95, "1m35s"), (4000, "1h06m"), (200_000, "2d")],
)
def test_ages(seconds: float | None, text: str) -> None:
    assert format_age(seconds) == text


def test_one_line_escapes_control_characters_and_cuts() -> None:
    assert one_line("a\nb") == "a\\nb"
    assert one_line("x" * 100, limit=10) == "x" * 9 + "…"


def test_every_liveness_has_a_label_a_style_and_a_rank() -> None:
    for liveness in Liveness:
        assert STATUS_LABELS[liveness] and liveness in STATUS_STYLES
        assert liveness in STATUS_ORDER
    assert STATUS_LABELS[Liveness.SCHEDULED_FOR_DELETION] == "deleting"
    assert STATUS_ORDER[Liveness.SELF] < STATUS_ORDER[Liveness.LIVE] < STATUS_ORDER[Liveness.DEAD]
