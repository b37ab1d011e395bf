"""The `lamplighter` command: one Typer sub-app per domain, composed here.

Each domain's commands are imported when they are used, not at start-up: a domain's CLI pulls
in its models, services and schemas (the web framework, for some), and every command paid for
all of them — about a second of the `catalog import` a user times. `lamplighter --help` still
lists every command (it imports them all to read their help).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer._click import Command, Context  # Typer 0.29 carries its own click
from typer.core import TyperGroup

from lamplighter import domains
from lamplighter.core.clikit import CliState
from lamplighter.core.manifest import resolve
from lamplighter.core.settings import get_settings

# name -> "module:attribute": a Typer sub-app, or a function that is one command. Each
# domain's manifest names its commands; the demo loader composes them all, so it is named here.
COMMANDS: dict[str, str] = {
    **domains.commands(get_settings()),
    "demo": "lamplighter.demo:demo_app",
}


def load_command(name: str) -> Command:
    """The click command for ``name``, importing its module."""
    target: Any = resolve(COMMANDS[name])
    command: Command
    if isinstance(target, typer.Typer):
        command = typer.main.get_group(target)  # a group even with one command in it
    else:
        single = typer.Typer()
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyGroup(TyperGroup):
    """The root group: commands are known by name and loaded on first use."""

    def list_commands(self, ctx: Context) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in COMMANDS if n not in self.commands)]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.add_command(load_command(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    name="lamplighter",
    help="Lamplighter: self-serve reliability platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=LazyGroup,
)


@app.callback()
def main_callback(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            envvar="LAMPLIGHTER_URL",
            help="Talk to this remote server instead of the local database.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="LAMPLIGHTER_TOKEN", help="API token for --url.", show_default=False),
    ] = None,
) -> None:
    ctx.obj = CliState(url=url, token=token)


def main() -> None:
    app()
