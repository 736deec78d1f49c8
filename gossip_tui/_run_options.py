"""The options of the run command (``gossip-tui [OPTIONS]``): one table, read twice.

The typer app builds its top-level options from :data:`RUN_OPTIONS` (for ``--help``, the
subcommands and every usage error), and :func:`parse_run_args` reads the same table to
start a node without importing typer: typer 0.29 builds a pydantic TypeAdapter for every
option, which costs a node ~0.1 s of CPU and ~8 MiB before it gossips.

The quick parser takes only what it can read exactly as typer's click parser would: long
options, ``--name value`` or ``--name=value``, the last of a repeated option winning. For
anything else (``--help``, a subcommand, a short option, ``--``, an unknown option, a
missing or refused value, a value starting with "-", shell completion) it answers None and
the typer app parses the arguments again, so that help and errors have one author.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from gossip_tui._config_file import CONFIG_ENV, env_var, item_parser, setting_parser
from gossip_tui.core.fields_repr import fields_repr

__all__ = ["RUN_OPTIONS", "RunArgs", "RunOption", "parse_run_args"]

# typer's shell completion answers when this variable is set (``_<PROG>_COMPLETE``).
_COMPLETION_ENV = "_GOSSIP_TUI_COMPLETE"


@attrs.frozen
class RunOption:
    """One top-level option: the setting it gives and how ``--help`` shows it."""

    __repr__ = fields_repr

    # The CliSettings field it sets ("config": the TOML file, not a setting).
    field: str
    flags: tuple[str, ...]
    text: str
    # None for a flag, which takes no value and sets its setting to true.
    metavar: str | None = None
    # What --help shows as the default; a callable is read when the help is built.
    default: str | Callable[[], str] | None = None
    # Each occurrence gives one item of a list setting (seeds, secret_keys).
    repeated: bool = False

    @property
    def is_flag(self) -> bool:
        return self.metavar is None

    @property
    def is_config(self) -> bool:
        return self.field == "config"

    def help(self) -> str:
        default = self.default() if callable(self.default) else self.default
        shown = f"default: {default}; " if default is not None else ""
        env = CONFIG_ENV if self.is_config else env_var(self.field)
        return f"{self.text} [{shown}env: {env}{', comma-separated' if self.repeated else ''}]"

    def parser(self) -> Callable[[object], Any]:
        """The settings code's validator of what one occurrence gives."""
        return item_parser(self.field) if self.repeated else setting_parser(self.field)


def _node_default(name: str, shown: Callable[[Any], str] = str) -> Callable[[], str]:
    def default() -> str:
        from gossip_tui.core.node_config import NodeConfig

        return shown(getattr(attrs.fields(NodeConfig), name).default)

    return default


def _detector_default(name: str) -> Callable[[], str]:
    def default() -> str:
        from gossip_tui.core.failure_detector import FailureDetectorConfig

        return f"{getattr(FailureDetectorConfig(), name):g}"

    return default


def _settings_default(name: str) -> Callable[[], str]:
    def default() -> str:
        from gossip_tui._config_file import CliSettings

        return str(getattr(attrs.fields(CliSettings), name).default)

    return default


def _flags(field: str) -> tuple[str, ...]:
    """Both spellings, as chitchat-test's options are written with underscores."""
    return (f"--{field.replace('_', '-')}", f"--{field}")


def _dashed(field: str) -> tuple[str, ...]:
    return (f"--{field.replace('_', '-')}",)


