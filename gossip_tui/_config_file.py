"""Command-line settings from three sources: options, environment, TOML file.

Precedence, highest first: command-line option, ``GOSSIP_TUI_*`` environment variable,
the TOML file (``--config`` or ``GOSSIP_TUI_CONFIG``), then the default. Every value, as
text (an option, a variable) or as TOML gives it, is structured onto the type
:class:`CliSettings` declares (by the project converter's hooks, and hooks of ours that
also read text) and checked by that field's validator; a bad value therefore reads the
same wherever it came from, and is reported as one line naming its origin.

The node's settings have no rules of their own here: their defaults are ``NodeConfig``'s
and their validators are those of ``NodeConfig`` and ``FailureDetectorConfig``. Only the
command line's own settings (``interval_ms``, ``headless``, ``no_http``, the key texts and
file, the state directory's existence) are checked here. :func:`to_node_config` makes the
runtime's ``NodeConfig`` of the result (whose validators check it again).
``gossip_tui.node`` (and so Trio) is imported only when a default or one of its validators
is needed, never by ``--help``.

One concern, though over 400 lines: turning the three sources into one CliSettings
(the fields' declarations take most of it).
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from gossip_tui._logging import parse_log_format, parse_log_level
from gossip_tui.core.converter import structure_address, structure_str
from gossip_tui.core.errors import GossipTuiError
from gossip_tui.core.failure_detector import FailureDetectorConfig
from gossip_tui.core.fields_repr import fields_repr
from gossip_tui.core.http_access import ApiTokenError, parse_api_token
from gossip_tui.core.keys import SecretKeyError, parse_key, parse_key_lines
from gossip_tui.core.models import AddressError, SocketAddress, parse_seed

if TYPE_CHECKING:
    from gossip_tui.node import NodeConfig

__all__ = [
    "CONFIG_ENV",
    "ENV_PREFIX",
    "CliSettings",
    "SettingsError",
    "build_settings",
    "env_var",
    "item_parser",
    "load_config_file",
    "resolve_settings",
    "setting_parser",
    "settings_from_env",
    "structure_setting",
    "to_node_config",
]

ENV_PREFIX = "GOSSIP_TUI_"
CONFIG_ENV = "GOSSIP_TUI_CONFIG"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class SettingsError(GossipTuiError, ValueError):
    """A setting that cannot be used; the message is one line and names its origin."""


# --------------------------------------------------------------------------- the node's rules


def _node_config_field(name: str) -> attrs.Attribute[Any]:
    from gossip_tui.core.node_config import NodeConfig

    field: attrs.Attribute[Any] = getattr(attrs.fields(NodeConfig), name)
    return field


def _node_default(name: str, convert: Callable[[Any], Any] | None = None) -> Any:
    """A default read from ``NodeConfig`` when a settings object is made, not restated."""

    def default() -> Any:
        value = _node_config_field(name).default
        return value if convert is None else convert(value)

    return attrs.Factory(default)


def _checked_by_node_config(name: str) -> Callable[[Any, Any, Any], None]:
    """``NodeConfig``'s own validator of ``name``; None passes (the runtime's default)."""

    def validate(instance: Any, attribute: Any, value: Any) -> None:
        check = _node_config_field(name).validator
        if value is not None and check is not None:
            check(instance, attribute, value)

    return validate


def _checked_by_detector_config(name: str) -> Any:
    check = getattr(attrs.fields(FailureDetectorConfig), name).validator
    return attrs.validators.optional(check) if check is not None else None


def _milliseconds(seconds: float) -> int:
    return round(seconds * 1000)


# --------------------------------------------------------------------------- the CLI's rules


def _non_empty(_instance: Any, attribute: Any, value: str | None) -> None:
    if value is not None and not value.strip():
        raise ValueError(f"expected a non-empty text, got {value!r}")


def _at_least_one_ms(_instance: Any, _attribute: Any, value: int) -> None:
    if value < 1:
        raise ValueError(f"the interval must be at least 1 ms, got {value}")


def _seeds(_instance: Any, _attribute: Any, value: tuple[str, ...]) -> None:
    for seed in value:
        parse_seed(seed)


def _checked_by(parse: Callable[[object], object]) -> Callable[[Any, Any, object], None]:
    """An attrs validator from a parser that raises ValueError for what it refuses."""

    def check(_instance: Any, _attribute: Any, value: object) -> None:
        parse(value)

    return check


def _token_file(value: object) -> Path:
    """A file holding the API token, read now so that a bad one stops the start."""
    if isinstance(value, Path):
        path = value
    elif isinstance(value, str) and value.strip():
        path = Path(value).expanduser()
    else:
        raise ValueError(f"expected a file path, got {value!r}")
    try:
        parse_api_token(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read API token file {path}: {exc}") from None
    except ApiTokenError as exc:
        raise ValueError(str(exc)) from None
    return path


def _token_file_given(_instance: Any, _attribute: Any, value: Path | None) -> None:
    if value is not None:
        _token_file(value)


def _host_names(value: object) -> tuple[str, ...]:
    """Host names, as a list or one comma-separated text; "*" allows any."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ValueError(f"expected host names, got {value!r}")
    names = tuple(str(item).strip().lower() for item in items if str(item).strip())
    for name in names:
        if name != "*" and (":" in name or any(c.isspace() or c == "/" for c in name)):
            raise ValueError(f"{name!r} is not a host name (no port, no scheme)")
    return names


