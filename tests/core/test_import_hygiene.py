"""gossip_tui.core stays pure: no I/O, no clock, no event loop, no UI, no upper layer.

Two checks: a static scan of every module under ``gossip_tui/core`` (no import of a forbidden
top-level module, and no relative import climbing out of ``core``), and a fresh interpreter
that imports every core module and must not end up with a forbidden module loaded at all,
whoever imported it.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(FORBIDDEN_LOADED)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    expected = {
        "gossip_tui.core." + str(p.relative_to(CORE).with_suffix("")).replace(os.sep, ".")
        for p in _core_files()
        if p.name != "__init__.py"
    }
    assert expected <= set(report["imported"])
    assert report["loaded"] == []