RUN_OPTIONS: tuple[RunOption, ...] = (
    RunOption(
        "listen_addr",
        _flags("listen_addr"),
        "Gossip (UDP) and HTTP (TCP) address to bind.",
        metavar="IP:PORT",
        default=_node_default("listen_addr"),
    ),
    RunOption(
        "public_addr",
        _flags("public_addr"),
        "Address peers should gossip to.",
        metavar="IP:PORT",
        default="the listen address",
    ),
    RunOption(
        "node_id",
        _flags("node_id"),
        "Unique name of this node.",
        metavar="NAME",
        default="server:<public addr>-<random words>",
    ),
    RunOption(
        "seeds",
        ("--seed",),
        "Peer to join through; repeat for several.",
        metavar="HOST:PORT",
        repeated=True,
    ),
    RunOption(
        "interval_ms",
        _flags("interval_ms"),
        "Gossip interval in milliseconds.",
        metavar="MS",
        default=_node_default("gossip_interval", lambda seconds: str(round(seconds * 1000))),
    ),
    RunOption(
        "cluster_id",
        _flags("cluster_id"),
        "Cluster to join; peers of another cluster are refused.",
        metavar="NAME",
        default=_node_default("cluster_id"),
    ),
    RunOption(
        "headless", _dashed("headless"), "Run without the dashboard, logging membership to stderr."
    ),
    RunOption("no_http", _dashed("no_http"), "Do not serve the HTTP API."),
    RunOption(
        "dead_node_grace_period",
        _dashed("dead_node_grace_period"),
        "How long a dead node is kept before being forgotten.",
        metavar="SECONDS",
        default=_detector_default("dead_node_grace_period"),
    ),
    RunOption(
        "marked_for_deletion_grace_period",
        _dashed("marked_for_deletion_grace_period"),
        "How long a deleted key's tombstone is kept.",
        metavar="SECONDS",
        default=_node_default("marked_for_deletion_grace_period", lambda value: f"{value:g}"),
    ),
    RunOption(
        "phi_threshold",
        _dashed("phi_threshold"),
        "Failure detector threshold: above it a node is dead.",
        metavar="PHI",
        default=_detector_default("phi_threshold"),
    ),
    RunOption(
        "acceptable_pause",
        _dashed("acceptable_pause"),
        "Silence tolerated on top of the phi threshold (a GC pause, a stopped VM); "
        "0 judges liveness exactly as chitchat does.",
        metavar="SECONDS",
        default=_detector_default("acceptable_pause"),
    ),
    RunOption(
        "state_dir",
        _dashed("state_dir"),
        "Keep the local keys here across restarts.",
        metavar="DIR",
        default="nowhere",
    ),
    RunOption(
        "secret_keys",
        ("--secret-key",),
        "Seal every datagram with this key (from `gossip-tui keygen`); repeat to "
        "accept old keys during a rotation, the first one seals. Prefer --secret-key-file: "
        "arguments show in ps.",
        metavar="BASE64",
        repeated=True,
    ),
    RunOption(
        "secret_key_file",
        _dashed("secret_key_file"),
        "File of keys, one per line, the first one seals.",
        metavar="PATH",
        default="none",
    ),
    RunOption(
        "protocol_version",
        _dashed("protocol_version"),
        "chitchat protocol version of the gossip this node starts: 1 compresses the "
        "digest (chitchat after 0.10.1), 0.10.1 peers only read 0. Every Syn is answered "
        "in its own version.",
        metavar="0|1",
        default=_node_default("protocol_version"),
    ),
    RunOption(
        "partial_digests",
        _dashed("partial_digests"),
        "Past what one digest carries, send gossip-tui peers a partial digest, a "
        "window that moves each round (clusters of gossip-tui nodes only: a chitchat "
        "peer then gets Syns too large to send).",
    ),
    RunOption(
        "log_level",
        _dashed("log_level"),
        "Least severe log records written: debug, info, warning, error or critical.",
        metavar="LEVEL",
        default=_settings_default("log_level"),
    ),
    RunOption(
        "log_format",
        _dashed("log_format"),
        "Log lines as text, or as one JSON object each.",
        metavar="text|json",
        default=_settings_default("log_format"),
    ),
    RunOption(
        "http_addr",
        _dashed("http_addr"),
        "HTTP API (TCP) address.",
        metavar="IP:PORT",
        default="the listen address if loopback, else 127.0.0.1 on its port",
    ),
    RunOption(
        "api_token_file",
        _dashed("api_token_file"),
        "File holding the API token: writes need Authorization: Bearer <token>; "
        "the client commands send it.",
        metavar="PATH",
        default="none",
    ),
    RunOption(
        "api_token_protects_reads",
        _dashed("api_token_protects_reads"),
        "Reads need the token too.",
    ),
    RunOption(
        "insecure_http",
        _dashed("insecure_http"),
        "Serve the API off the loopback without a token (anyone reaching it can write).",
    ),
    RunOption(
        "http_allowed_hosts",
        _dashed("http_allowed_hosts"),
        "Comma-separated extra host names the API answers to (against DNS "
        "rebinding; IP addresses, localhost and this host's name always); * for any.",
        metavar="NAMES",
        default="none",
    ),
    RunOption(
        "config",
        ("--config",),
        "TOML file with the same settings in snake_case (seeds is a list).",
        metavar="PATH",
    ),
)

_BY_FLAG: Mapping[str, RunOption] = {
    flag: option for option in RUN_OPTIONS for flag in option.flags
}


@attrs.frozen
class RunArgs:
    """What the run command's arguments say: the settings given (None: not given) and the
    config file named by ``--config``."""

    __repr__ = fields_repr

    cli: dict[str, Any]
    config: Path | None


def run_args(values: Mapping[str, Any]) -> RunArgs:
    """:class:`RunArgs` from the options' parsed values by field (a repeated option's items
    as a list), as the typer app's callback and :func:`parse_run_args` both have them."""
    cli: dict[str, Any] = {}
    for option in RUN_OPTIONS:
        if option.is_config:
            continue
        value = values.get(option.field)
        cli[option.field] = (tuple(value) if value else None) if option.repeated else value
    config = values.get("config")
    return RunArgs(cli, config)


def _config_path(text: str) -> Path | None:
    """``--config`` as typer gives it (a Path), or None where typer would check more: an
    empty text, or a directory (which typer refuses)."""
    if not text:
        return None
    path = Path(text)
    return None if path.is_dir() else path


def parse_run_args(args: Sequence[str], environ: Mapping[str, str] = os.environ) -> RunArgs | None:
    """The run command's arguments, read without typer; None: let typer read them."""
    if _COMPLETION_ENV in environ:
        return None
    values: dict[str, Any] = {}
    position = 0
    while position < len(args):
        arg = args[position]
        position += 1
        if not arg.startswith("--"):
            return None  # a subcommand, a short option (-h), a stray argument
        flag, has_inline, inline = arg.partition("=")
        option = _BY_FLAG.get(flag)
        if option is None:
            return None  # --help, --, or an option typer is to name as unknown
        if option.is_flag:
            if has_inline:
                return None
            values[option.field] = True
            continue
        if has_inline:
            text = inline
        elif position < len(args) and not args[position].startswith("-"):
            text = args[position]
            position += 1
        else:
            return None  # missing, or a value click might read otherwise
        if option.is_config:
            path = _config_path(text)
            if path is None:
                return None
            values["config"] = path
            continue
        try:
            value = option.parser()(text)
        except ValueError:
            return None  # refused: typer says why, as "Invalid value for ..."
        if option.repeated:
            values.setdefault(option.field, []).append(value)
        else:
            values[option.field] = value
    return run_args(values)
