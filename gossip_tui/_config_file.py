"""Command-line settings from three sources: options, environment, TOML file.

Precedence, highest first: command-line option, ``GOSSIP_TUI_*`` environment variable,
the TOML file (``--config`` or ``GOSSIP_TUI_CONFIG``), then the built-in default. Every
source goes through the same validators, so a bad value reads the same wherever it came
from, and is reported as one line naming its origin.

The result is a :class:`CliSettings`; :func:`to_node_config` turns it into the node
runtime's ``NodeConfig`` (imported only then).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from gossip_tui.core.errors import GossipTuiError
from gossip_tui.core.keys import SecretKeyError, parse_key, parse_key_lines
from gossip_tui.core.models import AddressError, SocketAddress

if TYPE_CHECKING:
    from gossip_tui.node import NodeConfig

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_LISTEN_ADDR",
    "ENV_PREFIX",
    "FIELDS",
    "CliSettings",
    "SettingsError",
    "build_settings",
    "env_var",
    "load_config_file",
    "resolve_settings",
    "settings_from_env",
    "to_node_config",
]

ENV_PREFIX = "GOSSIP_TUI_"
CONFIG_ENV = "GOSSIP_TUI_CONFIG"
DEFAULT_LISTEN_ADDR = SocketAddress.parse("127.0.0.1:10000")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class SettingsError(GossipTuiError, ValueError):
    """A setting that cannot be used; the message is one line and names its origin."""


@attrs.frozen
class CliSettings:
    """What the command line asks for. None means "the node runtime's default"."""

    listen_addr: SocketAddress = DEFAULT_LISTEN_ADDR
    public_addr: SocketAddress | None = None
    node_id: str | None = None
    seeds: tuple[str, ...] = ()
    interval_ms: int = 500
    cluster_id: str = "testing"
    headless: bool = False
    no_http: bool = False
    dead_node_grace_period: float | None = None
    marked_for_deletion_grace_period: float | None = None
    phi_threshold: float | None = None
    acceptable_pause: float | None = None
    state_dir: Path | None = None
    secret_keys: tuple[str, ...] = attrs.field(default=(), repr=False)
    secret_key_file: Path | None = None
    protocol_version: int = 0

    @property
    def http(self) -> bool:
        return not self.no_http


# --------------------------------------------------------------------------- validators
# Each takes a value as a TOML file or a caller gives it (text, or already typed), and
# returns the typed value or raises ValueError with a short message.


def parse_address(value: object) -> SocketAddress:
    if isinstance(value, SocketAddress):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected an ip:port text, got {value!r}")
    try:
        return SocketAddress.parse(value)
    except AddressError as exc:
        raise ValueError(str(exc)) from None


def parse_seed(value: object) -> str:
    """A seed is ``ip:port`` or ``host:port``: the host is resolved by the node later."""
    if not isinstance(value, str):
        raise ValueError(f"expected a host:port text, got {value!r}")
    text = value.strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 0xFFFF:
        raise ValueError(f"{value!r} is not a host:port address")
    if host.startswith("[") != host.endswith("]") or any(c.isspace() for c in host):
        raise ValueError(f"{value!r} is not a host:port address")
    return text


def parse_seeds(value: object) -> tuple[str, ...]:
    """A list of seeds, or one text of comma-separated seeds."""
    if isinstance(value, str):
        items: list[object] = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError(f"expected a list of host:port texts, got {value!r}")
    return tuple(parse_seed(item) for item in items)


def parse_text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty text, got {value!r}")
    return value


def parse_interval_ms(value: object) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected a whole number of milliseconds, got {value!r}")
    if value < 1:
        raise ValueError(f"the interval must be at least 1 ms, got {value}")
    return value


def _number(value: object) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


def parse_seconds(value: object) -> float:
    number = _number(value)
    if number < 0:
        raise ValueError(f"a duration cannot be negative, got {number:g}")
    return number


def parse_phi_threshold(value: object) -> float:
    number = _number(value)
    if number <= 0:
        raise ValueError(f"the phi threshold must be positive, got {number:g}")
    return number


def parse_dir(value: object) -> Path:
    if isinstance(value, Path):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a directory path, got {value!r}")
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{value!r} exists and is not a directory")
    return path


def parse_secret_key(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a base64 key text")
    try:
        parse_key(value)
    except SecretKeyError as exc:
        raise ValueError(str(exc)) from None
    return value.strip()


def parse_secret_keys(value: object) -> tuple[str, ...]:
    """Keys, as a list or one text of comma-separated keys; the first one seals."""
    if isinstance(value, str):
        items: list[object] = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError("expected a list of base64 key texts")
    return tuple(parse_secret_key(item) for item in items)


def parse_key_file(value: object) -> Path:
    if isinstance(value, Path):
        path = value
    elif isinstance(value, str) and value.strip():
        path = Path(value).expanduser()
    else:
        raise ValueError(f"expected a file path, got {value!r}")
    try:
        parse_key_lines(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise ValueError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    except SecretKeyError as exc:
        raise ValueError(str(exc)) from None
    return path


def parse_protocol_version(value: object) -> int:
    """The chitchat protocol version to initiate with: 0 (any chitchat) or 1 (compressed
    digests, chitchat after 0.10.1)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value not in (0, 1):
        raise ValueError(f"expected protocol version 0 or 1, got {value!r}")
    return value


