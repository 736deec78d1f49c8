"""One ``__repr__`` for the project's attrs classes, the same text attrs would generate.

attrs writes a ``__repr__`` per class as source and compiles it when the class is built;
with the f-string that holds every field, that compile is about a third of what building
a record class costs, and a node builds some sixty of them before it gossips (~15 ms of
every start). A class that sets ``__repr__ = fields_repr`` in its body (attrs then keeps
it, ``auto_detect``) reprs exactly as attrs' own would: ``Name(field=value, ...)`` with
the fields attrs shows (``repr=False`` left out, a ``repr=`` callable applied, a field
without ``init`` read as attrs reads it), the same name, and attrs' own guard against a
cycle (``...``), shared with the reprs attrs generates.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import attrs
from attr import _compat

# attrs' own guard (a thread-local set of the ids being shown, private to attrs), so that a
# cycle through classes of both kinds ends as it would with attrs alone. An attrs release
# without it leaves these reprs a guard of their own (per process: the core starts no
# threads), not a repr that fails.
_REPR_CONTEXT: Any = getattr(_compat, "repr_context", None) or SimpleNamespace()

__all__ = ["fields_repr"]


def fields_repr(self: Any) -> str:
    """``self`` as attrs' generated ``__repr__`` shows it."""
    try:
        already_shown: set[int] = _REPR_CONTEXT.already_repring
    except AttributeError:
        already_shown = {id(self)}
        _REPR_CONTEXT.already_repring = already_shown
    else:
        if id(self) in already_shown:
            return "..."
        already_shown.add(id(self))
    try:
        parts = []
        for field in type(self).__attrs_attrs__:
            if field.repr is False:
                continue
            if field.init:
                value = getattr(self, field.name)
            else:
                value = getattr(self, field.name, attrs.NOTHING)
            shown = repr(value) if field.repr is True else field.repr(value)
            parts.append(f"{field.name}={shown}")
        name = self.__class__.__qualname__.rsplit(">.", 1)[-1]
        return f"{name}({', '.join(parts)})"
    finally:
        already_shown.remove(id(self))
