"""The settings' reader (no cattrs, for a node's start) reads every value exactly as the
project's cattrs converter, taught the same text hooks, read it before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import cattrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossip_tui import _config_file as config_file
from gossip_tui._config_file import CliSettings, structure_setting
from gossip_tui.core.converter import converter

_FIELDS = {field.name: field for field in attrs.fields(CliSettings)}


def _by_cattrs() -> cattrs.Converter:
    """The settings converter as it was: the project's, with the text hooks."""
    conv = converter.copy()
    conv.register_structure_hook(int, config_file._structure_int)
    conv.register_structure_hook(float, config_file._structure_float)
    conv.register_structure_hook(bool, config_file._structure_bool)
    conv.register_structure_hook(Path, config_file._structure_path)
    conv.register_structure_hook_func(lambda t: t == tuple[str, ...], config_file._structure_texts)
    return conv


_REFERENCE = _by_cattrs()


def _reference(name: str, raw: object) -> tuple[str, Any]:
    field = _FIELDS[name]
    try:
        value = _REFERENCE.structure(raw, field.type)
        if field.validator is not None:
            field.validator(None, field, value)
    except Exception as exc:
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        return ("refused", str(exc))
    return ("read", value)


def _reader(name: str, raw: object) -> tuple[str, Any]:
    try:
        return ("read", structure_setting(name, raw))
    except ValueError as exc:
        return ("refused", str(exc))


# What options, variables and TOML files give: texts (good and bad), numbers, flags, lists.
_TEXTS = st.sampled_from(
    [
        "127.0.0.1:1",
        "[::1]:2",
        "nope",
        "5",
        "0",
        "-1",
        "1.5",
        "inf",
        "nan",
        "true",
        "off",
        "DEBUG",
        "json",
        "a.example, b.example",
        "*",
        "x:1",
        "",
        " ",
        "/nonexistent/path",
        "~/state",
        "/dev/null",
    ]
)
_RAW = st.one_of(
    _TEXTS,
    st.integers(-3, 70_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(_TEXTS, max_size=3),
    st.lists(st.integers(0, 3), min_size=1, max_size=2),
)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(sorted(_FIELDS)), _RAW)
def test_the_reader_reads_as_the_cattrs_converter_did(name: str, raw: object) -> None:
    if name in {"secret_key_file", "api_token_file"} and isinstance(raw, str) and raw.strip():
        raw = "/nonexistent/file"  # reading a file is the validator's, the same either way
    assert _reader(name, raw) == _reference(name, raw)


@pytest.mark.parametrize("name", sorted(_FIELDS))
def test_every_settings_type_has_a_reader(name: str) -> None:
    # None reads as None where the type allows it, and is refused where it does not.
    assert _reader(name, None)[0] == _reference(name, None)[0]
