"""The ``gossip-tui`` command: run a node with its dashboard, headless, or a demo cluster.

Only typer and the settings code are imported at start; Trio, hypercorn, the node runtime
and the Textual dashboard are imported by the command that needs them, so ``--help`` and
argument errors answer at once.

Every usage error (bad option, bad value, bad environment variable, missing or broken
config file, busy port) is reported as one line on stderr with exit status 2.

One concern, though over 400 lines (most of them the options' declarations): the command
line itself. Settings live in gossip_tui._config_file, the headless runtime in
gossip_tui._headless, the dashboard in gossip_tui.ui.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import attrs
import typer

from gossip_tui._config_file import (
    CONFIG_ENV,
    CliSettings,
    SettingsError,
    env_var,
    item_parser,
    load_config_file,
    resolve_settings,
    setting_parser,
    settings_from_env,
    to_node_config,
)
from gossip_tui._serve import DEFAULT_WEB_ADDR
from gossip_tui.client._commands import register as register_client_commands
from gossip_tui.client._settings import check_http_exposure, http_addr
from gossip_tui.core.errors import GossipTuiError
from gossip_tui.core.failure_detector import FailureDetectorConfig
from gossip_tui.core.keys import generate_key
from gossip_tui.core.models import SocketAddress

if TYPE_CHECKING:
    from gossip_tui._headless import OpenNode

__all__ = ["CliError", "app", "main", "run_headless"]

PROG = "gossip-tui"
USAGE_ERROR = 2
_T = TypeVar("_T")

# NodeConfig's defaults as --help shows them. Written out because reading NodeConfig would
# import the runtime (and Trio) for --help; tests/cli check them against NodeConfig.
HELP_DEFAULTS: dict[str, str] = {
    "listen_addr": "127.0.0.1:10000",
    "interval_ms": "500",
    "cluster_id": "testing",
    "marked_for_deletion_grace_period": "3600",
    "protocol_version": "0",
}
_DETECTOR_DEFAULTS = FailureDetectorConfig()

# The errors of binding a socket that are the operator's to fix, not a crash.
_BIND_ERRORS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}


class CliError(GossipTuiError):
    """Ends the command with a one-line message and an exit status."""

    def __init__(self, message: str, code: int = USAGE_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _option_parser(parse: Callable[[object], _T]) -> Callable[[str], _T]:
    """Turn a settings validator into a typer parser reporting a usage error."""

    def parser(text: str) -> _T:
        try:
            return parse(text)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    return parser


def _env_help(text: str, field: str, default: str | None = None) -> str:
    shown = f"default: {default}; " if default is not None else ""
    return f"{text} [{shown}env: {env_var(field)}]"


def _setting(*flags: str, metavar: str, text: str, default: str | None = None) -> Any:
    """The option for one setting: its field is named by the first flag, and the
    settings code's validator for that field parses it."""
    field = flags[0].removeprefix("--").replace("-", "_")
    return typer.Option(
        *flags,
        parser=_option_parser(setting_parser(field)),
        metavar=metavar,
        help=_env_help(text, field, default),
    )


