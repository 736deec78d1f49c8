"""The API's one converter: chitchat's serde spellings, both ways, and strictness."""

from __future__ import annotations

import cattrs
import pytest

from gossip_tui.api._records import PutKeyBody
from gossip_tui.core.converter import converter
from gossip_tui.core.models import KeyStatus, NodeId, SocketAddress, VersionedValue

NODE = NodeId("n", 3, SocketAddress.parse("[::1]:7"))


@pytest.mark.parametrize(
    ("value", "data"),
    [
        (SocketAddress.parse("10.0.0.1:80"), "10.0.0.1:80"),
        (SocketAddress.parse("[fe80::1]:80"), "[fe80::1]:80"),
        (NODE, {"node_id": "n", "generation_id": 3, "gossip_advertise_addr": "[::1]:7"}),
        (KeyStatus.SET, "Set"),
        (KeyStatus.DELETED, "Delete"),
        (KeyStatus.DELETE_AFTER_TTL, "DeleteAfterTtl"),
        (
            VersionedValue("v", 9, KeyStatus.DELETE_AFTER_TTL, status_since=4.0),
            {"value": "v", "version": 9, "status": "DeleteAfterTtl"},
        ),
    ],
)
def test_round_trip(value: object, data: object) -> None:
    assert converter.unstructure(value) == data
    assert converter.structure(data, type(value)) == value


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        ("10.0.0.1", SocketAddress),
        ("host:80", SocketAddress),
        (80, SocketAddress),
        ("Deleted", KeyStatus),
        (1, KeyStatus),
        ({"node_id": 1, "generation_id": 3, "gossip_advertise_addr": "[::1]:7"}, NodeId),
        ({"node_id": "n", "generation_id": "3", "gossip_advertise_addr": "[::1]:7"}, NodeId),
        ({"value": "v", "version": True, "status": "Set"}, VersionedValue),
    ],
)
def test_structuring_is_strict(data: object, kind: type) -> None:
    with pytest.raises((ValueError, TypeError, KeyError, cattrs.BaseValidationError)):
        converter.structure(data, kind)


def test_put_body_defaults_and_rejects_extra_keys() -> None:
    assert converter.structure({"value": "x"}, PutKeyBody) == PutKeyBody("x", ttl=False)
    with pytest.raises(cattrs.BaseValidationError):
        converter.structure({"value": "x", "tll": True}, PutKeyBody)
