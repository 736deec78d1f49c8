"""Per-key expiry in the core, driven by a manual clock (time is a parameter)."""

from __future__ import annotations

import math

import pytest

from gossip_tui.core.expiry import (
    MAX_TTL_SECONDS,
    InvalidTtl,
    KeyExpiries,
    check_ttl,
    expire_due,
    parse_duration,
)
from gossip_tui.core.models import KeyStatus, NodeId, SocketAddress
from gossip_tui.core.state import KeyChange, NodeState

NODE = NodeId("n1", 1, SocketAddress.parse("127.0.0.1:10000"))


def _state(**keys: str) -> NodeState:
    state = NodeState(NODE)
    for key, value in keys.items():
        state.set(key, value)
    return state


def test_a_key_lives_until_its_deadline_then_becomes_a_tombstone() -> None:
    state, expiries = _state(lease="holder-a", other="x"), KeyExpiries()
    expiries.schedule("lease", 100.0 + 30)
    assert expire_due(state, expiries, 129.999) == []
    assert state.get("lease") == "holder-a"
    version_before = state.max_version
    assert expire_due(state, expiries, 130.0) == ["lease"]
    lease = state.key_values["lease"]
    # A delete, as peers know it: empty value, new version, status Delete (not
    # DeleteAfterTtl, which would keep the value readable for the grace period).
    assert lease.status is KeyStatus.DELETED and lease.value == ""
    assert lease.version == version_before + 1
    assert state.get("lease") is None and state.get("other") == "x"
    assert len(expiries) == 0
    assert expire_due(state, expiries, 1_000.0) == []  # fired once


def test_due_keys_come_earliest_first_and_later_ones_wait() -> None:
    state, expiries = _state(a="1", b="2", c="3"), KeyExpiries()
    expiries.schedule("c", 5.0)
    expiries.schedule("a", 3.0)
    expiries.schedule("b", 50.0)
    assert expire_due(state, expiries, 10.0) == ["a", "c"]
    assert dict(expiries.deadlines) == {"b": 50.0}
    assert state.get("b") == "2"


def test_rescheduling_replaces_the_deadline_and_clearing_removes_it() -> None:
    state, expiries = _state(a="1", b="2"), KeyExpiries()
    expiries.schedule("a", 5.0)
    expiries.schedule("a", 20.0)  # set again with a new ttl
    expiries.schedule("b", 5.0)
    assert expiries.clear("b")  # set again without a ttl
    assert not expiries.clear("b")
    assert expire_due(state, expiries, 10.0) == []
    assert state.get("a") == "1" and state.get("b") == "2"
    assert expire_due(state, expiries, 20.0) == ["a"]


def test_a_key_already_deleted_is_not_deleted_again() -> None:
    state, expiries = _state(a="1"), KeyExpiries()
    expiries.schedule("a", 5.0)
    state.delete("a", 1.0)
    version = state.max_version
    assert expire_due(state, expiries, 10.0) == []
    assert state.max_version == version


def test_an_expiry_records_a_key_change_for_the_events() -> None:
    changes: list[object] = []
    state = NodeState(NODE, changes)  # type: ignore[arg-type]
    state.set("a", "1")
    expiries = KeyExpiries()
    expiries.schedule("a", 1.0)
    changes.clear()
    expire_due(state, expiries, 2.0)
    deleted = [c for c in changes if isinstance(c, KeyChange)]
    assert len(deleted) == 1 and deleted[0].key == "a"
    assert deleted[0].value is not None and deleted[0].value.is_deleted


@pytest.mark.parametrize(
    "bad", [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf, MAX_TTL_SECONDS * 2, 10**400, True]
)
def test_check_ttl_refuses_what_is_no_duration(bad: object) -> None:
    with pytest.raises(InvalidTtl):
        check_ttl(bad)


def test_check_ttl_takes_numbers_of_seconds() -> None:
    assert check_ttl(30) == 30.0
    assert check_ttl(0.25) == 0.25
    assert check_ttl(MAX_TTL_SECONDS) == MAX_TTL_SECONDS
    with pytest.raises(InvalidTtl):
        check_ttl("30")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("1.5", 1.5),
        ("30s", 30),
        ("5m", 300),
        (" 2h ", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("5M", 300),
        (".5s", 0.5),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "-5", "5x", "m", "1h30", "nan", "inf", "5 m x"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(InvalidTtl):
        parse_duration(text)