def parse_flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected true or false, got {value!r}")


FIELDS: Mapping[str, Callable[[object], Any]] = {
    "listen_addr": parse_address,
    "public_addr": parse_address,
    "node_id": parse_text,
    "seeds": parse_seeds,
    "interval_ms": parse_interval_ms,
    "cluster_id": parse_text,
    "headless": parse_flag,
    "no_http": parse_flag,
    "dead_node_grace_period": parse_seconds,
    "marked_for_deletion_grace_period": parse_seconds,
    "phi_threshold": parse_phi_threshold,
    "acceptable_pause": parse_seconds,
    "state_dir": parse_dir,
    "secret_keys": parse_secret_keys,
    "secret_key_file": parse_key_file,
    "protocol_version": parse_protocol_version,
}


def env_var(field: str) -> str:
    """``listen_addr`` -> ``GOSSIP_TUI_LISTEN_ADDR``."""
    return ENV_PREFIX + field.upper()


# --------------------------------------------------------------------------- sources


def settings_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings ``GOSSIP_TUI_*`` variables give; empty variables count as unset."""
    values: dict[str, Any] = {}
    for field, parse in FIELDS.items():
        name = env_var(field)
        text = environ.get(name, "")
        if not text.strip():
            continue
        try:
            values[field] = parse(text)
        except ValueError as exc:
            raise SettingsError(f"invalid {name}: {exc}") from None
    return values


def load_config_file(path: Path) -> dict[str, Any]:
    """The settings a TOML file gives, with the same snake_case keys as the options."""
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
        parse = FIELDS.get(key)
        if parse is None:
            known = ", ".join(FIELDS)
            raise SettingsError(f"{path}: unknown key {key!r} (known keys: {known})")
        try:
            values[key] = parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{path}: invalid {key}: {exc}") from None
    return values


def build_settings(
    cli: Mapping[str, Any],
    env: Mapping[str, Any] | None = None,
    config_file: Mapping[str, Any] | None = None,
) -> CliSettings:
    """Merge already-validated values; None in any source means "not given there"."""
    merged: dict[str, Any] = {}
    for source in (config_file or {}, env or {}, cli):
        for key, value in source.items():
            if key not in FIELDS:
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


def to_node_config(settings: CliSettings) -> NodeConfig:
    """The runtime's :class:`gossip_tui.node.NodeConfig` for these settings.

    Unset grace periods, threshold and pause keep the runtime's defaults. The node package is
    imported here, not at the top, so the command line starts without Trio.
    """
    from gossip_tui.core.failure_detector import FailureDetectorConfig
    from gossip_tui.node import NodeConfig, read_key_file

    detector: dict[str, Any] = {}
    if settings.phi_threshold is not None:
        detector["phi_threshold"] = settings.phi_threshold
    if settings.acceptable_pause is not None:
        detector["acceptable_pause"] = settings.acceptable_pause
    if settings.dead_node_grace_period is not None:
        detector["dead_node_grace_period"] = settings.dead_node_grace_period
    options: dict[str, Any] = {
        "listen_addr": settings.listen_addr,
        "public_addr": settings.public_addr,
        "node_id": settings.node_id,
        "cluster_id": settings.cluster_id,
        "seeds": settings.seeds,
        "gossip_interval": settings.interval_ms / 1000,
        "failure_detector": attrs.evolve(FailureDetectorConfig(), **detector),
        "protocol_version": settings.protocol_version,
    }
    if settings.marked_for_deletion_grace_period is not None:
        options["marked_for_deletion_grace_period"] = settings.marked_for_deletion_grace_period
    if settings.state_dir is not None:
        options["state_dir"] = settings.state_dir
    keys = [parse_key(text) for text in settings.secret_keys]
    if settings.secret_key_file is not None:
        keys += read_key_file(settings.secret_key_file)
    if keys:
        options["secret_keys"] = tuple(keys)
    return NodeConfig(**options)
