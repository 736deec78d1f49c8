"""The ``gossip-tui`` command: run a node with its dashboard, headless, or a demo cluster.

A node starts without typer: the run command's arguments are read by the quick parser of
gossip_tui._run_options, from the table the typer app (gossip_tui._typer_app) builds its
options from; typer is imported only for what that parser passes on (``--help``, the
subcommands, every usage error). Trio, hypercorn, the node runtime and the Textual
dashboard are imported by the command that needs them.

Every usage error (bad option, bad value, bad environment variable, missing or broken
config file, busy port) is reported as one line on stderr with exit status 2.

Settings live in gossip_tui._config_file, the headless runtime in gossip_tui._headless, the
dashboard in gossip_tui.ui.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gossip_tui._config_file import (
    CONFIG_ENV,
    CliSettings,
    SettingsError,
    load_config_file,
    resolve_settings,
    settings_from_env,
    to_node_config,
)
from gossip_tui._run_options import RunArgs, parse_run_args
from gossip_tui.core.errors import GossipTuiError, os_error_in
from gossip_tui.core.models import SocketAddress

if TYPE_CHECKING:
    from gossip_tui._headless import OpenNode

__all__ = ["CliError", "main", "run_headless"]

PROG = "gossip-tui"
USAGE_ERROR = 2

# The errors of binding a socket that are the operator's to fix, not a crash.
_BIND_ERRORS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}


class CliError(GossipTuiError):
    """Ends the command with a one-line message and an exit status."""

    def __init__(self, message: str, code: int = USAGE_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def settings_of(invocation: RunArgs) -> CliSettings:
    """The settings of the run command's arguments, the environment and the config file."""
    return resolve_settings(invocation.cli, os.environ, invocation.config)


def given(invocation: RunArgs) -> frozenset[str]:
    """The settings the operator set: on the command line, in the environment or in the
    config file (the same sources, found the same way, as :func:`settings_of`)."""
    path = invocation.config
    if path is None and os.environ.get(CONFIG_ENV, "").strip():
        path = Path(os.environ[CONFIG_ENV])
    sources = (
        invocation.cli,
        settings_from_env(os.environ),
        load_config_file(path) if path is not None else {},
    )
    return frozenset(
        key for source in sources for key, value in source.items() if value is not None
    )


def run_node(invocation: RunArgs) -> int:
    """The run command (no subcommand): the node, headless or in the dashboard; exit status."""
    settings = settings_of(invocation)
    return run_headless(settings) if settings.headless else run_dashboard(settings)


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(PROG)
    except PackageNotFoundError:
        return "0+unknown"


# --------------------------------------------------------------------------- binding


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
    from gossip_tui._http_settings import check_http_exposure, http_addr, http_service
    from gossip_tui.ui import run_dashboard as ui_run_dashboard

    check_terminal()
    check_http_exposure(settings)
    config = to_node_config(settings)
    check_bindable(settings.listen_addr, tcp=False)
    if settings.http:
        check_bindable(http_addr(settings), tcp=True, udp=False)
    return ui_run_dashboard(config, http=http_service(settings) if settings.http else False)


def run_demo(settings: CliSettings, nodes: int, *, workers: int | None = None) -> int:
    """``demo``: node 0 as configured and ``nodes - 1`` peers, in the dashboard; the peers
    in ``workers`` child processes (None: one per core, 0: in the dashboard's process)."""
    from gossip_tui.ui import run_demo as ui_run_demo

    check_terminal()
    config = to_node_config(settings)
    check_bindable(settings.listen_addr, tcp=False)
    return ui_run_demo(nodes, config, workers=workers)


# --------------------------------------------------------------------------- headless


def run_headless(settings: CliSettings, *, open_node: OpenNode | None = None) -> int:
    """``--headless``: the node and its HTTP API in Trio, no dashboard; exit status.

    The runtime is gossip_tui._headless; what is left here is the command line's part: the
    node's config from the settings, and a busy address as a one-line usage error.
    """
    from gossip_tui._headless import run_headless as run_runtime

    if settings.http:
        from gossip_tui._http_settings import check_http_exposure, http_addr

        check_http_exposure(settings)
        # A busy HTTP port, named as such (the gossip one is reported below).
        check_bindable(http_addr(settings), tcp=True, udp=False)
    config = to_node_config(settings)
    try:
        run_runtime(settings, config, open_node)
    except (OSError, BaseExceptionGroup) as exc:
        error = os_error_in(exc, _BIND_ERRORS)
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
    # The typer app, which a node's start does without (gossip_tui._run_options).
    if name == "app":
        from gossip_tui._typer_app import app

        return app
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


def invoked_args() -> list[str]:
    """The arguments of this invocation (for ``serve``, which runs the dashboard with the
    same top-level options)."""
    return _invoked_args


def _typer_main(args: list[str]) -> int:
    import typer

    from gossip_tui._typer_app import app

    try:
        result = typer.main.get_command(app).main(args, prog_name=PROG, standalone_mode=False)
    except typer.Abort:
        return _fail("aborted", 1)
    except Exception as exc:
        if not _is_click_error(exc):
            raise
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        return _fail(message, int(getattr(exc, "exit_code", USAGE_ERROR)))
    return result if isinstance(result, int) else 0


def _run_quick(invocation: RunArgs) -> int:
    """The run command as typer's main would run it: end of input aborts, Ctrl-C exits
    130, a closed stdout exits 1."""
    try:
        return run_node(invocation)
    except EOFError:
        print(file=sys.stderr)
        return _fail("aborted", 1)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        from typer._click.utils import PacifyFlushWrapper

        sys.stdout = PacifyFlushWrapper(sys.stdout)
        sys.stderr = PacifyFlushWrapper(sys.stderr)
        raise SystemExit(1) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (the console script exits with it)."""
    global _invoked_args
    args = list(sys.argv[1:] if argv is None else argv)
    _invoked_args = args
    try:
        quick = parse_run_args(args)
        return _typer_main(args) if quick is None else _run_quick(quick)
    except SettingsError as exc:
        return _fail(str(exc), USAGE_ERROR)
    except CliError as exc:
        return _fail(exc.message, exc.code)
