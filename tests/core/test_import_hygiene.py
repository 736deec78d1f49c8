"""gossip_tui.core stays pure: no I/O, no clock, no event loop, no UI, no upper layer.

Two checks: a static scan of every module under ``gossip_tui/core`` (no import of a forbidden
top-level module, and no relative import climbing out of ``core``), and a fresh interpreter
that imports every core module and must not end up with a forbidden module loaded at all,
whoever imported it.

The same two checks keep the test kit, gossip_tui.testing, out of the product: no module of
core, node, api, ui or the CLI imports it, and importing all of them never loads it.
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest

from tests.processes import run_probe

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "gossip_tui" / "core"
CORE_PACKAGE = ("gossip_tui", "core")

# Nothing under core may name these, even behind TYPE_CHECKING: time is a parameter, I/O
# belongs to gossip_tui.node, presentation to gossip_tui.ui and gossip_tui.api.
FORBIDDEN_IMPORTS = frozenset(
    {
        "trio",
        "textual",
        "asyncio",
        "anyio",
        "sniffio",
        "socket",
        "selectors",
        "ssl",
        "time",
        "datetime",
        "threading",
        "_thread",
        "multiprocessing",
        "concurrent",
        "subprocess",
        "hypercorn",
        "typer",
    }
)

# What must not be loaded after importing all of core. The standard library and attrs load
# time and threading on their own, so those are only checked statically above.
FORBIDDEN_LOADED = (
    "trio",
    "textual",
    "asyncio",
    "socket",
    "hypercorn",
    "typer",
    "gossip_tui.node",
    "gossip_tui.api",
    "gossip_tui.ui",
)


def _core_files() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def _package_of(path: Path) -> tuple[str, ...]:
    # The __package__ of a module, and of a package's __init__ alike: its directory.
    return path.relative_to(REPO).parent.parts


def _resolve(node: ast.ImportFrom, package: tuple[str, ...]) -> tuple[str, ...]:
    """The absolute dotted name a (possibly relative) ``from ... import`` refers to."""
    module = tuple(node.module.split(".")) if node.module else ()
    if node.level == 0:
        return module
    if node.level > len(package):
        return ("<beyond the top-level package>",)
    base = package[: len(package) - (node.level - 1)]
    return base + module


def import_violations(source: str, path: Path) -> list[str]:
    """Every import in ``source`` (the module at ``path``) that core must not make."""
    tree = ast.parse(source, filename=str(path))
    package = _package_of(path)
    problems: list[str] = []

    def check_absolute(name: tuple[str, ...], lineno: int) -> None:
        if name[0] in FORBIDDEN_IMPORTS:
            problems.append(f"{path.name}:{lineno} imports {'.'.join(name)}")
        elif name[:1] == ("gossip_tui",) and name[:2] != CORE_PACKAGE and len(name) > 1:
            problems.append(f"{path.name}:{lineno} imports {'.'.join(name)} from outside core")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                check_absolute(tuple(alias.name.split(".")), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, package)
            if node.level and target[:2] != CORE_PACKAGE:
                problems.append(
                    f"{path.name}:{node.lineno} relative import reaches {'.'.join(target)}"
                )
            elif target == ("gossip_tui",):
                for alias in node.names:  # from gossip_tui import node
                    if alias.name != "core":
                        problems.append(
                            f"{path.name}:{node.lineno} imports gossip_tui.{alias.name}"
                        )
            elif target:
                check_absolute(target, node.lineno)
        elif isinstance(node, ast.Call):
            # importlib.import_module("trio") / __import__("trio") with a literal name
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    check_absolute(tuple(arg.value.split(".")), node.lineno)
    return problems


def test_core_has_modules_to_check() -> None:
    names = {p.name for p in _core_files()}
    assert {"__init__.py", "codec.py", "messages.py", "models.py"} <= names


@pytest.mark.parametrize(
    "path", _core_files(), ids=lambda p: str(p.relative_to(CORE)).replace(os.sep, "/")
)
def test_core_module_imports_nothing_forbidden(path: Path) -> None:
    assert import_violations(path.read_text(encoding="utf-8"), path) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import time", "imports time"),
        ("import trio.lowlevel", "imports trio.lowlevel"),
        ("from datetime import datetime", "imports datetime"),
        ("from threading import Lock", "imports threading"),
        ("import socket as s", "imports socket"),
        ("if TYPE_CHECKING:\n    import textual", "imports textual"),
        ("def f():\n    import asyncio", "imports asyncio"),
        ("from ..node import Node", "relative import reaches gossip_tui.node"),
        ("from .. import ui", "relative import reaches gossip_tui"),
        ("from ... import x", "relative import reaches <beyond"),
        ("from gossip_tui.api import app", "from outside core"),
        ("import gossip_tui.ui.widgets", "from outside core"),
        ("from gossip_tui import node", "imports gossip_tui.node"),
        ("importlib.import_module('typer')", "imports typer"),
    ],
)
def test_the_scan_catches_forbidden_imports(source: str, expected: str) -> None:
    problems = import_violations(source, CORE / "example.py")
    assert len(problems) == 1
    assert expected in problems[0]


@pytest.mark.parametrize(
    "source",
    [
        "import random",
        "import ipaddress, struct, enum",
        "import attrs",
        "from .models import NodeId",
        "from . import codec",
        "from gossip_tui.core.codec import decode",
        "from gossip_tui import core",
        "from __future__ import annotations",
        "import timeit_is_not_time",
    ],
)
def test_the_scan_allows_what_core_may_import(source: str) -> None:
    assert import_violations(source, CORE / "example.py") == []


def test_nested_core_package_may_climb_back_to_core() -> None:
    nested = CORE / "sub" / "mod.py"
    assert import_violations("from ..models import NodeId", nested) == []
    assert import_violations("from ...node import Node", nested) != []


_PROBE = """
import importlib, json, pkgutil, sys
import gossip_tui.core as core
imported = [core.__name__]
for info in pkgutil.walk_packages(core.__path__, core.__name__ + "."):
    importlib.import_module(info.name)
    imported.append(info.name)
