"""fields_repr: the one __repr__ of the project's records reads exactly as attrs' own would,
and a node's start no longer compiles one per class of the modules that use it."""

from __future__ import annotations

import importlib
import inspect
import json
from typing import Any

import attrs
import pytest
from attr import _make as attrs_make
from hypothesis import given, settings
from hypothesis import strategies as st

from gossip_tui._run_options import parse_run_args
from gossip_tui.api import ROUTES
from gossip_tui.core.failure_detector import FailureDetectorConfig
from gossip_tui.core.fields_repr import fields_repr
from gossip_tui.core.models import NodeId, SocketAddress
from tests.processes import run_probe

# The modules whose records use fields_repr; each is on a node's start path, or (the
# API's) on its first request.
MODULES = [
    "gossip_tui.core.messages",
    "gossip_tui.core.events",
    "gossip_tui.core.agreement",
    "gossip_tui.core.readings",
    "gossip_tui.core.node_config",
    "gossip_tui._config_file",
    "gossip_tui._run_options",
    "gossip_tui.api._records",
    "gossip_tui.api._app",
    "gossip_tui.api._security",
    "gossip_tui.api._counts",
    "gossip_tui.core.engine",
    "gossip_tui.core.failure_detector",
    "gossip_tui.core.generations",
    "gossip_tui.core.models",
    "gossip_tui.core.receive",
    "gossip_tui.core.state",
    "gossip_tui.node._crypto",
    "gossip_tui.node._local_store",
    "gossip_tui.node._node_base",
    "gossip_tui.node._persistence",
    "gossip_tui.node._seeds",
]

_ADDRESSES = st.builds(
    SocketAddress, ip=st.ip_addresses(), port=st.integers(min_value=0, max_value=65_535)
)
st.register_type_strategy(SocketAddress, _ADDRESSES)
st.register_type_strategy(
    NodeId,
    st.builds(
        NodeId, node_id=st.text(), generation=st.integers(0, 2**64 - 1), gossip_addr=_ADDRESSES
    ),
)


def _classes() -> list[type[Any]]:
    found = []
    for name in MODULES:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and value.__module__ == name
                and value.__dict__.get("__repr__") is fields_repr
            ):
                found.append(value)
    return found


def attrs_repr(instance: Any) -> str:
    """``instance`` as the __repr__ attrs generates for its class would show it."""
    script, globs = attrs_make._make_repr_script(type(instance).__attrs_attrs__, None)
    exec(compile(script, "<attrs' own repr>", "exec"), globs)
    shown: str = globs["__repr__"](instance)
    return shown


# Classes hypothesis cannot build from their annotations alone (an Any, a callable).
_BY_HAND: dict[str, Any] = {
    "RunArgs": lambda: parse_run_args(["--headless", "--listen-addr", "127.0.0.1:7"]),
    "Route": lambda: ROUTES[-1],
    # Validated fields (positive, non-negative) hypothesis would draw out of range.
    "FailureDetectorConfig": lambda: FailureDetectorConfig(phi_threshold=5.5, acceptable_pause=0.0),
}


def test_every_module_has_records_that_use_it() -> None:
    modules = {cls.__module__ for cls in _classes()}
    assert modules == set(MODULES)


@pytest.mark.parametrize("cls", _classes(), ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_a_record_reads_as_attrs_would_show_it(cls: type[Any], data: st.DataObject) -> None:
    if cls.__name__ in _BY_HAND:
        instance = _BY_HAND[cls.__name__]()
    else:
        attrs.resolve_types(cls)
        # The address and the node id through their registered strategies (valid ports).
        registered = cls in (SocketAddress, NodeId)
        instance = data.draw(st.from_type(cls) if registered else st.builds(cls))
    assert repr(instance) == attrs_repr(instance)


@attrs.frozen
class _Box:
    __repr__ = fields_repr

    items: list[Any]
    hidden: int = attrs.field(default=0, repr=False)
    shown_as: int = attrs.field(default=7, repr=lambda value: f"<{value}>")
    derived: int = attrs.field(init=False, default=1)

    @attrs.frozen
    class Inner:
        __repr__ = fields_repr

        value: object


def test_hidden_fields_custom_reprs_fields_without_init_and_nested_names() -> None:
    box = _Box([_Box.Inner("x")], hidden=3, shown_as=4)
    assert repr(box) == "_Box(items=[_Box.Inner(value='x')], shown_as=<4>, derived=1)"
    assert repr(box) == attrs_repr(box)


def test_a_cycle_ends_in_dots_as_with_attrs() -> None:
    box = _Box([])
    box.items.append(box)
    assert repr(box) == "_Box(items=[...], shown_as=<7>, derived=1)"
    assert repr(box) == attrs_repr(box)
    assert repr(box) == repr(box)  # the guard is left clean


# Which classes of MODULES attrs compiles a __repr__ for, when a headless node's modules
# (the API's on its first request too) are imported in a fresh interpreter.
_COMPILED_REPRS_PROBE = """
import json, sys
from attr import _make

compiled = []
add_repr = _make._ClassBuilder.add_repr

def noting(builder, ns):
    compiled.append(f"{builder._cls.__module__}.{builder._cls.__qualname__}")
    return add_repr(builder, ns)

_make._ClassBuilder.add_repr = noting
import gossip_tui.cli, gossip_tui._headless, gossip_tui.api._app, gossip_tui.api._records
import gossip_tui.core.readings
import gossip_tui.node

if "--with-a-record-of-attrs" in sys.argv:
    import attrs

    @attrs.frozen
    class KeepsAttrsRepr:
        field: int

watched = tuple(json.loads(sys.argv[1]))
print(json.dumps([name for name in compiled if name.rsplit(".", 1)[0] in watched]))
"""


def test_a_start_compiles_no_repr_for_the_records_of_these_modules() -> None:
    compiled = json.loads(run_probe(_COMPILED_REPRS_PROBE, json.dumps(MODULES))[0])
    assert compiled == []


def test_the_probe_sees_the_reprs_attrs_compiles() -> None:
    # A record without fields_repr keeps attrs' repr: the probe must name it.
    compiled = json.loads(
        run_probe(_COMPILED_REPRS_PROBE, json.dumps(["__main__"]), "--with-a-record-of-attrs")[0]
    )
    assert compiled == ["__main__.KeepsAttrsRepr"]