def _directory(_instance: Any, _attribute: Any, value: Path | None) -> None:
    if value is not None and value.exists() and not value.is_dir():
        raise ValueError(f"{str(value)!r} exists and is not a directory")


def _secret_keys(_instance: Any, _attribute: Any, value: tuple[str, ...]) -> None:
    for text in value:
        parse_key(text)


def _key_file(_instance: Any, _attribute: Any, value: Path | None) -> None:
    if value is None:
        return
    try:
        parse_key_lines(value.read_text(encoding="utf-8"), str(value))
    except OSError as exc:
        raise ValueError(f"cannot read key file {value}: {exc.strerror or exc}") from None


@attrs.frozen
class CliSettings:
    """What the command line asks for. None means "the node runtime's default"."""

    __repr__ = fields_repr

    listen_addr: SocketAddress = attrs.field(default=_node_default("listen_addr"))
    public_addr: SocketAddress | None = None
    node_id: str | None = attrs.field(default=None, validator=_non_empty)
    seeds: tuple[str, ...] = attrs.field(default=_node_default("seeds"), validator=_seeds)
    interval_ms: int = attrs.field(
        default=_node_default("gossip_interval", _milliseconds), validator=_at_least_one_ms
    )
    cluster_id: str = attrs.field(default=_node_default("cluster_id"), validator=_non_empty)
    headless: bool = False
    no_http: bool = False
    dead_node_grace_period: float | None = attrs.field(
        default=None, validator=_checked_by_detector_config("dead_node_grace_period")
    )
    marked_for_deletion_grace_period: float | None = attrs.field(
        default=None, validator=_checked_by_node_config("marked_for_deletion_grace_period")
    )
    phi_threshold: float | None = attrs.field(
        default=None, validator=_checked_by_detector_config("phi_threshold")
    )
    acceptable_pause: float | None = attrs.field(
        default=None, validator=_checked_by_detector_config("acceptable_pause")
    )
    state_dir: Path | None = attrs.field(default=None, validator=_directory)
    secret_keys: tuple[str, ...] = attrs.field(default=(), repr=False, validator=_secret_keys)
    secret_key_file: Path | None = attrs.field(default=None, validator=_key_file)
    protocol_version: int = attrs.field(
        default=_node_default("protocol_version"),
        validator=_checked_by_node_config("protocol_version"),
    )
    partial_digests: bool = attrs.field(default=_node_default("partial_digests"))
    # Checked as given, and kept in the one spelling the logging set-up takes ("JSON" -> "json").
    log_level: str = attrs.field(
        default="info", converter=parse_log_level, validator=_checked_by(parse_log_level)
    )
    log_format: str = attrs.field(
        default="text", converter=parse_log_format, validator=_checked_by(parse_log_format)
    )
    # The HTTP API (gossip_tui.core.http_access has the defaults and the exposure rule).
    http_addr: SocketAddress | None = None
    api_token_file: Path | None = attrs.field(default=None, validator=_token_file_given)
    api_token_protects_reads: bool = False
    insecure_http: bool = False
    http_allowed_hosts: tuple[str, ...] = attrs.field(
        default=(), converter=_host_names, validator=_checked_by(_host_names)
    )

    @property
    def http(self) -> bool:
        return not self.no_http


attrs.resolve_types(CliSettings)
_FIELDS: Mapping[str, attrs.Attribute[Any]] = {f.name: f for f in attrs.fields(CliSettings)}
# The failure detector's settings, which NodeConfig nests under ``failure_detector``.
_DETECTOR_FIELDS = frozenset(f.name for f in attrs.fields(FailureDetectorConfig)) & set(_FIELDS)


# --------------------------------------------------------------------------- the reader
# What operators write, read onto each field's type: numbers and flags as text, lists as
# comma-separated text, paths; texts and addresses by the project converter's own strict
# hooks. Strict where text is not expected: a TOML number is no address, a TOML bool no
# interval. No cattrs: a headless node would import it for this alone.