forbidden = json.loads(sys.argv[1])
loaded = sorted(
    name for name in sys.modules
    if any(name == f or name.startswith(f + ".") for f in forbidden)
)
print(json.dumps({"imported": imported, "loaded": loaded}))
"""


def test_importing_all_of_core_loads_no_io_ui_or_upper_layer() -> None:
    report = json.loads(run_probe(_PROBE, json.dumps(FORBIDDEN_LOADED))[0])
    expected = {
        "gossip_tui.core." + str(p.relative_to(CORE).with_suffix("")).replace(os.sep, ".")
        for p in _core_files()
        if p.name != "__init__.py"
    }
    assert expected <= set(report["imported"])
    assert report["loaded"] == []


# --------------------------------------------------------------------------- the test kit

# gossip_tui.testing (the in-memory network, the fault proxy, the fake node) stands beside the
# product for tests and scripts: it may import core and node, but nothing of the product may
# import it, or a test double would ship inside the runtime.
PACKAGE = REPO / "gossip_tui"
TESTING_PACKAGE = ("gossip_tui", "testing")


def _product_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] != "testing")


def imports_of_the_test_kit(source: str, path: Path) -> list[str]:
    """Every import of gossip_tui.testing in ``source`` (the module at ``path``)."""
    tree = ast.parse(source, filename=str(path))
    package = _package_of(path)
    problems: list[str] = []

    def check(name: tuple[str, ...], lineno: int) -> None:
        if name[:2] == TESTING_PACKAGE:
            problems.append(f"{path.name}:{lineno} imports {'.'.join(name)}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                check(tuple(alias.name.split(".")), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, package)
            if target == ("gossip_tui",):
                for alias in node.names:  # from gossip_tui import testing
                    check((*target, alias.name), node.lineno)
            else:
                check(target, node.lineno)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    check(tuple(arg.value.split(".")), node.lineno)
    return problems


def test_every_layer_has_modules_to_check() -> None:
    layers = {p.relative_to(PACKAGE).parts[0] for p in _product_files()}
    assert {"core", "node", "api", "ui", "cli.py", "__init__.py"} <= layers


@pytest.mark.parametrize(
    "path", _product_files(), ids=lambda p: str(p.relative_to(PACKAGE)).replace(os.sep, "/")
)
def test_no_product_module_imports_the_test_kit(path: Path) -> None:
    assert imports_of_the_test_kit(path.read_text(encoding="utf-8"), path) == []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("node/_node.py", "from gossip_tui.testing import MemoryNetwork"),
        ("node/_node.py", "import gossip_tui.testing._proxy"),
        ("node/_node.py", "from ..testing import FakeNode"),
        ("node/_node.py", "from ..testing._faults import decide_fate"),
        ("cli.py", "from .testing import MemoryNetwork"),
        ("cli.py", "from gossip_tui import node, testing"),
        ("ui/widgets/nodes_table.py", "from ...testing import FakeCluster"),
        ("api/_app.py", "def f():\n    from gossip_tui.testing import FakeNode"),
        ("__init__.py", "importlib.import_module('gossip_tui.testing')"),
    ],
)
def test_the_scan_catches_imports_of_the_test_kit(module: str, source: str) -> None:
    problems = imports_of_the_test_kit(source, PACKAGE / module)
    assert len(problems) == 1
    assert "imports gossip_tui.testing" in problems[0]


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("node/_node.py", "from ._transport import UdpTransport"),
        ("cli.py", "from gossip_tui import node, ui"),
        ("ui/app.py", "from .widgets import nodes_table"),
        ("api/_app.py", "import gossip_tui.testing_is_not_testing"),
    ],
)
def test_the_scan_allows_the_products_own_imports(module: str, source: str) -> None:
    assert imports_of_the_test_kit(source, PACKAGE / module) == []


# The module names come from the files: pkgutil.walk_packages would import every package
# on its way, the test kit included.
_PRODUCT_PROBE = """
import importlib, json, sys
import gossip_tui
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
for name in gossip_tui.__all__:  # the lazily loaded exports too
    getattr(gossip_tui, name)