app = typer.Typer(
    name=PROG,
    help="A chitchat-compatible gossip node with a terminal dashboard and an HTTP API.",
    rich_markup_mode=None,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@attrs.frozen
class _Invocation:
    """What the top-level options said, kept for the subcommands."""

    cli: dict[str, Any]
    config: Path | None

    def settings(self) -> CliSettings:
        return resolve_settings(self.cli, os.environ, self.config)

    def given(self) -> frozenset[str]:
        """The settings the operator set: on the command line, in the environment or in
        the config file (the same sources, found the same way, as :meth:`settings`)."""
        path = self.config
        if path is None and os.environ.get(CONFIG_ENV, "").strip():
            path = Path(os.environ[CONFIG_ENV])
        sources = (
            self.cli,
            settings_from_env(os.environ),
            load_config_file(path) if path is not None else {},
        )
        return frozenset(
            key for source in sources for key, value in source.items() if value is not None
        )


@app.callback(invoke_without_command=True)
def run(
    ctx: typer.Context,
    listen_addr: Annotated[
        SocketAddress | None,
        _setting(
            "--listen-addr",
            "--listen_addr",
            metavar="IP:PORT",
            text="Gossip (UDP) and HTTP (TCP) address to bind.",
            default=HELP_DEFAULTS["listen_addr"],
        ),
    ] = None,
    public_addr: Annotated[
        SocketAddress | None,
        _setting(
            "--public-addr",
            "--public_addr",
            metavar="IP:PORT",
            text="Address peers should gossip to.",
            default="the listen address",
        ),
    ] = None,
    node_id: Annotated[
        str | None,
        _setting(
            "--node-id",
            "--node_id",
            metavar="NAME",
            text="Unique name of this node.",
            default="server:<public addr>-<random words>",
        ),
    ] = None,
    seed: Annotated[
        list[str] | None,
        typer.Option(
            "--seed",
            parser=_option_parser(item_parser("seeds")),
            metavar="HOST:PORT",
            help="Peer to join through; repeat for several. "
            f"[env: {env_var('seeds')}, comma-separated]",
        ),
    ] = None,
    interval_ms: Annotated[
        int | None,
        _setting(
            "--interval-ms",
            "--interval_ms",
            metavar="MS",
            text="Gossip interval in milliseconds.",
            default=HELP_DEFAULTS["interval_ms"],
        ),
    ] = None,
    cluster_id: Annotated[
        str | None,
        _setting(
            "--cluster-id",
            "--cluster_id",
            metavar="NAME",
            text="Cluster to join; peers of another cluster are refused.",
            default=HELP_DEFAULTS["cluster_id"],
        ),
    ] = None,
    headless: Annotated[
        bool | None,
        typer.Option(
            "--headless",
            help=_env_help("Run without the dashboard, logging membership to stderr.", "headless"),
        ),
    ] = None,
    no_http: Annotated[
        bool | None,
        typer.Option("--no-http", help=_env_help("Do not serve the HTTP API.", "no_http")),
    ] = None,
    dead_node_grace_period: Annotated[
        float | None,
        _setting(
            "--dead-node-grace-period",
            metavar="SECONDS",
            text="How long a dead node is kept before being forgotten.",
            default=f"{_DETECTOR_DEFAULTS.dead_node_grace_period:g}",
        ),
    ] = None,
    marked_for_deletion_grace_period: Annotated[
        float | None,
        _setting(
            "--marked-for-deletion-grace-period",
            metavar="SECONDS",
            text="How long a deleted key's tombstone is kept.",
            default=HELP_DEFAULTS["marked_for_deletion_grace_period"],
        ),
    ] = None,
    phi_threshold: Annotated[
        float | None,
        _setting(
            "--phi-threshold",
            metavar="PHI",
            text="Failure detector threshold: above it a node is dead.",
            default=f"{_DETECTOR_DEFAULTS.phi_threshold:g}",
        ),
    ] = None,
    acceptable_pause: Annotated[
        float | None,
        _setting(
            "--acceptable-pause",
            metavar="SECONDS",
            text="Silence tolerated on top of the phi threshold (a GC pause, a stopped VM); "
            "0 judges liveness exactly as chitchat does.",
            default=f"{_DETECTOR_DEFAULTS.acceptable_pause:g}",
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        _setting(
            "--state-dir",
            metavar="DIR",
            text="Keep the local keys here across restarts.",
            default="nowhere",
        ),
    ] = None,
    secret_key: Annotated[
        list[str] | None,
        typer.Option(
            "--secret-key",
            parser=_option_parser(item_parser("secret_keys")),
            metavar="BASE64",
            help="Seal every datagram with this key (from `gossip-tui keygen`); repeat to "
            "accept old keys during a rotation, the first one seals. Prefer --secret-key-file: "
            f"arguments show in ps. [env: {env_var('secret_keys')}, comma-separated]",
        ),
    ] = None,
    secret_key_file: Annotated[
        Path | None,
        _setting(
            "--secret-key-file",
            metavar="PATH",
            text="File of keys, one per line, the first one seals.",
            default="none",
        ),
    ] = None,
    protocol_version: Annotated[
        int | None,
        _setting(
            "--protocol-version",
            metavar="0|1",
            text="chitchat protocol version of the gossip this node starts: 1 compresses the "
            "digest (chitchat after 0.10.1), 0.10.1 peers only read 0. Every Syn is answered "
            "in its own version.",
            default=HELP_DEFAULTS["protocol_version"],
        ),
    ] = None,
    partial_digests: Annotated[
        bool | None,
        typer.Option(
            "--partial-digests",
            help=_env_help(
                "Past what one digest carries, send gossip-tui peers a partial digest, a "
                "window that moves each round (clusters of gossip-tui nodes only: a chitchat "
                "peer then gets Syns too large to send).",
                "partial_digests",
            ),
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        _setting(
            "--log-level",
            metavar="LEVEL",
            text="Least severe log records written: debug, info, warning, error or critical.",
            default="info",
        ),
    ] = None,
    log_format: Annotated[
        str | None,
        _setting(
            "--log-format",
            metavar="text|json",
            text="Log lines as text, or as one JSON object each.",
            default="text",
        ),
    ] = None,
    http_addr: Annotated[
        SocketAddress | None,
        _setting(
            "--http-addr",
            metavar="IP:PORT",
            text="HTTP API (TCP) address.",
            default="the listen address if loopback, else 127.0.0.1 on its port",
        ),
    ] = None,
    api_token_file: Annotated[
        Path | None,
        _setting(
            "--api-token-file",
            metavar="PATH",
            text="File holding the API token: writes need Authorization: Bearer <token>; "
            "the client commands send it.",
            default="none",
        ),
    ] = None,
    api_token_protects_reads: Annotated[
        bool | None,
        typer.Option(
            "--api-token-protects-reads",
            help=_env_help("Reads need the token too.", "api_token_protects_reads"),
        ),
    ] = None,
    insecure_http: Annotated[
        bool | None,
        typer.Option(
            "--insecure-http",
            help=_env_help(
                "Serve the API off the loopback without a token (anyone reaching it can write).",
                "insecure_http",
            ),
        ),
    ] = None,
    http_allowed_hosts: Annotated[
        str | None,
        _setting(
            "--http-allowed-hosts",
            metavar="NAMES",
            text="Comma-separated extra host names the API answers to (against DNS "
            "rebinding; IP addresses, localhost and this host's name always); * for any.",
            default="none",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="PATH",
            dir_okay=False,
            help=f"TOML file with the same settings in snake_case (seeds is a list). "
            f"[env: {CONFIG_ENV}]",
        ),
    ] = None,
) -> None:
    """Run a node: the dashboard, or with --headless only the node and its HTTP API.

    Settings come from the options, else GOSSIP_TUI_* variables, else the --config file.
    """
    cli: dict[str, Any] = {
        "listen_addr": listen_addr,
        "public_addr": public_addr,
        "node_id": node_id,
        "seeds": tuple(seed) if seed else None,
        "interval_ms": interval_ms,
        "cluster_id": cluster_id,
        "headless": headless,
        "no_http": no_http,
        "dead_node_grace_period": dead_node_grace_period,
        "marked_for_deletion_grace_period": marked_for_deletion_grace_period,
        "phi_threshold": phi_threshold,
        "acceptable_pause": acceptable_pause,
        "state_dir": state_dir,
        "secret_keys": tuple(secret_key) if secret_key else None,
        "secret_key_file": secret_key_file,
        "protocol_version": protocol_version,
        "partial_digests": partial_digests,
        "log_level": log_level,
        "log_format": log_format,
        "http_addr": http_addr,
        "api_token_file": api_token_file,
        "api_token_protects_reads": api_token_protects_reads,
        "insecure_http": insecure_http,
        "http_allowed_hosts": http_allowed_hosts,
    }
    invocation = _Invocation(cli, config)
    ctx.obj = invocation
    if ctx.invoked_subcommand is None:
        settings = invocation.settings()
        code = run_headless(settings) if settings.headless else run_dashboard(settings)
        raise typer.Exit(code)


@app.command()
def demo(
    ctx: typer.Context,
    nodes: Annotated[
        int,
        typer.Option("--nodes", "-n", min=1, max=200, metavar="N", help="How many nodes to start."),
    ] = 5,
) -> None:
    """Run a local cluster of N nodes in the dashboard.

    The top-level options (given before "demo") configure node 0; the others take
    ephemeral ports on 127.0.0.1 and node 0 as seed. Unless --listen-addr or --cluster-id
    is given, node 0 too takes an ephemeral port, and the cluster an id of its own
    ("demo-<hex>"), so that the demo never mixes with nodes left at the defaults.
    """
    from gossip_tui.ui.demo import demo_overrides

    invocation = ctx.obj if isinstance(ctx.obj, _Invocation) else _Invocation({}, None)
    settings = attrs.evolve(invocation.settings(), **demo_overrides(invocation.given()))
    raise typer.Exit(run_demo(settings, nodes))


@app.command()
def serve(
    web_addr: Annotated[
        SocketAddress | None,
        typer.Option(
            "--web-addr",
            parser=_option_parser(SocketAddress.parse),
            metavar="IP:PORT",
            help="Where the browser finds the dashboard (loopback unless --insecure-web)"
            f" [default: {DEFAULT_WEB_ADDR}]",
        ),
    ] = None,
    insecure_web: Annotated[
        bool,
        typer.Option(
            "--insecure-web",
            help="Serve the dashboard off the loopback: whoever reaches it drives the node.",
        ),
    ] = False,
) -> None:
    """Serve the dashboard in a browser (textual-serve; the extra "serve").

    Each browser session runs the dashboard with the top-level options given before
    "serve", as "gossip-tui" alone would in a terminal.
    """
    from gossip_tui._serve import ServeError, serve_dashboard

    try:
        code = serve_dashboard(_node_args(), web_addr or DEFAULT_WEB_ADDR, insecure=insecure_web)
    except ServeError as exc:
        raise CliError(str(exc)) from None
    raise typer.Exit(code)


def _node_args() -> list[str]:
    """The top-level options of this invocation: its arguments before the subcommand."""
    args = list(_invoked_args or sys.argv[1:])
    with typer.main.get_command(app).make_context(
        PROG, list(args), resilient_parsing=True
    ) as probe:
        rest = [*getattr(probe, "_protected_args", ()), *probe.args]
    return args[: len(args) - len(rest)]


def _settings_of(ctx: typer.Context) -> CliSettings:
    invocation = ctx.obj if isinstance(ctx.obj, _Invocation) else _Invocation({}, None)
    return invocation.settings()


# The client commands (members, get, set, delete, watch) live in gossip_tui.client.
register_client_commands(app, _settings_of)


@app.command()
def keygen() -> None:
    """Print a new random secret key for --secret-key / --secret-key-file."""
    typer.echo(generate_key())


@app.command()
def version() -> None:
    """Print the version and exit."""
    typer.echo(f"{PROG} {package_version()}")


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(PROG)
    except PackageNotFoundError:
        return "0+unknown"


# --------------------------------------------------------------------------- binding


def _bind_error(exc: BaseException) -> OSError | None:
    """The socket-binding error inside ``exc`` (maybe nested in exception groups)."""
    if isinstance(exc, OSError) and exc.errno in _BIND_ERRORS:
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _bind_error(inner)
            if found is not None:
                return found
    return None


def _bind_failure(addr: SocketAddress, error: OSError) -> CliError:
    if error.errno == errno.EADDRINUSE:
        return CliError(f"address {addr} is already in use")
    return CliError(f"cannot listen on {addr}: {error.strerror or error}")


def check_bindable(addr: SocketAddress, *, tcp: bool, udp: bool = True) -> None:
    """Fail early, with a one-line error, when ``addr`` cannot be bound (UDP, and TCP).

    The dashboard opens its node inside Textual, where a busy port would only show as a
    crash; probing first catches the usual case (another node on the port) cleanly.
    """
    family = socket.AF_INET6 if addr.ip.version == 6 else socket.AF_INET
    kinds = ([socket.SOCK_DGRAM] if udp else []) + ([socket.SOCK_STREAM] if tcp else [])
    for kind in kinds:
        with socket.socket(family, kind) as probe:
            if kind == socket.SOCK_STREAM:
                # As the HTTP server will: a port in TIME_WAIT is free to reuse.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((addr.host, addr.port))
            except OSError as exc:
                if exc.errno not in _BIND_ERRORS:
                    raise
                raise _bind_failure(addr, exc) from None


# --------------------------------------------------------------------------- dashboard


def _streams_without_terminal() -> list[str]:
    # Keys come from stdin and Textual draws on stderr; stdout is checked too, as a
    # redirected stdout means a script, not an operator. Without a terminal on all three
    # the dashboard would read piped text as keys, or write escape codes into a file.
    streams = {"stdin": sys.stdin, "stdout": sys.stdout, "stderr": sys.stderr}
    return [name for name, stream in streams.items() if stream is None or not stream.isatty()]


def check_terminal() -> None:
    """Refuse to start a dashboard without a terminal on stdin, stdout and stderr."""
    if os.environ.get("TEXTUAL_DRIVER"):
        # Textual draws through another driver: textual-serve (``gossip-tui serve``) runs
        # the dashboard on pipes with its web driver, and the browser is the terminal.
        return
    missing = _streams_without_terminal()
    if missing:
        raise CliError(
            f"the dashboard needs a terminal, and {' and '.join(missing)} "
            f"{'is not one' if len(missing) == 1 else 'are not'}; "
            "use --headless to run the node without it"
        )


def run_dashboard(settings: CliSettings) -> int:
    """The Textual dashboard over a node; it serves the HTTP API unless --no-http."""
    from gossip_tui.client import http_service
    from gossip_tui.ui import run_dashboard as ui_run_dashboard

    check_terminal()
    check_http_exposure(settings)
    config = to_node_config(settings)
    check_bindable(settings.listen_addr, tcp=False)
    if settings.http:
        check_bindable(http_addr(settings), tcp=True, udp=False)
    return ui_run_dashboard(config, http=http_service(settings) if settings.http else False)


def run_demo(settings: CliSettings, nodes: int) -> int:
    """``demo``: node 0 as configured and ``nodes - 1`` in-process peers, in the dashboard."""
    from gossip_tui.ui import run_demo as ui_run_demo

    check_terminal()
    config = to_node_config(settings)
    check_bindable(settings.listen_addr, tcp=False)
    return ui_run_demo(nodes, config)


# --------------------------------------------------------------------------- headless


def run_headless(settings: CliSettings, *, open_node: OpenNode | None = None) -> int:
    """``--headless``: the node and its HTTP API in Trio, no dashboard; exit status.

    The runtime is gossip_tui._headless; what is left here is the command line's part: the
    node's config from the settings, and a busy address as a one-line usage error.
    """
    from gossip_tui._headless import run_headless as run_runtime

    check_http_exposure(settings)
    if settings.http:  # a busy HTTP port, named as such (the gossip one is reported below)
        check_bindable(http_addr(settings), tcp=True, udp=False)
    config = to_node_config(settings)
    try:
        run_runtime(settings, config, open_node)
    except (OSError, BaseExceptionGroup) as exc:
        error = _bind_error(exc)
        if error is None:
            raise
        raise _bind_failure(settings.listen_addr, error) from None
    return 0


def __getattr__(name: str) -> Any:
    # The runtime's coroutine, for callers that drive it in their own Trio run (the tests),
    # without this module importing Trio before a node is asked for.
    if name == "serve_headless":
        from gossip_tui._headless import serve_headless

        return serve_headless
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- entry point


def _is_click_error(exc: BaseException) -> bool:
    # typer's vendored click and click itself both name the base class ClickException.
    return any(klass.__name__ == "ClickException" for klass in type(exc).__mro__)


def _fail(message: str, code: int) -> int:
    one_line = " ".join(message.split())
    print(f"{PROG}: error: {one_line}", file=sys.stderr)
    return code


_invoked_args: list[str] = []


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (the console script exits with it)."""
    global _invoked_args
    command = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    _invoked_args = args  # for `serve`, which runs the dashboard with the same options
    try:
        result = command.main(args, prog_name=PROG, standalone_mode=False)
    except SettingsError as exc:
        return _fail(str(exc), USAGE_ERROR)
    except CliError as exc:
        return _fail(exc.message, exc.code)
    except typer.Abort:
        return _fail("aborted", 1)
    except Exception as exc:
        if not _is_click_error(exc):
            raise
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        return _fail(message, int(getattr(exc, "exit_code", USAGE_ERROR)))
    return result if isinstance(result, int) else 0
