"""The typer app of ``gossip-tui``: ``--help``, the subcommands, and every usage error.

Imported by :func:`gossip_tui.cli.main` only when the run command's quick parser
(:mod:`gossip_tui._run_options`) passes the arguments on: typer builds a pydantic
TypeAdapter per option, too costly for a node's start. The top-level options are made from
the same table (:data:`RUN_OPTIONS`) that the quick parser reads.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from gossip_tui import cli
from gossip_tui._config_file import CliSettings
from gossip_tui._run_options import RUN_OPTIONS, RunArgs, RunOption, run_args
from gossip_tui._serve import DEFAULT_WEB_ADDR
from gossip_tui.client._commands import register as register_client_commands
from gossip_tui.core.keys import generate_key
from gossip_tui.core.models import SocketAddress

__all__ = ["app", "node_args"]

_T = TypeVar("_T")


def _option_parser(parse: Callable[[object], _T]) -> Callable[[str], _T]:
    """Turn a settings validator into a typer parser reporting a usage error."""

    def parser(text: str) -> _T:
        try:
            return parse(text)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    return parser


def _typer_option(option: RunOption) -> inspect.Parameter:
    """The callback's parameter for one row of the table (None: not given)."""
    info: Any
    if option.is_flag:
        annotation: Any = bool | None
        info = typer.Option(*option.flags, help=option.help())
    elif option.is_config:
        annotation = Path | None
        info = typer.Option(
            *option.flags, metavar=option.metavar, dir_okay=False, help=option.help()
        )
    else:
        annotation = list[str] | None if option.repeated else str | None
        info = typer.Option(
            *option.flags,
            parser=_option_parser(option.parser()),
            metavar=option.metavar,
            help=option.help(),
        )
    return inspect.Parameter(
        option.field,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[annotation, info],
    )


app = typer.Typer(
    name=cli.PROG,
    help="A chitchat-compatible gossip node with a terminal dashboard and an HTTP API.",
    rich_markup_mode=None,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def run(ctx: typer.Context, **options: Any) -> None:
    """Run a node: the dashboard, or with --headless only the node and its HTTP API.

    Settings come from the options, else GOSSIP_TUI_* variables, else the --config file.
    """
    invocation = run_args(options)
    ctx.obj = invocation
    if ctx.invoked_subcommand is None:
        raise typer.Exit(cli.run_node(invocation))


# The options are the table's: typer reads a callback's parameters from its signature.
run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        *(_typer_option(option) for option in RUN_OPTIONS),
    ],
    return_annotation=None,
)
app.callback(invoke_without_command=True)(run)


def _invocation(ctx: typer.Context) -> RunArgs:
    return ctx.obj if isinstance(ctx.obj, RunArgs) else RunArgs({}, None)


@app.command()
def demo(
    ctx: typer.Context,
    nodes: Annotated[
        int,
        typer.Option("--nodes", "-n", min=1, max=200, metavar="N", help="How many nodes to start."),
    ] = 5,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=0,
            hidden=True,
            help="Processes to run the peers in (0: beside node 0) [default: one per core].",
        ),
    ] = None,
) -> None:
    """Run a local cluster of N nodes in the dashboard.

    The top-level options (given before "demo") configure node 0; the others take
    ephemeral ports on 127.0.0.1 and node 0 as seed. Unless --listen-addr or --cluster-id
    is given, node 0 too takes an ephemeral port, and the cluster an id of its own
    ("demo-<hex>"), so that the demo never mixes with nodes left at the defaults.
    """
    import attrs

    from gossip_tui.ui.demo import demo_overrides

    invocation = _invocation(ctx)
    settings = attrs.evolve(cli.settings_of(invocation), **demo_overrides(cli.given(invocation)))
    raise typer.Exit(cli.run_demo(settings, nodes, workers=workers))


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
        code = serve_dashboard(node_args(), web_addr or DEFAULT_WEB_ADDR, insecure=insecure_web)
    except ServeError as exc:
        raise cli.CliError(str(exc)) from None
    raise typer.Exit(code)


def node_args() -> list[str]:
    """The top-level options of this invocation: its arguments before the subcommand."""
    args = list(cli.invoked_args() or sys.argv[1:])
    with typer.main.get_command(app).make_context(
        cli.PROG, list(args), resilient_parsing=True
    ) as probe:
        rest = [*getattr(probe, "_protected_args", ()), *probe.args]
    return args[: len(args) - len(rest)]


def _settings_of(ctx: typer.Context) -> CliSettings:
    return cli.settings_of(_invocation(ctx))


# The client commands (members, get, set, delete, watch) live in gossip_tui.client.
register_client_commands(app, _settings_of)


@app.command()
def keygen() -> None:
    """Print a new random secret key for --secret-key / --secret-key-file."""
    typer.echo(generate_key())


@app.command()
def version() -> None:
    """Print the version and exit."""
    typer.echo(f"{cli.PROG} {cli.package_version()}")