print(json.dumps(sorted(n for n in sys.modules if n.startswith("gossip_tui.testing"))))
"""


def _product_modules() -> list[str]:
    names = []
    for path in _product_files():
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__main__":
            continue  # importing it runs the CLI
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_importing_the_whole_product_never_loads_the_test_kit() -> None:
    assert json.loads(run_probe(_PRODUCT_PROBE, json.dumps(_product_modules()))[0]) == []


# --------------------------------------------------------------------------- the headless path

# What a headless node must not load, by mode: each costs start-up CPU and resident memory
# in every node process of a fleet. Textual is the dashboard's, hypercorn and the API serve
# HTTP, zstandard only (de)compresses large blocks, cryptography only seals datagrams
# (--secret-key), and the test kit and pytest are never the runtime's. typer (and the
# pydantic it builds an adapter per option with) is for --help, subcommands and usage errors.
_NEVER_HEADLESS = [
    "typer",
    "click",
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "textual",
    "gossip_tui.ui",
    "gossip_tui.testing",
    "zstandard",
    "cryptography",
    "pytest",
    "_pytest",
    "trio.testing",
]
# The API's settings and client (gossip_tui.client) bring http.client and so email.
_HTTP_ONLY = [
    "hypercorn",
    "h11",
    "h2",
    "wsproto",
    "gossip_tui.api",
    "gossip_tui.client",
    "http.client",
    "email",
]
# What serving the API over HTTP/1.1 in cleartext never runs, so an HTTP node does not load
# it (gossip_tui.api._server defers hypercorn's imports of it): HTTP/2, websockets,
# hypercorn's multi-process runner, log and config files; nor the client commands' package.
_NOT_FOR_HTTP11 = [
    "h2",
    "hpack",
    "hyperframe",
    "priority",
    "wsproto",
    "multiprocessing",
    "logging.config",
    "tomllib",
    "gossip_tui.client",
    "http.client",
    "email",
]
# The server itself, hypercorn and h11, started by the first connection (the socket listens
# from the start, gossip_tui.api._server): a node nobody asks anything never imports it.
_FIRST_CONNECTION = ["hypercorn", "h11"]
# What the API answers with, built by the first request that needs it (each handler of
# gossip_tui.api._app imports its own): the response records, the converter and so cattrs
# (and datetime, which the records take), the event stream, the metrics, the OpenAPI
# document. A node serving HTTP that has answered nothing yet has loaded none of them.
_FIRST_REQUEST = [
    "cattrs",
    "datetime",
    "gossip_tui.api._records",
    "gossip_tui.api._events",
    "gossip_tui.api._metrics",
    "gossip_tui.api._openapi",
]
# The propagation and agreement readings (gossip_tui.core.readings): the dashboard's and
# the API's to ask for, built on the first reading; a start takes none, in either mode.
_FIRST_READING = ["gossip_tui.core.readings"]
# A config file's reader, what JSON log lines alone need, and cattrs (the API's JSON and
# typed records): not for a node started with options only, logging text, without HTTP.
_ON_DEMAND = ["tomllib", "datetime", "cattrs"]

# The real command line, up to the moment the node is ready: then the loaded modules are
# printed and the node is stopped as an operator would (SIGTERM); once it has stopped they
# are printed again (what closing the node loaded, it loads in every node that stops).
_HEADLESS_PROBE = """
import functools, json, os, signal, sys
import gossip_tui._headless as headless
from gossip_tui.cli import main

