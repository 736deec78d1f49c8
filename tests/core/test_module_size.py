"""No module under gossip_tui/ grows past ~400 lines unless its docstring names the one
concern it holds (the redesign issue's rule): a long module must say why it is one."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "gossip_tui"
LIMIT = 420  # "about 400"


def test_every_long_module_names_its_one_concern() -> None:
    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        if source.count("\n") <= LIMIT:
            continue
        docstring = ast.get_docstring(ast.parse(source)) or ""
        if "one concern" not in docstring.lower():
            unexplained.append(
                f"{path.relative_to(PACKAGE.parent)} ({source.count(chr(10))} lines)"
            )
    assert not unexplained, "long modules without 'One concern' in the docstring: " + ", ".join(
        unexplained
    )
