"""The client subcommands of ``gossip-tui`` (members, get, set, delete, watch).

Declared here, registered on the command line's typer app by :func:`register`; the work is
done by :mod:`gossip_tui.client` (standard library only: no Trio is imported).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from gossip_tui._config_file import CliSettings

__all__ = ["register"]

SettingsOf = Callable[[typer.Context], CliSettings]


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise typer.BadParameter(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return parse


def _duration(text: str) -> float:
    from gossip_tui.core.expiry import InvalidTtl, parse_duration

    try:
        return parse_duration(text)
    except InvalidTtl as exc:
        raise typer.BadParameter(str(exc)) from None


_NODE_OPTION = typer.Option(
    "--node",
    metavar="IP:PORT",
    envvar="GOSSIP_TUI_NODE",
    help="The node's HTTP API. [default: this host's node, as the settings place its API]",
)


def register(app: typer.Typer, settings_of: SettingsOf) -> None:
    """Add the client commands to ``app``; ``settings_of`` gives the top-level settings
    (for the default address and the token file)."""

    def call(ctx: typer.Context, node: str | None, command: Any, **kwargs: Any) -> None:
        from gossip_tui import client

        settings = settings_of(ctx)  # a bad setting is the command line's usage error

        def request() -> None:
            command(client.client_for(settings, node), **kwargs)

        raise typer.Exit(client.run(request))

    @app.command()
    def members(
        ctx: typer.Context,
        output_format: Annotated[
            str, typer.Option("--format", parser=_choice("table", "json"), metavar="table|json")
        ] = "table",
        status: Annotated[
            str | None,
            typer.Option(
                "--status", parser=_choice("live", "dead", "left"), metavar="live|dead|left"
            ),
        ] = None,
        node: Annotated[str | None, _NODE_OPTION] = None,
    ) -> None:
        """List the cluster's nodes as the node sees them."""
        from gossip_tui import client

        call(ctx, node, client.members, output_format=output_format, status=status, out=sys.stdout)

    @app.command()
    def get(
        ctx: typer.Context,
        key: Annotated[str, typer.Argument(metavar="KEY")],
        node_id: Annotated[
            str | None,
            typer.Option("--node-id", metavar="ID", help="Read the key of this node (its name)."),
        ] = None,
        output_format: Annotated[
            str, typer.Option("--format", parser=_choice("text", "json"), metavar="text|json")
        ] = "text",
        node: Annotated[str | None, _NODE_OPTION] = None,
    ) -> None:
        """Print the value of a key of the node (or of --node-id, as the node sees it). A
        key that expires says when on stderr; --format json prints the whole answer."""
        from gossip_tui import client

        call(
            ctx,
            node,
            client.get_key,
            key=key,
            node_id=node_id,
            output_format=output_format,
            out=sys.stdout,
            err=sys.stderr,
        )

    @app.command(name="set")
    def set_command(
        ctx: typer.Context,
        key: Annotated[str, typer.Argument(metavar="KEY")],
        value: Annotated[str, typer.Argument(metavar="VALUE")],
        ttl: Annotated[
            float | None,
            typer.Option(
                "--ttl",
                metavar="SECONDS",
                parser=_duration,
                help="The key lives this long, then the node deletes it (90, 30s, 5m, 2h, "
                "1d). Setting the key again without --ttl keeps it.",
            ),
        ] = None,
        chitchat_ttl: Annotated[
            bool,
            typer.Option(
                "--chitchat-ttl",
                help="chitchat's TTL instead: the key is deleted after the node's "
                "marked-for-deletion grace period.",
            ),
        ] = False,
        node: Annotated[str | None, _NODE_OPTION] = None,
    ) -> None:
        """Set a key of the node."""
        from gossip_tui import client

        call(ctx, node, client.set_key, key=key, value=value, ttl=ttl, chitchat_ttl=chitchat_ttl)

    @app.command()
    def delete(
        ctx: typer.Context,
        key: Annotated[str, typer.Argument(metavar="KEY")],
        node: Annotated[str | None, _NODE_OPTION] = None,
    ) -> None:
        """Delete a key of the node."""
        from gossip_tui import client

        call(ctx, node, client.delete_key, key=key)

    @app.command()
    def watch(
        ctx: typer.Context,
        prefix: Annotated[
            str, typer.Option("--prefix", metavar="P", help="Key events under P only.")
        ] = "",
        output_format: Annotated[
            str, typer.Option("--format", parser=_choice("text", "json"), metavar="text|json")
        ] = "text",
        node: Annotated[str | None, _NODE_OPTION] = None,
    ) -> None:
        """Print the node's events as they happen (one JSON object a line with --format
        json), until the node leaves."""
        from gossip_tui import client

        call(ctx, node, client.watch, prefix=prefix, output_format=output_format, out=sys.stdout)