def _structure_int(value: Any, _type: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    return value


def _structure_float(value: Any, _type: Any) -> float:
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    if not isinstance(number, int | float) or isinstance(number, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(number)


def _structure_bool(value: Any, _type: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected true or false, got {value!r}")


def _structure_path(value: Any, _type: Any) -> Path:
    if isinstance(value, Path):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a path, got {value!r}")
    return Path(value).expanduser()


def _structure_texts(value: Any, _type: Any) -> tuple[str, ...]:
    """A list of texts, or one text of comma-separated items (empty items skipped)."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of texts, got {value!r}")
    return tuple(item.strip() for item in value)


_HOOKS: Mapping[Any, Callable[[Any, Any], Any]] = {
    int: _structure_int,
    float: _structure_float,
    bool: _structure_bool,
    Path: _structure_path,
    tuple[str, ...]: _structure_texts,
    str: structure_str,
    SocketAddress: structure_address,
}


def _structure(raw: object, kind: Any) -> Any:
    """``raw`` as a ``kind``; ``X | None`` takes None as None, anything else as an X."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        (kind,) = (arg for arg in typing.get_args(kind) if arg is not type(None))
        if raw is None:
            return None
    return _HOOKS[kind](raw, kind)


def structure_setting(name: str, raw: object) -> Any:
    """One setting, as text or as TOML gives it, typed and checked; ValueError if refused."""
    field = _FIELDS[name]
    assert field.type is not None  # resolved above, for every field
    try:
        value = _structure(raw, field.type)
        if field.validator is not None:
            field.validator(None, field, value)
    except (ValueError, TypeError, AddressError, SecretKeyError) as exc:
        raise ValueError(str(exc)) from None
    return value


def setting_parser(name: str) -> Callable[[object], Any]:
    """The parser of the option for setting ``name``."""
    return partial(structure_setting, name)


def item_parser(name: str) -> Callable[[object], Any]:
    """The parser of a repeated option giving one item of the list setting ``name``."""

    def parse(raw: object) -> Any:
        return structure_setting(name, [raw])[0]

    return parse


def env_var(field: str) -> str:
    """``listen_addr`` -> ``GOSSIP_TUI_LISTEN_ADDR``."""
    return ENV_PREFIX + field.upper()


# --------------------------------------------------------------------------- sources


def settings_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings ``GOSSIP_TUI_*`` variables give; empty variables count as unset."""
    values: dict[str, Any] = {}
    for field in _FIELDS:
        name = env_var(field)
        text = environ.get(name, "")
        if not text.strip():
            continue
        try:
            values[field] = structure_setting(field, text)
        except ValueError as exc:
            raise SettingsError(f"invalid {name}: {exc}") from None
    return values


def load_config_file(path: Path) -> dict[str, Any]:
    """The settings a TOML file gives, with the same snake_case keys as the options."""
    import tomllib  # only for a config file: most nodes start without one

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise SettingsError(f"config file is a directory: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"bad TOML in {path}: {exc}") from None
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if key not in _FIELDS:
            known = ", ".join(_FIELDS)
            raise SettingsError(f"{path}: unknown key {key!r} (known keys: {known})")
        try:
            values[key] = structure_setting(key, raw)
        except ValueError as exc:
            raise SettingsError(f"{path}: invalid {key}: {exc}") from None
    return values


def build_settings(
    cli: Mapping[str, Any],
    env: Mapping[str, Any] | None = None,
    config_file: Mapping[str, Any] | None = None,
) -> CliSettings:
    """Merge already-structured values; None in any source means "not given there"."""
    merged: dict[str, Any] = {}
    for source in (config_file or {}, env or {}, cli):
        for key, value in source.items():
            if key not in _FIELDS:
                raise SettingsError(f"unknown setting {key!r}")
            if value is not None:
                merged[key] = value
    return CliSettings(**merged)


def resolve_settings(
    cli: Mapping[str, Any], environ: Mapping[str, str], config_path: Path | None = None
) -> CliSettings:
    """Everything at once: the file named by ``config_path`` or ``GOSSIP_TUI_CONFIG``."""
    env = settings_from_env(environ)
    if config_path is None and environ.get(CONFIG_ENV, "").strip():
        config_path = Path(environ[CONFIG_ENV])
    config_file = load_config_file(config_path) if config_path is not None else {}
    return build_settings(cli, env, config_file)


# --------------------------------------------------------------------------- to the node

# Settings that are the command line's alone, or that NodeConfig takes in another shape.
_NOT_NODE_FIELDS = frozenset(
    {
        "headless",
        "no_http",
        "interval_ms",
        "secret_keys",
        "secret_key_file",
        "log_level",
        "log_format",
        "http_addr",
        "api_token_file",
        "api_token_protects_reads",
        "insecure_http",
        "http_allowed_hosts",
    }
    | _DETECTOR_FIELDS
)


def to_node_config(settings: CliSettings) -> NodeConfig:
    """The runtime's :class:`gossip_tui.node.NodeConfig` for these settings.

    The settings are typed and checked already; what is unset (None) is left out, so
    ``NodeConfig``'s defaults apply, and its validators check the rest once more.
    """
    from gossip_tui.node import NodeConfig

    given = {name: getattr(settings, name) for name in _FIELDS}
    given = {name: value for name, value in given.items() if value is not None}
    node: dict[str, Any] = {k: v for k, v in given.items() if k not in _NOT_NODE_FIELDS}
    node["gossip_interval"] = settings.interval_ms / 1000
    node["failure_detector"] = FailureDetectorConfig(
        **{k: v for k, v in given.items() if k in _DETECTOR_FIELDS}
    )
    keys = [parse_key(text) for text in settings.secret_keys]
    if settings.secret_key_file is not None:
        from gossip_tui.node import read_key_file  # and the sealing with it

        keys += read_key_file(settings.secret_key_file)
    node["secret_keys"] = keys
    return NodeConfig(**node)