watched = json.loads(sys.argv[1])

def loaded():
    return sorted(
        name for name in sys.modules
        if any(name == w or name.startswith(w + ".") for w in watched)
    )

async def report(node):
    print(json.dumps(loaded()), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

headless.serve_headless = functools.partial(headless.serve_headless, on_ready=report)
status = main(["--headless", "--listen-addr", "127.0.0.1:0", *sys.argv[2:]])
print(json.dumps(loaded()), flush=True)
sys.exit(status)
"""


def _loaded_by_headless_node(watched: list[str], *flags: str) -> tuple[list[str], list[str]]:
    """What of ``watched`` a headless node had loaded when ready, and once it stopped."""
    ready, stopped = run_probe(_HEADLESS_PROBE, json.dumps(watched), *flags)[:2]
    return json.loads(ready), json.loads(stopped)


def test_a_headless_node_without_http_loads_neither_dashboard_nor_http_nor_zstd() -> None:
    watched = _NEVER_HEADLESS + _HTTP_ONLY + _ON_DEMAND + _FIRST_READING
    ready, _ = _loaded_by_headless_node(watched, "--no-http")
    assert ready == []


def test_a_headless_node_with_http_loads_no_dashboard_nor_zstd() -> None:
    watched = _NEVER_HEADLESS + _HTTP_ONLY
    ready, _ = _loaded_by_headless_node(watched, "--http-addr", "127.0.0.1:0")
    assert "gossip_tui.api" in ready  # the probe sees what the node serves with
    assert [name for name in ready if not name.startswith(tuple(_HTTP_ONLY))] == []


def test_a_headless_node_with_http_loads_no_http2_websockets_nor_the_client() -> None:
    ready, _ = _loaded_by_headless_node(_NOT_FOR_HTTP11, "--http-addr", "127.0.0.1:0")
    # h2's package alone (a version string) is there: hypercorn names h2.events in
    # annotations, and importing a stand-in for h2.events imports its package.
    assert [name for name in ready if name != "h2"] == []


def test_a_headless_node_with_http_has_no_server_record_nor_reading_before_a_connection() -> None:
    watched = ["gossip_tui._http_settings", *_FIRST_CONNECTION, *_FIRST_REQUEST, *_FIRST_READING]
    ready, _ = _loaded_by_headless_node(watched, "--http-addr", "127.0.0.1:0")
    # Only what says the node serves HTTP at all (the probe sees the HTTP path).
    assert ready == ["gossip_tui._http_settings"]


@pytest.mark.parametrize(
    "flags", [["--no-http"], ["--http-addr", "127.0.0.1:0"]], ids=["no-http", "http"]
)
def test_stopping_a_headless_node_loads_neither_the_test_kit_nor_pytest(flags: list[str]) -> None:
    # Closing a node lets its subscribers (the membership log at least) see their stream
    # end: that wait must come from Trio's runtime, not trio.testing, which brings pytest.
    _, stopped = _loaded_by_headless_node(_NEVER_HEADLESS, *flags)
    assert stopped == []
