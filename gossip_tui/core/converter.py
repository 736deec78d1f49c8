"""The one cattrs converter: JSON for the HTTP API and for typed records in the key-value map.

Domain types are shaped the way chitchat's serde derives shape them, so that the index
route reads like chitchat-test's:

* ``SocketAddress`` is the text ``"ip:port"`` (``"[v6]:port"`` for IPv6);
* ``NodeId`` is ``{"node_id", "generation_id", "gossip_advertise_addr"}``;
* ``KeyStatus`` is the name of the wire mutation, :attr:`KeyStatus.label`: ``"Set"``,
  ``"Delete"``, ``"DeleteAfterTtl"``;
* ``VersionedValue`` is ``{"value", "version", "status"}``;
* ``NodeSnapshot`` is a chitchat ``NodeState``: ``{"chitchat_id", "heartbeat",
  "key_values", "max_version", "last_gc_version"}`` with keys in byte order;
* ``ClusterSnapshot`` is a chitchat ``ClusterStateSnapshot``: ``{"node_states",
  "seed_addrs"}`` with nodes in chitchat's order.

Structuring is strict: a string is never made out of a number, nor a bool out of a string.

The converter is made (and cattrs imported) when first asked for: a headless node without
HTTP never is, and the command line's settings read text with :func:`structure_str` and
:func:`structure_address` alone.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gossip_tui.core.models import (
    AddressError,
    ClusterSnapshot,
    KeyStatus,
    NodeId,
    NodeSnapshot,
    SocketAddress,
    VersionedValue,
)

if TYPE_CHECKING:
    import cattrs

    converter: cattrs.Converter

__all__ = ["converter", "structure_address", "structure_str", "unstructure_node_id"]

_STATUS_BY_NAME = {status.label: status for status in KeyStatus}


def _expect(value: Any, kind: type, what: str) -> None:
    # bool is an int subclass: reject it where a number is wanted, and vice versa.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{what} must be a {kind.__name__}, not {type(value).__name__}")


def structure_str(value: Any, _type: Any) -> str:
    """A text, and nothing else made into one."""
    _expect(value, str, "value")
    return str(value)


def _structure_bool(value: Any, _type: Any) -> bool:
    _expect(value, bool, "value")
    return bool(value)


def _structure_int(value: Any, _type: Any) -> int:
    _expect(value, int, "value")
    return int(value)


def _structure_flag_or_number(value: Any, _type: Any) -> bool | float:
    # A TTL as the HTTP API takes it: true/false (chitchat's mark), or seconds. The range
    # is the node's to check (gossip_tui.core.expiry.check_ttl).
    if isinstance(value, bool):
        return value
    if not isinstance(value, int | float):
        raise TypeError(f"value must be a bool or a number, not {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:  # an integer past the float range: as large as it gets
        return math.inf


def _unstructure_float(value: float) -> float | None:
    # JSON has no infinity nor NaN: a phi that overflowed is shown as unknown.
    return value if math.isfinite(value) else None


def _unstructure_address(addr: SocketAddress) -> str:
    return str(addr)


def structure_address(value: Any, _type: Any) -> SocketAddress:
    """``\"ip:port\"`` (``\"[v6]:port\"``) as a :class:`SocketAddress`."""
    _expect(value, str, "address")
    try:
        return SocketAddress.parse(value)
    except AddressError as exc:
        raise ValueError(str(exc)) from None


def unstructure_node_id(node: NodeId) -> dict[str, Any]:
    """``node`` as the converter shows it (the HTTP API's ``/health`` builds its body with
    this alone, without the converter)."""
    return {
        "node_id": node.node_id,
        "generation_id": node.generation,
        "gossip_advertise_addr": str(node.gossip_addr),
    }


def _structure_node_id(value: Any, _type: Any) -> NodeId:
    _expect(value, dict, "chitchat_id")
    return NodeId(
        node_id=structure_str(value["node_id"], str),
        generation=_structure_int(value["generation_id"], int),
        gossip_addr=structure_address(value["gossip_advertise_addr"], SocketAddress),
    )


def _unstructure_status(status: KeyStatus) -> str:
    return status.label


def _structure_status(value: Any, _type: Any) -> KeyStatus:
    _expect(value, str, "status")
    try:
        return _STATUS_BY_NAME[value]
    except KeyError:
        raise ValueError(f"unknown key status {value!r}") from None


def _unstructure_versioned(value: VersionedValue) -> dict[str, Any]:
    return {
        "value": value.value,
        "version": value.version,
        "status": value.status.label,
    }


def _structure_versioned(value: Any, _type: Any) -> VersionedValue:
    _expect(value, dict, "versioned value")
    return VersionedValue(
        value=structure_str(value["value"], str),
        version=_structure_int(value["version"], int),
        status=_structure_status(value["status"], KeyStatus),
    )


def _unstructure_key_values(key_values: Mapping[str, VersionedValue]) -> dict[str, Any]:
    # chitchat keeps key-values in a BTreeMap: byte order of UTF-8, i.e. code point order.
    return {key: _unstructure_versioned(key_values[key]) for key in sorted(key_values)}


def _unstructure_node_state(node: NodeSnapshot) -> dict[str, Any]:
    return {
        "chitchat_id": unstructure_node_id(node.node),
        "heartbeat": node.heartbeat,
        "key_values": _unstructure_key_values(node.key_values),
        "max_version": node.max_version,
        "last_gc_version": node.last_gc_version,
    }


def _unstructure_cluster_state(cluster: ClusterSnapshot) -> dict[str, Any]:
    nodes = sorted(cluster.nodes, key=lambda n: n.node.sort_key())
    return {
        "node_states": [_unstructure_node_state(n) for n in nodes],
        "seed_addrs": [str(addr) for addr in sorted(set(cluster.seed_addrs))],
    }


def _make_converter() -> cattrs.Converter:
    import cattrs

    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(str, structure_str)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook(int, _structure_int)
    conv.register_unstructure_hook(float, _unstructure_float)
    conv.register_structure_hook(bool | float, _structure_flag_or_number)
    conv.register_unstructure_hook(SocketAddress, _unstructure_address)
    conv.register_structure_hook(SocketAddress, structure_address)
    conv.register_unstructure_hook(NodeId, unstructure_node_id)
    conv.register_structure_hook(NodeId, _structure_node_id)
    conv.register_unstructure_hook(KeyStatus, _unstructure_status)
    conv.register_structure_hook(KeyStatus, _structure_status)
    conv.register_unstructure_hook(VersionedValue, _unstructure_versioned)
    conv.register_structure_hook(VersionedValue, _structure_versioned)
    conv.register_unstructure_hook(NodeSnapshot, _unstructure_node_state)
    conv.register_unstructure_hook(ClusterSnapshot, _unstructure_cluster_state)
    return conv


_the_converter = functools.cache(_make_converter)


def __getattr__(name: str) -> Any:
    if name == "converter":
        return _the_converter()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
